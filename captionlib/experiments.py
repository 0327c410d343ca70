"""What each part buys: a grid of model variants × seeds, trained on the same data with the same budget, scored alike.

Every run is the book's shapes model (Config()) with the grid's budget and one variant's changes, trained through
pretrained.cached_checkpoint: cached by its config and the library's sources, so a grid that was interrupted goes
on where it stopped and a finished one costs nothing. The scores of each run are cached beside its checkpoint.
"""

from __future__ import annotations

import contextlib
import json
import math
import multiprocessing
import statistics
import sys
from concurrent.futures import ProcessPoolExecutor
from pathlib import Path
from typing import Callable

import torch

from .checkpoint import load_checkpoint, load_model
from .coco_metrics import java_available
from .config import Config, changed_fields, load_config
from .evaluate import evaluate, predict, score, split_dataset
from .hard_attention import set_decode_at
from .pretrained import cached_checkpoint, run_dir
from .sources import load_splits
from .transformer import WIDTH_FOR_LSTM

# The budget every variant shares: 3000 training images x 4 epochs in batches of 12 images (1000 updates), a decoder of
# n = 128 (the book's model has 256), the rate 4e-3 it was measured at (the book's model: 6e-3) and 500 test images,
# about 100 s a run in a one-thread worker. Measured on soft
# attention, beam 3, seed 1 unless said: at n = 256 this budget is on a cliff (hallucination 4.8% at seed 0 but 12.7%
# at seed 1; 3 epochs: 26.6%; batches of 24: 20.7%, seed 0) and 4000 images cost 186 s (1.8%); at n = 128 it
# gives 4.0% at both seeds in 100 s. The narrower decoder learns more from few updates. Same data (shapes.seed) for
# every run; train.seed alone changes between seeds.
GRID_BUDGET = {"shapes.n_train": 3000, "shapes.n_test": 500, "train.epochs": 4, "train.batch_images": 12, "model.decoder_dim": 128,
               "train.lr": 4e-3}  # fmt: skip
# Named budgets (`captionlib experiments --budget NAME`): "small" is GRID_BUDGET; "book" is the book's own model,
# Config() unchanged (6000 images x 10 epochs in batches of 48, n = 256, 1000 test images).
BUDGETS = {"small": GRID_BUDGET, "book": {}}

# The authors' capgen.py adds alpha_c * ((1 - alphas.sum(0))**2).sum(0).mean() to the batch mean of each caption's
# summed −log p, with alphas time-major (T, B, L): a sum over the batch's B captions and a mean over the L locations.
# Per caption that is alpha_c·B/L times Σ_i (1 − Σ_t α_ti)², against a summed cross entropy. Their scripts train with
# alpha_c = 1, batch_size = 64 and L = 196 (14 × 14 conv5_4 cells): 64/196 = 0.33 per caption. captionlib averages
# the cross entropy per word, so per word that is 0.33 / 13.4 (the steps of a shapes caption, 12.4 words + <end>)
# = 0.025 (chapter 04 derives it).
PAPER_LAMBDA = 0.025

# The Transformer rows: the fields the recipe shapes_transformer changes (the decoder, dropout 0.1, rate 3e-3, measured
# for it at the book's budget, seed 0: 3e-3 and 1e-3 both learned, 6e-3 less), at the width whose parameter count
# matches the budget's LSTM decoder (variant_config; transformer.WIDTH_FOR_LSTM).
TRANSFORMER = {dotted: new for dotted, _, new in changed_fields(Config().to_dict(), load_config("shapes_transformer").to_dict())}

# name -> the config fields it changes from the book's model ("soft": none; its λ is 0). "hard" is scored twice, once
# per decoding.
VARIANTS = {
    "none": {"model.attention": "none"},
    "soft": {},
    "soft-no-beta": {"model.beta_gate": False},
    "soft-no-deep-output": {"model.deep_output": False},
    "soft-lambda-small": {"train.attention_lambda": PAPER_LAMBDA / 5},  # a fifth of the authors' weight
    "soft-lambda-paper": {"train.attention_lambda": PAPER_LAMBDA},  # the authors' code, in captionlib's units
    "soft-lambda-1": {"train.attention_lambda": 1.0},  # 40 times the authors' weight
    "soft-no-positions": {"model.cell_positions": False},  # the paper's annotations: no cell (x, y) (chapter 09)
    "soft-relation-first": {"shapes.relation_first": True},  # "a A above a B": the relation before the second object
    "soft-no-leftwards": {"shapes.mark_leftwards": False},  # no "leftwards :" opening the right-to-left captions
    "hard": {"model.attention": "hard"},
    "transformer": TRANSFORMER,  # chapter 13
    "transformer-no-positions": {**TRANSFORMER, "model.cell_positions": False},  # no 2-D grid codes, no cell (x, y)
}
SEEDS = (0, 1, 2)

# What the printed table shows, in order: (key in the scores, heading). The JSON holds every score.
COLUMNS = (
    ("bleu4", "BLEU-4"),
    ("meteor", "METEOR"),
    ("cider", "CIDEr"),
    ("grounding", "ground."),
    ("grounding_chance", "chance"),
    ("hallucination", "halluc."),
    ("recall", "recall"),
    ("relation_probe", "probe"),
    ("greedy_relation_accuracy", "rel.acc.g"),
    ("greedy_relation_rate", "rel.rate.g"),
    ("train_minutes", "minutes"),
)


def variant_config(variant: str, seed: int, budget: dict | None = None) -> Config:
    """Config() with the grid's budget, the variant's changes and train.seed = seed."""
    if variant not in VARIANTS:
        raise ValueError(f"experiments: unknown variant {variant!r}; choose from {', '.join(VARIANTS)}")
    values = Config().to_dict()
    for dotted, value in {**(GRID_BUDGET if budget is None else budget), **VARIANTS[variant], "train.seed": seed}.items():
        section, name = dotted.split(".")
        values[section][name] = value
    model = values["model"]
    if model["decoder"] == "transformer" and model["decoder_dim"] in WIDTH_FOR_LSTM:  # as many parameters as the LSTM's
        model["d_model"] = WIDTH_FOR_LSTM[model["decoder_dim"]]
        model["ff_dim"] = 4 * model["d_model"]
    return Config.from_dict(values)


def decodings(variant: str) -> tuple[str, ...]:
    """How a variant's model is decoded and scored: a hard model both with the expected context and at argmax α."""
    return ("expected", "argmax") if VARIANTS[variant].get("model.attention") == "hard" else ("expected",)


def scores_file(decode_at: str, coco: bool) -> str:
    """The name of a run's cached scores, beside its checkpoint."""
    return f"scores-{decode_at}{'-coco' if coco else ''}.json"


@torch.no_grad()
def run_scores(checkpoint: Path, decode_at: str = "expected", coco: bool | None = None) -> dict[str, float]:
    """Beam-3 scores on the test split, greedy relation accuracy and rate, and training minutes; cached beside the run."""
    coco = java_available() if coco is None else coco
    cache = checkpoint.parent / scores_file(decode_at, coco)
    if cache.exists():
        return json.loads(cache.read_text())
    model, vocab, cfg = load_model(checkpoint, torch.device("cpu"))
    set_decode_at(model, decode_at)
    test = load_splits(cfg)["test"]
    scores = evaluate(model, vocab, test, beam_size=3, max_len=cfg.train.max_caption_len, coco=coco)
    # Greedy captions, scored without evaluate(): the teacher-forced relation probe above does not depend on decoding.
    greedy_captions = predict(model, split_dataset(test, vocab, cfg.model.image_size), 1, cfg.train.max_caption_len)
    greedy = score(greedy_captions, test, vocab, cfg.model.grid_size, cfg.model.image_size)
    scores |= {f"greedy_{key}": greedy[key] for key in ("relation_accuracy", "relation_rate", "hallucination", "bleu4")}
    if cfg.model.attention == "none":  # α is 1/P by construction: no cell is looked at, so grounding is undefined
        for key in ("grounding", "grounding_chance"):
            scores.pop(key)
    history = load_checkpoint(checkpoint.parent / "last.pt")["history"]
    scores["train_minutes"] = sum(epoch["seconds"] for epoch in history) / 60
    cache.write_text(json.dumps(scores))
    return scores


def row_name(variant: str, decode_at: str) -> str:
    """The table's row for a variant decoded one way: "soft", or "hard (argmax)" for a variant decoded two ways."""
    return variant if len(decodings(variant)) == 1 else f"{variant} ({decode_at})"


def train_and_score(variant: str, seed: int, budget: dict, coco: bool) -> list[tuple[str, dict[str, float]]]:
    """One run of the grid, trained (or found in the cache) and scored -> [(row name, scores)], one per decoding.

    Trained on one thread, in a worker or not: the thread count changes the order of floating-point sums, and so the
    weights in their last bits, and a run must not depend on how many workers trained the grid.
    """
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        with contextlib.redirect_stdout(sys.stderr):  # training's log, so that stdout carries the table alone (--json)
            checkpoint = cached_checkpoint(variant_config(variant, seed, budget))
        return [(row_name(variant, decode_at), {"seed": seed, **run_scores(checkpoint, decode_at, coco)}) for decode_at in decodings(variant)]
    finally:
        torch.set_num_threads(threads)


def run_grid(
    variants: tuple[str, ...] | None = None,
    seeds: tuple[int, ...] = SEEDS,
    budget: dict | None = None,
    log: Callable[[str], None] = print,
    workers: int = 2,
) -> dict[str, list[dict[str, float]]]:
    """Train (or find cached) every variant × seed and score it -> {row name: [scores of each seed]}.

    With workers > 1 the runs that are not yet cached go to that many processes. Each run trains on one thread (see
    train_and_score): on a 2-core CPU two one-thread processes train about 1.3 times as many steps a second as one
    process with two threads, whose threads wait on each other at every small operation.
    """
    budget, coco = GRID_BUDGET if budget is None else budget, java_available()  # decided here, once for every worker
    jobs = [(variant, seed, budget, coco) for variant in variants or tuple(VARIANTS) for seed in seeds]
    todo = [i for i, job in enumerate(jobs) if not is_done(*job)]  # finished, scored runs are read here, without a worker
    if workers > 1 and len(todo) > 1:
        context = multiprocessing.get_context("spawn")  # a fresh interpreter: no OpenMP state inherited from this one
        with ProcessPoolExecutor(min(workers, len(todo)), mp_context=context) as pool:
            results = dict(zip(todo, pool.map(train_and_score, *zip(*(jobs[i] for i in todo)))))
            return _collect((results[i] if i in results else train_and_score(*job) for i, job in enumerate(jobs)), log)
    return _collect((train_and_score(*job) for job in jobs), log)


def is_done(variant: str, seed: int, budget: dict, coco: bool) -> bool:
    """True when each decoding of the run has its scores cached (run_scores writes them only after training finished)."""
    folder = run_dir(variant_config(variant, seed, budget))
    return all((folder / scores_file(decode_at, coco)).exists() for decode_at in decodings(variant))


def _collect(results, log: Callable[[str], None]) -> dict[str, list[dict[str, float]]]:
    """{row name: [scores of each seed]} from the runs' results, in the order of the jobs."""
    rows: dict[str, list[dict[str, float]]] = {}
    for run in results:
        for name, scores in run:
            rows.setdefault(name, []).append(scores)
            log(f"{name}, seed {scores['seed']}: BLEU-4 {scores['bleu4']:.3f}, hallucination {scores['hallucination']:.1%}")
    return rows


def summarise(rows: dict[str, list[dict[str, float]]]) -> dict[str, dict[str, dict[str, float]]]:
    """{row: {metric: {"mean", "std", "min", "max", "n"}}} over seeds; std is the sample standard deviation."""
    table = {}
    for name, runs in rows.items():
        metrics = {}
        for key in runs[0]:
            values = [run[key] for run in runs if isinstance(run.get(key), (int, float)) and key != "seed"]
            if len(values) == len(runs) and all(math.isfinite(v) for v in values):
                std = statistics.stdev(values) if len(values) > 1 else 0.0
                metrics[key] = {"mean": statistics.fmean(values), "std": std, "min": min(values), "max": max(values), "n": len(values)}
        table[name] = metrics
    return table


def compare(table: dict[str, dict[str, dict[str, float]]], a: str, b: str, metric: str) -> int:
    """+1 if row a's mean is above row b's by more than the spread over seeds, −1 if below by more, 0 for a tie.

    The spread is the larger of the two rows' ranges (max − min over seeds): a difference that one more seed of either
    row could undo is not a difference.
    """
    x, y = table[a][metric], table[b][metric]
    spread = max(x["max"] - x["min"], y["max"] - y["min"])
    gap = x["mean"] - y["mean"]
    return 0 if abs(gap) <= spread else (1 if gap > 0 else -1)


# Where less is better: the share of named objects that are not in the image (beam 3 and greedy), and training's minutes.
LOWER_IS_BETTER = frozenset({"hallucination", "greedy_hallucination", "train_minutes"})


def direction(table: dict[str, dict[str, dict[str, float]]], a: str, b: str, metric: str) -> str:
    """compare() in words, for a measure that is neither better nor worse: "higher", "lower" or "tie"."""
    return ("lower", "tie", "higher")[compare(table, a, b, metric) + 1]


def verdict(table: dict[str, dict[str, dict[str, float]]], a: str, b: str, metric: str) -> str:
    """compare() as a verdict on row a against row b: "better", "worse" or "tie", less being better in LOWER_IS_BETTER."""
    sign = compare(table, a, b, metric)
    return ("worse", "tie", "better")[(-sign if metric in LOWER_IS_BETTER else sign) + 1]


def format_table(table: dict[str, dict[str, dict[str, float]]]) -> str:
    """The summary as aligned text: mean ± std over seeds for each column present."""
    columns = [(key, head) for key, head in COLUMNS if any(key in metrics for metrics in table.values())]
    width = max(len(name) for name in table) + 2
    lines = ["".ljust(width) + "".join(head.rjust(15) for _, head in columns)]
    for name, metrics in table.items():
        cells = [f"{metrics[key]['mean']:.3f} ± {metrics[key]['std']:.3f}" if key in metrics else "–" for key, _ in columns]
        lines.append(name.ljust(width) + "".join(cell.rjust(15) for cell in cells))
    seeds = sorted({m["n"] for metrics in table.values() for m in metrics.values()})
    lines.append(f"mean ± standard deviation over {' or '.join(map(str, seeds))} seeds")
    return "\n".join(lines)


def write_table(out: Path, rows: dict[str, list[dict[str, float]]], budget: dict | None = None) -> dict:
    """out/experiments.json: the budget, every run's scores and the summary over seeds."""
    out.mkdir(parents=True, exist_ok=True)
    result = {"budget": GRID_BUDGET if budget is None else budget, "variants": VARIANTS, "runs": rows, "summary": summarise(rows)}
    (out / "experiments.json").write_text(json.dumps(result, indent=1, ensure_ascii=False))
    return result
