"""Stored results: the experiment grid trained once, kept in the repository with its provenance, read by the chapters.

A chapter that reads a grid it trained itself would learn other weights on every machine (float32 or bfloat16, the
thread count), and its verdicts would move with them. So the grid is trained once (`make results`), and each run's
scores, attention statistics, training history and provenance are stored in results/grid-<budget>.json; the few
checkpoints a chapter draws maps from sit in results/checkpoints/. Each variant carries a fingerprint of the training
code's behaviour (the losses of a few deterministic steps on a tiny world): a test recomputes it, so a change to what
training does makes the stored results stale, while an edit to a comment does not.
"""

from __future__ import annotations

import contextlib
import datetime
import json
import math
import os
import platform
import shutil
import subprocess
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from pathlib import Path

import torch

from .checkpoint import load_checkpoint, load_model
from .config import Config
from .evaluate import predict, score, split_dataset
from .experiments import (
    BUDGETS,
    VARIANTS,
    decodings,
    row_name,
    run_grid,
    run_scores,
    summarise,
    train_and_score,
    variant_config,
    verdict,
)
from .metrics import cell_boxes, cells_overlapping, matching_object, named_objects
from .pretrained import STORED_MODEL, run_dir
from .sources import load_splits
from .train import autocast_dtype, train

RESULTS = Path(__file__).resolve().parent.parent / "results"  # the repository's results/, beside captionlib/
SHOWN_IMAGES = 4  # coverage maps stored per run: the first test images (chapter 04's figure)
# The checkpoints the chapters draw from: chapter 11 compares soft and hard attention map by map, at every seed, and
# chapter 13 the Transformer's cross-attention with soft attention, head by head.
STORED_CHECKPOINTS = ("soft", "hard", "transformer")
# The fingerprint's world and budget: three optimiser steps of a tiny model, in float32 on one thread of the CPU (a GPU
# draws other dropout masks and runs TF32 convolutions: other numbers), seconds a variant.
FINGERPRINT_BUDGET = {"shapes.n_train": 36, "shapes.n_val": 4, "shapes.n_test": 4, "train.epochs": 1, "train.batch_images": 12,
                      "model.decoder_dim": 16, "model.encoder_channels": 8, "train.amp": False, "train.hard_sample_p": 1.0,
                      "train.device": "cpu"}  # fmt: skip
FINGERPRINT_RTOL = 1e-3  # float32 on another CPU moves the last digits, not the third


def grid_file(budget: str) -> Path:
    """results/grid-<budget>.json."""
    return RESULTS / f"grid-{budget}.json"


def write_json(path: Path, data: dict) -> Path:
    """Write data to path through a temporary file and a rename: never half-written."""
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(".tmp")
    tmp.write_text(json.dumps(data, indent=1, ensure_ascii=False) + "\n")
    tmp.replace(path)
    return path


def fingerprint(variant: str) -> list[float]:
    """What training does, in numbers: the loss, cross-entropy and penalty of each of 3 steps of `variant` on a tiny
    world (float32, one thread, on the CPU), then the sum of |w| over the trained weights."""
    import tempfile

    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    steps: list[float] = []
    try:
        with tempfile.TemporaryDirectory() as tmp:
            best = train(variant_config(variant, 0, FINGERPRINT_BUDGET), tmp, progress=False, log=lambda _: None,
                         on_step=lambda terms: steps.extend(terms.values()))  # fmt: skip
            weights = load_checkpoint(best)["model"]
            steps.append(float(sum(t.abs().sum() for t in weights.values() if t.is_floating_point())))
    finally:
        torch.set_num_threads(threads)
    return steps


def same_fingerprint(a: list[float], b: list[float]) -> bool:
    """Equal to FINGERPRINT_RTOL: the same training code, whatever CPU recomputed it."""
    return len(a) == len(b) and all(math.isclose(x, y, rel_tol=FINGERPRINT_RTOL, abs_tol=1e-6) for x, y in zip(a, b))


@torch.no_grad()
def attention_statistics(checkpoint: Path, bleu4: float | None = None) -> dict:
    """What the chapters read off a run's α maps: beam-3 captions of its test images -> coverage, spread, sharpness.

    penalty is Σ_i (1 − c_i)² with c_i = Σ_t α_ti (eq. 14's term), minimum its floor (P − T)²/P; on_objects the share of
    a caption's attention on cells overlapping an object, object_cells that share for an even spread; effective_cells
    exp(entropy) of the caption's normalised coverage; peak the mean largest α_t per word; named / background the mean α
    per cell, at words that name an object present, on that object's cells and on cells outside every object.
    bleu4, if given, must be the BLEU-4 these captions were scored with (the same decoding as the stored scores).
    """
    model, vocab, cfg = load_model(checkpoint, torch.device("cpu"))
    test = load_splits(cfg)["test"]
    G, S = cfg.model.grid_size, cfg.model.image_size
    captions = predict(model, split_dataset(test, vocab, S), 3, cfg.train.max_caption_len)
    if bleu4 is not None and abs(score(captions, test, vocab, G, S)["bleu4"] - bleu4) > 1e-9:
        raise RuntimeError(f"{checkpoint}: beam 3 no longer gives the stored BLEU-4 {bleu4}")
    P, cells = G * G, cell_boxes(G, S)  # (P, 4)
    on_object = torch.stack([torch.stack([cells_overlapping(o.box, cells) for o in objs]).any(0) for objs in test.objects])  # (N, P)
    coverage = torch.stack([c.alphas.sum(0) for c in captions])  # (N, P)  c_i = Σ_t α_ti
    steps = torch.tensor([len(c.tokens) for c in captions], dtype=torch.float)  # (N,)  T
    share = coverage / steps.unsqueeze(1)  # (N, P)  sums to 1
    named, background = [], []
    for caption, objs, mask in zip(captions, test.objects, on_object):
        words = [vocab.itos[t] for t in caption.tokens]
        for position, colour, shape in named_objects(words):
            obj = matching_object(colour, shape, objs)
            if obj is not None:  # a hallucinated object has no cells to look at
                named.append(float(caption.alphas[position][cells_overlapping(obj.box, cells)].mean()))
                background.append(float(caption.alphas[position][~mask].mean()))
    return {
        "penalty": float(((1 - coverage) ** 2).sum(1).mean()),
        "minimum": float(((P - steps) ** 2 / P).mean()),
        "on_objects": float((share * on_object).sum(1).mean()),
        "object_cells": float(on_object.float().mean()),
        "effective_cells": float(torch.exp(-(share * share.clamp_min(1e-12).log()).sum(1)).mean()),
        "peak": float(torch.cat([c.alphas.max(1).values for c in captions]).mean()),
        "named": sum(named) / max(len(named), 1),
        "background": sum(background) / max(len(background), 1),
        "coverage_maps": [[round(float(v), 5) for v in coverage[i]] for i in range(SHOWN_IMAGES)],
        "shown_words": [[vocab.itos[t] for t in captions[i].tokens] for i in range(SHOWN_IMAGES)],
    }


def cpu_name() -> str:
    """The CPU's model name, e.g. "AMD EPYC 9R14" (Linux), else what platform knows."""
    with contextlib.suppress(OSError):
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    return platform.processor() or platform.machine()


def provenance() -> dict:
    """Where the results come from: the commit, the software and the machine."""
    commit = subprocess.run(["git", "rev-parse", "HEAD"], cwd=RESULTS.parent, capture_output=True, text=True).stdout.strip()
    dirty = subprocess.run(["git", "status", "--porcelain", "captionlib"], cwd=RESULTS.parent, capture_output=True, text=True).stdout
    return {"commit": commit + ("+uncommitted" if dirty.strip() else ""), "torch": torch.__version__,
            "python": platform.python_version(), "cpu": cpu_name(), "cores": os.cpu_count(),
            "date": datetime.date.today().isoformat()}  # fmt: skip


def store_run(variant: str, seed: int, budget_name: str, coco: bool) -> list[dict]:
    """Train (or find in the cache) one run of the grid and return its stored records, one per decoding."""
    budget = BUDGETS[budget_name]
    train_and_score(variant, seed, budget, coco)  # trains on one thread, scores, caches both
    cfg = variant_config(variant, seed, budget)
    best = run_dir(cfg) / "best.pt"
    history = load_checkpoint(best.parent / "last.pt")["history"]
    stored_at = provenance()  # this run's own: a grid keeps fresh runs stored at earlier commits
    records = []
    for decode_at in decodings(variant):
        scores = run_scores(best, decode_at, coco)
        records.append({
            "row": row_name(variant, decode_at), "variant": variant, "seed": seed, "decode_at": decode_at,
            "scores": scores,
            "attention": attention_statistics(best, scores["bleu4"]) if decode_at == "expected" else None,
            "history": history, "config": cfg.to_dict(),
            "precision": str(autocast_dtype(cfg, torch.device("cpu")) or torch.float32).removeprefix("torch."),
            "threads": 1, "minutes": scores["train_minutes"], "provenance": stored_at,
        })  # fmt: skip
    if variant in STORED_CHECKPOINTS:
        (RESULTS / "checkpoints").mkdir(parents=True, exist_ok=True)
        shutil.copyfile(best, RESULTS / "checkpoints" / f"{budget_name}-{variant}-seed{seed}.pt")
    return records


@dataclass
class StoredGrid:
    """A grid read back from results/: its runs as run_grid gives them, and everything stored beside the scores."""

    budget: str
    data: dict

    @property
    def rows(self) -> dict[str, list[dict]]:
        """{row name: [scores of each seed, with "seed" and the attention statistics]}, like experiments.run_grid."""
        rows: dict[str, list[dict]] = {}
        for record in self.data["runs"]:
            rows.setdefault(record["row"], []).append({"seed": record["seed"], **record["scores"], **(record["attention"] or {})})
        return rows

    def history(self, variant: str, seed: int) -> list[dict]:
        """The run's training history: one record per epoch (loss, cross_entropy, attention_penalty, val_bleu4, seconds)."""
        return next(r["history"] for r in self.data["runs"] if r["variant"] == variant and r["seed"] == seed)

    def checkpoint(self, variant: str, seed: int) -> Path:
        """The stored best.pt of a run that a chapter draws maps from."""
        path = RESULTS / "checkpoints" / f"{self.budget}-{variant}-seed{seed}.pt"
        if not path.exists():
            raise FileNotFoundError(f"{path}: not stored; results.STORED_CHECKPOINTS lists the runs kept ({', '.join(STORED_CHECKPOINTS)})")
        return path

    @property
    def seeds(self) -> tuple[int, ...]:
        return tuple(self.data["seeds"])

    @property
    def variants(self) -> dict[str, dict]:
        return self.data["variants"]


def stored_grid(budget: str = "small") -> StoredGrid:
    """results/grid-<budget>.json, as `make results` stored it."""
    path = grid_file(budget)
    if not path.exists():
        raise FileNotFoundError(f"{path}: no stored grid of budget {budget!r}; `make results` trains and stores it")
    return StoredGrid(budget, json.loads(path.read_text()))


def current_fingerprints() -> dict[str, list[float]]:
    """Every variant's fingerprint as the current code computes it."""
    return {v: fingerprint(v) for v in VARIANTS}


def fresh_variants(stored: dict[str, list[float]], current: dict[str, list[float]]) -> set[str]:
    """The variants whose stored fingerprint the current code reproduces: their stored runs are still its results."""
    return {v for v in current if v in stored and same_fingerprint(stored[v], current[v])}


def stale_variants(grid: StoredGrid) -> list[str]:
    """The variants whose stored fingerprint the current code no longer reproduces (or that are not stored at all)."""
    fresh = fresh_variants(grid.data.get("fingerprints", {}), current_fingerprints())
    return [v for v in VARIANTS if v not in fresh]


def store_grid(budget_name: str, seeds: tuple[int, ...], log=print, workers: int = 2) -> Path:
    """Train and store exactly the runs that are missing or stale; keep the others as they are. -> the JSON's path."""
    from .coco_metrics import java_available

    coco = java_available()
    old = stored_grid(budget_name).data if grid_file(budget_name).exists() else {"runs": [], "fingerprints": {}}
    current = current_fingerprints()
    fresh = fresh_variants(old["fingerprints"], current)
    kept = [r for r in old["runs"] if r["variant"] in fresh and r["seed"] in seeds]
    have = {(r["variant"], r["seed"]) for r in kept}
    todo = [v for v in VARIANTS if any((v, seed) not in have for seed in seeds)]
    if todo:  # trained side by side in one-thread workers, then read back from the cache below
        run_grid(tuple(todo), seeds, BUDGETS[budget_name], log=log, workers=workers)
    runs = list(kept)
    for variant in todo:
        for seed in seeds:
            if (variant, seed) not in have:
                log(f"storing {variant}, seed {seed}")
                runs += store_run(variant, seed, budget_name, coco)
    order = {v: i for i, v in enumerate(VARIANTS)}
    runs.sort(key=lambda r: (order[r["variant"]], r["decode_at"] != "expected", r["seed"]))
    data = {"budget": budget_name, "budget_fields": BUDGETS[budget_name], "variants": VARIANTS, "seeds": list(seeds),
            "coco_metrics": coco, "fingerprints": current, "provenance": provenance(), "runs": runs}  # fmt: skip
    # The grid's provenance is this store's; each run stored since per-run provenance carries its own too.
    spot = old.get("spot_check")  # kept while every row it retrained is still fresh; `--spot-check` redoes it
    if spot and set(spot["rows"]) <= {row_name(v, how) for v in fresh for how in decodings(v)}:
        data["spot_check"] = spot
    return write_json(grid_file(budget_name), data)



DEFAULT_MODEL_SEEDS = (0, 1, 2)


@contextlib.contextmanager
def precision(name: str):
    """Train in `name` ("bfloat16": as this CPU would by default; "float32": CAPTIONLIB_FLOAT32=1) inside the block."""
    saved = os.environ.get("CAPTIONLIB_FLOAT32")
    os.environ["CAPTIONLIB_FLOAT32"] = "1" if name == "float32" else "0"
    try:
        yield
    finally:
        if saved is None:
            del os.environ["CAPTIONLIB_FLOAT32"]
        else:
            os.environ["CAPTIONLIB_FLOAT32"] = saved


def store_default_model(seeds: tuple[int, ...] = DEFAULT_MODEL_SEEDS, log=print, workers: int = 2) -> Path:
    """The book's default model at each seed, trained in float32 and, where this CPU has it, in bfloat16, scored as the
    grid scores (beam 3, and greedy for the relations) -> results/default-model.json, the table the README shows."""
    from .coco_metrics import java_available

    names = ["float32"] + (["bfloat16"] if autocast_dtype(Config(), torch.device("cpu")) is torch.bfloat16 else [])
    runs = []
    for name in names:
        with precision(name):  # the run_dir hash and train() both read it
            rows = run_grid(("soft",), seeds, BUDGETS["book"], log=log, workers=workers)
            for scores in rows["soft"]:
                history = load_checkpoint(run_dir(variant_config("soft", scores["seed"], BUDGETS["book"])) / "last.pt")["history"]
                runs.append({"precision": name, "seed": scores["seed"], "threads": 1, "scores": scores, "history": history})
    with precision("float32"):  # the book's model (pretrained.STORED_MODEL): seed 0, trained in float32
        book_model = run_dir(variant_config("soft", 0, BUDGETS["book"])) / "best.pt"
    STORED_MODEL.parent.mkdir(parents=True, exist_ok=True)
    shutil.copyfile(book_model, STORED_MODEL)
    data = {"config": Config().to_dict(), "coco_metrics": java_available(), "provenance": provenance(), "runs": runs,
            "book_model": {"precision": "float32", "seed": 0, "file": str(STORED_MODEL.relative_to(RESULTS.parent))}}  # fmt: skip
    return write_json(RESULTS / "default-model.json", data)


def stored_default_model() -> list[dict]:
    """The runs of results/default-model.json: [{"precision", "seed", "scores", "history", ...}]."""
    path = RESULTS / "default-model.json"
    if not path.exists():
        raise FileNotFoundError(f"{path}: the default model's seeds are not stored; `make results` trains and stores them")
    return json.loads(path.read_text())["runs"]


def stored_book_model() -> dict:
    """The stored run that is the book's model (pretrained.STORED_MODEL): its precision, seed, scores and history."""
    if not STORED_MODEL.exists():  # shapes_checkpoint() would train one; a chapter compares these scores with it
        raise FileNotFoundError(f"{STORED_MODEL}: absent, so the chapters caption with a model trained here, not the book's")
    data = json.loads((RESULTS / "default-model.json").read_text())
    book = data["book_model"]
    if RESULTS.parent / book["file"] != STORED_MODEL:
        raise ValueError(f"{RESULTS / 'default-model.json'}: book_model.file is {book['file']}, not {STORED_MODEL}")
    return next(run for run in data["runs"] if (run["precision"], run["seed"]) == (book["precision"], book["seed"]))


# The README's table of the default model: (key in the stored scores, heading), beam 3 unless "greedy_".
DEFAULT_MODEL_COLUMNS = (
    ("bleu4", "BLEU-4"), ("grounding", "grounding"), ("hallucination", "halluc."), ("relation_probe_left", "left"),
    ("relation_probe_right", "right"), ("relation_probe_above", "above"), ("relation_probe_below", "below"),
    ("greedy_relation_accuracy", "rel. acc. greedy"), ("greedy_relation_rate", "rate greedy"),
    ("relation_accuracy", "rel. acc. beam"), ("relation_rate", "rate beam"),
)  # fmt: skip  (no minutes: the runs trained two at a time, beside other jobs, so their times measure the load)


def default_model_table(runs: list[dict]) -> str:
    """The stored default-model runs as a Markdown table, one row per (precision, seed), then the range of each column."""
    lines = ["| precision | seed | " + " | ".join(head for _, head in DEFAULT_MODEL_COLUMNS) + " |",
             "|---|---|" + "---|" * len(DEFAULT_MODEL_COLUMNS)]  # fmt: skip
    for run in runs:
        cells = [f"{run['scores'][key]:.3f}" if key in run["scores"] else "–" for key, _ in DEFAULT_MODEL_COLUMNS]
        lines.append(f"| {run['precision']} | {run['seed']} | " + " | ".join(cells) + " |")
    ranges = [f"{min(r['scores'][key] for r in runs):.3f}–{max(r['scores'][key] for r in runs):.3f}" for key, _ in DEFAULT_MODEL_COLUMNS]
    lines.append("| all | range | " + " | ".join(ranges) + " |")
    return "\n".join(lines)


SPOT_CHECK = ("soft", "soft-no-beta", "soft-no-positions")  # rows retrained in the other precision, one seed each


def store_spot_check(budget_name: str = "small", variants: tuple[str, ...] = SPOT_CHECK, seed: int = 0, log=print, workers: int = 2) -> Path:
    """Retrain one seed of a few rows of the stored grid in the precision it was not trained in, and store their
    scores beside it ("spot_check"): does a float32 run land inside the spread of the bfloat16 seeds, and vice versa?"""
    grid = stored_grid(budget_name)
    stored = {record["precision"] for record in grid.data["runs"]}
    other = "float32" if stored == {"bfloat16"} else "bfloat16"
    with precision(other):
        rows = run_grid(variants, (seed,), BUDGETS[budget_name], log=log, workers=workers)
    return write_json(grid_file(budget_name), grid.data | {"spot_check": {"precision": other, "seed": seed, "rows": rows}})


def other_precision_runs(grid: StoredGrid) -> dict[str, list[dict]]:
    """Each row's stored runs in the precision the grid was not trained in: the spot check's, and at the default
    config's budget the default model's seeds, which are soft attention's runs (its seed 0 is the spot check's)."""
    spot = grid.data.get("spot_check")
    runs = {name: list(row) for name, row in (spot["rows"] if spot else {}).items()}
    other = {"bfloat16", "float32"} - {record["precision"] for record in grid.data["runs"]}
    if grid.data["budget_fields"] == {}:  # Config() unchanged: results/default-model.json holds soft at seeds 0-2
        runs["soft"] = [{**run["scores"], "seed": run["seed"]} for run in stored_default_model() if run["precision"] in other]
    return runs


def both_precisions(grid: StoredGrid) -> dict[str, list[dict]]:
    """grid.rows with each row's runs in the other precision added: the runs a verdict must hold on (chapter 12)."""
    extra = other_precision_runs(grid)
    return {name: runs + extra.get(name, []) for name, runs in grid.rows.items()}


def settled_verdicts(grid: StoredGrid, rows: Iterable[str], metrics: Iterable[str], against: str = "soft",
                     judge: Callable[[dict, str, str, str], str] = verdict) -> dict[str, dict[str, str]]:
    """{row: {metric: word}} against `against`: the grid's verdict where both precisions' runs give it too, else "tie"."""
    # judge: experiments.verdict ("better", "worse", "tie") or experiments.direction ("higher", "lower", "tie"); a metric
    # that a row lacks (`none` has no grounding) is left out. Chapter 12 teaches the rule.
    table, both, metrics = summarise(grid.rows), summarise(both_precisions(grid)), tuple(metrics)
    settled = {}
    for row in rows:
        words = {m: judge(table, row, against, m) for m in metrics if m in table[row] and m in table[against]}
        settled[row] = {m: word if judge(both, row, against, m) == word else "tie" for m, word in words.items()}
    return settled


def timeless(run: dict) -> dict:
    """A run's scores without its train_minutes: what a retrain of the same run reproduces to the last digit."""
    return {key: value for key, value in run.items() if key != "train_minutes"}
