"""Command line: `python -m captionlib {train,evaluate,caption,experiments,shapes,cache} ...`."""

from __future__ import annotations

import argparse
import dataclasses
import json
import sys
from pathlib import Path

from .config import DECODE_AT, Config, load_config, recipe_names

EXIT_OK, EXIT_FAILED = 0, 1
BOOLEANS = {"1": True, "true": True, "yes": True, "on": True, "0": False, "false": False, "no": False, "off": False}


def fail(message: str) -> int:
    """Print a one-line error and return the failure exit code."""
    print(f"captionlib: error: {message}", file=sys.stderr)
    return EXIT_FAILED


def parse_override(text: str) -> tuple[str, str, str]:
    """'model.decoder_dim=512' -> ('model', 'decoder_dim', '512')."""
    key, sep, value = text.partition("=")
    section, dot, name = key.partition(".")
    if not sep or not dot:
        raise ValueError(f"--set {text!r}: expected SECTION.FIELD=VALUE, e.g. model.decoder_dim=512")
    return section, name, value


def parse_value(text: str, kind: type, value: str):
    """The VALUE of --set SECTION.FIELD=VALUE as the field's type (bool: true/false, yes/no, on/off, 1/0)."""
    value = value.strip()
    if kind is bool and value.lower() in BOOLEANS:
        return BOOLEANS[value.lower()]
    if kind is not bool:
        try:
            return kind(value)
        except ValueError:
            pass
    raise ValueError(f"--set {text!r}: expected {'true or false' if kind is bool else kind.__name__}")


def build_config(args: argparse.Namespace) -> Config:
    """Defaults, then --config JSON, then the named options, then each --set."""
    cfg = Config()
    if args.config:
        cfg = load_config(args.config)
    if args.data:
        cfg.data = args.data
    for field, value in (("epochs", args.epochs), ("seed", args.seed), ("attention_lambda", args.attention_lambda)):
        if value is not None:
            setattr(cfg.train, field, value)
    if args.seed is not None:
        cfg.shapes.seed = args.seed
    for text in args.set or []:
        (section, name), value = typed_override(text, cfg)
        setattr(getattr(cfg, section), name, value)
    return Config.from_dict(cfg.to_dict())  # round trip: checks every value against config.LIMITS


def typed_override(text: str, cfg: Config) -> tuple[tuple[str, str], object]:
    """--set SECTION.FIELD=VALUE -> ((section, field), the value as the field's type in cfg); ValueError naming it."""
    section, name, value = parse_override(text)
    part = getattr(cfg, section, None)
    if not dataclasses.is_dataclass(part) or name not in {f.name for f in dataclasses.fields(part)}:
        raise ValueError(f"--set {text!r}: no config field {section}.{name}")
    return (section, name), parse_value(text, type(getattr(part, name)), value)


def cmd_train(args: argparse.Namespace) -> int:
    from .distributed import leave_group
    from .sources import load_splits
    from .train import train

    cfg = build_config(args)
    try:
        best = train(cfg, args.out, progress=not args.no_progress, splits=load_splits(cfg, strict=args.strict))
    except FloatingPointError:  # train.NonFiniteError: raised on every process at once, with the same line
        if not leave_group():
            return EXIT_FAILED  # rank 0 alone reports it
        raise
    if leave_group():  # under torchrun, rank 0 alone reports
        print(f"best checkpoint: {best}")
    return EXIT_OK


def cmd_evaluate(args: argparse.Namespace) -> int:
    from .checkpoint import load_model
    from .distributed import init_distributed, leave_group
    from .evaluate import evaluate
    from .hard_attention import set_decode_at
    from .sources import load_splits

    topo = init_distributed(args.device, setting="--device")  # under torchrun the processes share the decoding
    model, vocab, cfg = load_model(args.checkpoint, topo.device)
    set_decode_at(model, args.decode_at)
    if args.data:
        cfg.data = args.data
    split = load_splits(cfg, strict=args.strict)[args.split]
    max_len = args.max_len if args.max_len is not None else cfg.train.max_caption_len
    result = evaluate(
        model, vocab, split, args.beam_size, max_len, args.length_penalty, coco=args.metrics == "coco", num_workers=cfg.train.num_workers
    )
    result = {"split": args.split, "images": len(split), "beam_size": args.beam_size, **result}
    if cfg.model.attention == "hard":
        result["decode_at"] = args.decode_at
    if not leave_group():
        return EXIT_OK  # rank 0 alone reports
    if args.json:
        print(json.dumps(result))
    else:
        for key, value in result.items():
            print(f"{key:>18}: {value:.4f}" if isinstance(value, float) else f"{key:>18}: {value}")
    return EXIT_OK


def cmd_caption(args: argparse.Namespace) -> int:
    from .captioner import Captioner
    from .distributed import resolve_device
    from .images import ImageLoadError, open_image

    if args.attention:
        _check_figure_path(Path(args.attention))  # before any work: a typo should not cost a model load
    captioner = Captioner.from_checkpoint(args.checkpoint or _default_checkpoint(), resolve_device(args.device, setting="--device"))
    status = EXIT_OK
    for i, path in enumerate(args.images):
        try:
            image = open_image(path)
        except ImageLoadError as e:
            status = fail(str(e))
            continue  # the other images still get their captions
        (caption,) = captioner.caption([image], args.beam_size)
        words = captioner.words(caption)
        if args.json:
            print(json.dumps({"image": path, "caption": " ".join(words), "log_prob": caption.score, "finished": caption.finished}))
        else:
            print(f"{path}\t{' '.join(words)}")
        if args.attention:
            out = Path(args.attention)
            if len(args.images) > 1:
                out = out.with_name(f"{out.stem}-{i + 1}{out.suffix}")
            try:
                _save_attention(out, image, words, caption, captioner.grid_size, title=Path(path).name)
            except OSError as e:
                status = fail(f"{out}: {e.strerror or e}")  # a full disk, say: the other images still go on
    return status


def _check_figure_path(out: Path) -> None:
    """Refuse, before any work, an --attention path whose folder is missing or whose suffix matplotlib cannot write."""
    from matplotlib.backend_bases import FigureCanvasBase

    formats = FigureCanvasBase.get_supported_filetypes()
    if out.suffix[1:].lower() not in formats:
        raise ValueError(f"--attention {out}: unknown figure format {out.suffix!r}; use one of {', '.join(sorted(formats))}")
    if not out.parent.resolve().is_dir():
        raise ValueError(f"--attention {out}: no folder {out.parent}")


def _save_attention(out: Path, image, words: list[str], caption, grid_size: int, title: str) -> None:
    """Write one image's attention figure to out, whole or not at all (files.atomic_path)."""
    import matplotlib.pyplot as plt

    from .files import atomic_path
    from .plots import attention_figure

    figure = attention_figure(image, words, caption.alphas, grid_size, title=title)
    try:
        with atomic_path(out) as tmp:
            figure.savefig(tmp, dpi=110, format=out.suffix[1:].lower())  # the temporary name has no telling suffix
    finally:
        plt.close(figure)  # else matplotlib keeps every figure and warns past 20 images
    print(f"attention figure: {out}", file=sys.stderr)


def _default_checkpoint() -> Path:
    from .pretrained import shapes_checkpoint

    return shapes_checkpoint(progress=True)


def cmd_shapes_export(args: argparse.Namespace) -> int:
    from .shapes import export_flickr8k, generate

    given = {field: getattr(args, field) for field in ("n_train", "n_val", "n_test", "seed", "image_size")}
    cfg = Config.from_dict({"shapes": {k: v for k, v in given.items() if v is not None}}).shapes  # checks the values
    out = export_flickr8k(generate(cfg), args.dir)
    print(f"wrote {cfg.n_train + cfg.n_val + cfg.n_test} images to {out / 'Images'} and captions to {out / 'captions.txt'}")
    return EXIT_OK


def cmd_cache_list(args: argparse.Namespace) -> int:
    from .cache import MB, count, entries, format_line, to_prune
    from .files import cache_dir

    found = entries()
    if args.json:
        print(json.dumps([entry.to_dict() for entry in found]))
        return EXIT_OK
    for entry in found:
        print(format_line(entry))
    stale = to_prune(found)
    print(f"{count(found)}, {sum(e.size for e in found) / MB:.1f} MB in {cache_dir()}; "
          f"stale: {count(stale)} ({sum(e.size for e in stale) / MB:.1f} MB), which `captionlib cache prune` removes")  # fmt: skip
    return EXIT_OK


def cmd_cache_prune(args: argparse.Namespace) -> int:
    from .cache import MB, count, entries, format_line, remove, to_prune

    doomed = to_prune(entries(), everything=args.all)
    if not doomed:
        print("nothing to remove: the current sources produce every cached run")
        return EXIT_OK
    for entry in doomed:
        print(format_line(entry))
    what = f"{count(doomed)} ({sum(e.size for e in doomed) / MB:.1f} MB)"
    if not args.yes:
        if not sys.stdin.isatty():
            return fail(f"cache prune: standard input is not a terminal, so nobody can answer; add --yes to remove {what}")
        try:
            answer = input(f"Remove {what}? [y/N] ")
        except EOFError:
            answer = ""
        if answer.strip().lower() not in ("y", "yes"):
            print("nothing removed")
            return EXIT_OK
    status, removed = EXIT_OK, []
    for entry in doomed:
        try:
            remove(entry.path)
            removed.append(entry)
        except BlockingIOError:
            status = fail(f"{entry.path}: a process is training into it (holds its .lock); left as it is")
        except OSError as e:
            status = fail(f"{e.filename or entry.path}: {e.strerror or e}")  # the other entries still go
    print(f"removed {count(removed)}, freed {sum(e.size for e in removed) / MB:.1f} MB")
    return status


def add_device_option(parser: argparse.ArgumentParser) -> None:
    """--device for the commands that run a trained model (train takes --set train.device=...)."""
    parser.add_argument("--device", default="auto", choices=["auto", "cpu", "cuda"], help="auto (default): the GPU when there is one")


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="captionlib", description="Show, Attend and Tell: train, evaluate and caption.")
    commands = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

    p = commands.add_parser("train", help="train a captioner (resumes when DIR holds an unfinished run)")
    p.add_argument("--out", default="runs/shapes", help="folder for last.pt and best.pt (default: runs/shapes)")
    p.add_argument(
        "--config", metavar="FILE|RECIPE", help=f"JSON file with config fields, or a shipped recipe: {', '.join(recipe_names())}"
    )
    p.add_argument("--data", help="'shapes' (default), a data folder or its caption file (see captionlib.sources)")
    p.add_argument("--strict", action="store_true", help="stop at the first bad caption row or image file instead of skipping it")
    p.add_argument("--epochs", type=int)
    p.add_argument("--seed", type=int, help="seeds the data, the initialisation and the training order")
    p.add_argument("--attention-lambda", type=float, help="λ of the doubly stochastic attention penalty")
    p.add_argument("--set", action="append", metavar="SECTION.FIELD=VALUE", help="any config field, repeatable")
    p.add_argument("--no-progress", action="store_true", help="no tqdm progress bar")
    p.set_defaults(run=cmd_train)

    p = commands.add_parser("evaluate", help="decode a split and print BLEU-1..4 (and object scores on shapes)")
    p.add_argument("--checkpoint", required=True)
    p.add_argument("--split", default="test", choices=["train", "val", "test"])
    p.add_argument("--data", help="override the data set the checkpoint was trained on")
    p.add_argument("--strict", action="store_true", help="stop at the first bad caption row or image file instead of skipping it")
    p.add_argument("--beam-size", type=int, default=3)
    p.add_argument("--length-penalty", type=float, default=0.0, help="rank finished beams by log p / length^α")
    p.add_argument("--max-len", type=int, help="longest caption in words (default: the training config's)")
    p.add_argument("--metrics", choices=["nltk", "coco"], default="nltk", help="coco: also METEOR, ROUGE-L, CIDEr, COCO BLEU")
    p.add_argument("--json", action="store_true", help="print one JSON object")
    p.add_argument(
        "--decode-at", choices=DECODE_AT, default="expected",
        help="hard-attention models: decode with the expected context (the authors' way) or at the most probable location",
    )  # fmt: skip
    add_device_option(p)
    p.set_defaults(run=cmd_evaluate)

    p = commands.add_parser("caption", help="caption image files; bad files are reported, good ones still captioned")
    p.add_argument("images", nargs="+", metavar="IMAGE")
    p.add_argument("--checkpoint", help="default: the cached shapes model (trained on first use)")
    p.add_argument("--beam-size", type=int, default=3)
    p.add_argument("--attention", metavar="OUT.png", help="save each word's attention over the image")
    p.add_argument("--json", action="store_true", help="one JSON object per image")
    add_device_option(p)
    p.set_defaults(run=cmd_caption)

    p = commands.add_parser(
        "experiments",
        help="train a grid of variants x seeds on the same data and budget (cached, resumable) and tabulate their scores",
        description="Each run is the book's shapes model with the grid's budget and one variant's changes; runs are cached "
        "like the book's model, so an interrupted grid resumes. Writes OUT/experiments.json and prints mean ± std over seeds.",
    )
    p.add_argument("--out", default="runs/experiments", help="folder for experiments.json (default: runs/experiments)")
    p.add_argument("--variants", nargs="+", metavar="NAME", help="variants to run (default: every one; a wrong name lists them)")
    p.add_argument("--seeds", nargs="+", type=int, metavar="SEED", help="default: 0 1 2")
    p.add_argument("--workers", type=int, default=2, help="processes of one thread each that train runs side by side (default: 2)")
    p.add_argument("--set", action="append", metavar="SECTION.FIELD=VALUE",
                   help="change the budget every run shares, e.g. --set train.epochs=12 on a GPU; repeatable")  # fmt: skip
    p.add_argument("--budget", default="small", help="a named budget: small (the default) or book (the book's own model)")
    p.add_argument("--store", action="store_true",
                   help="train exactly the runs that are missing or stale in results/grid-BUDGET.json and store them there")  # fmt: skip
    p.add_argument("--spot-check", action="store_true",
                   help="retrain one seed of a few rows of the stored grid in the other precision and store it beside it")  # fmt: skip
    p.add_argument("--store-default-model", action="store_true",
                   help="train the book's default model at --seeds in float32 and (where the CPU has it) bfloat16, and "
                   "store their scores in results/default-model.json")  # fmt: skip
    p.add_argument("--json", action="store_true", help="print the summary as one JSON object")
    p.set_defaults(run=cmd_experiments)

    p = commands.add_parser("shapes", help="the built-in shapes world")
    shapes = p.add_subparsers(dest="shapes_command", required=True, metavar="ACTION")
    e = shapes.add_parser("export", help="write the shapes world in the Flickr8k Kaggle layout")
    e.add_argument("dir")
    e.add_argument("--n-train", type=int)
    e.add_argument("--n-val", type=int)
    e.add_argument("--n-test", type=int)
    e.add_argument("--seed", type=int)
    e.add_argument("--image-size", type=int)
    e.set_defaults(run=cmd_shapes_export)

    p = commands.add_parser("cache", help="the trained models cached in $CAPTIONLIB_CACHE: list them, remove the stale ones")
    cache = p.add_subparsers(dest="cache_command", required=True, metavar="ACTION")
    c = cache.add_parser("list", help="one line per cached run: size, epochs, last use, and whether it is stale")
    c.add_argument("--json", action="store_true", help="print a JSON list")
    c.set_defaults(run=cmd_cache_list)
    c = cache.add_parser("prune", help="remove the runs the current sources no longer produce; asks first")
    c.add_argument("--all", action="store_true", help="remove everything in the cache folder: current runs, feature caches...")
    c.add_argument("--yes", action="store_true", help="remove without asking (needed when standard input is not a terminal)")
    c.set_defaults(run=cmd_cache_prune)
    return parser


def cmd_experiments(args: argparse.Namespace) -> int:
    from .experiments import BUDGETS, SEEDS, VARIANTS, format_table, run_grid, summarise, variant_config, write_table

    unknown = [v for v in args.variants or [] if v not in VARIANTS]
    if unknown:
        return fail(f"--variants: unknown variant {unknown[0]!r}; choose from {', '.join(VARIANTS)}")
    log = (lambda _: None) if args.json else print
    if args.workers < 1:
        return fail("--workers must be at least 1")
    if args.budget not in BUDGETS:
        return fail(f"--budget {args.budget!r}: choose from {', '.join(BUDGETS)}")
    if args.spot_check:
        from .results import store_spot_check

        print(store_spot_check(args.budget, log=log, workers=args.workers))
        return EXIT_OK
    if args.store_default_model:
        from .results import DEFAULT_MODEL_SEEDS, default_model_table, store_default_model, stored_default_model

        path = store_default_model(tuple(args.seeds or DEFAULT_MODEL_SEEDS), log=log, workers=args.workers)
        print(f"{path}\n{default_model_table(stored_default_model())}")
        return EXIT_OK
    if args.store:  # a stored grid is a named budget, every variant, as the chapters read it
        if args.set or args.variants:
            return fail("--store stores every variant at a named budget: drop --set and --variants")
        from .results import store_grid, stored_grid

        path = store_grid(args.budget, tuple(args.seeds or SEEDS), log=log, workers=args.workers)
        summary = summarise(stored_grid(args.budget).rows)
        print(json.dumps(summary) if args.json else f"{path}\n{format_table(summary)}")
        return EXIT_OK
    budget = dict(BUDGETS[args.budget])
    for text in args.set or []:
        (section, name), value = typed_override(text, Config())
        budget[f"{section}.{name}"] = value
    variant_config("soft", 0, budget)  # checks every value against config.LIMITS before anything trains
    rows = run_grid(tuple(args.variants or VARIANTS), tuple(args.seeds or SEEDS), budget, log=log, workers=args.workers)
    result = write_table(Path(args.out), rows, budget)
    print(json.dumps(result["summary"]) if args.json else format_table(result["summary"]))
    return EXIT_OK


def main(argv: list[str] | None = None) -> int:
    """Entry point; returns the process exit code."""
    args = build_parser().parse_args(argv)  # --help and usage errors exit here, before torch is imported
    from .checkpoint import CheckpointError
    from .encoder import WeightsNotFoundError

    if getattr(args, "beam_size", 1) < 1:
        return fail("--beam-size must be at least 1")
    if getattr(args, "max_len", None) is not None and args.max_len < 1:
        return fail("--max-len must be at least 1")
    try:
        return args.run(args)
    except OSError as e:  # FileNotFoundError, IsADirectoryError, a full disk...: the file and the reason
        return fail(f"{e.filename}: {e.strerror}" if e.filename else str(e))
    except (CheckpointError, WeightsNotFoundError, ValueError, FloatingPointError) as e:
        return fail(str(e))
    except KeyError as e:  # str() of a KeyError quotes its key
        return fail(str(e.args[0]) if e.args else "KeyError")
    except KeyboardInterrupt:
        return fail("interrupted")
