"""The book's shapes-world model: trained once with the default config on first use, then cached."""

from __future__ import annotations

import fcntl
import hashlib
import json
from pathlib import Path

from .captioner import Captioner
from .checkpoint import load_checkpoint
from .config import Config
from .distributed import resolve_device
from .files import cache_dir  # also importable from here, as before
from .train import BEST, LAST, autocast_dtype, train

# Every module that train() runs, down to the decoding and BLEU that pick best.pt: a change to any of them retrains.
MODEL_SOURCES = (
    "config.py", "vocab.py", "shapes.py", "sources.py", "rows.py", "layouts.py", "flickr.py", "karpathy.py", "images.py",
    "data.py", "features.py", "encoder.py", "attention.py", "hard_attention.py", "no_attention.py", "decoder.py", "transformer.py", "model.py", "loss.py", "distributed.py",
    "decoding.py", "metrics.py", "relations.py", "evaluate.py", "files.py", "checkpoint.py", "train.py",
)  # fmt: skip


# The book's model: Config() trained in float32 at seed 0 by `make results` (results.store_default_model), stored with
# its provenance. A model trained on another CPU, or in bfloat16, has other weights, as another seed would: the
# chapters read this one, and the README tables the default config at three seeds in each precision.
STORED_MODEL = Path(__file__).resolve().parent.parent / "results" / "checkpoints" / "default-float32-seed0.pt"


def run_dir(config: Config, precision: str | None = None) -> Path:
    """$CAPTIONLIB_CACHE/<data>-<hash>, where `config` is trained: the hash covers the config, the model's sources and
    the precision this machine trains it in (float32 and bfloat16 runs of one config learn different weights), or
    `precision` as str(train.autocast_dtype(...)) gives it: "None" (float32), "torch.bfloat16" or "torch.float16"."""
    digest = hashlib.sha256(json.dumps(config.to_dict(), sort_keys=True).encode())
    if precision is None:
        precision = str(autocast_dtype(config, resolve_device(config.train.device)))  # e.g. "torch.bfloat16"
    digest.update(precision.encode())
    for name in MODEL_SOURCES:  # a change to what defines or trains the model retrains it
        digest.update((Path(__file__).parent / name).read_bytes())
    name = "shapes" if config.data == "shapes" else Path(config.data).name
    return cache_dir() / f"{name}-{digest.hexdigest()[:10]}"


def is_trained(config: Config) -> bool:
    """True when run_dir(config) holds a run that finished all its epochs."""
    last = run_dir(config) / LAST
    return last.exists() and load_checkpoint(last)["epoch"] + 1 >= config.train.epochs


def cached_checkpoint(config: Config | None = None, progress: bool = False) -> Path:
    """best.pt of `config` (default: Config()) trained on first use and cached; later calls return at once.

    Equivalent to `captionlib train --out $CAPTIONLIB_CACHE/<data>-<hash>`. The hash covers the config
    and the source files that define and train the model, so a stale model is never reused; a file lock
    lets several notebooks ask at once while only one of them trains, and an interrupted run resumes.
    """
    config = config or Config()
    out = run_dir(config)
    out.mkdir(parents=True, exist_ok=True)
    with open(out / ".lock", "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)  # released when the file closes
        if not is_trained(config):
            train(config, out, progress=progress)
    return out / BEST


def shapes_checkpoint(progress: bool = False) -> Path:
    """The book's default shapes model: the one stored in the repository (STORED_MODEL), the same weights for every
    reader; where it is absent (a wheel install), Config() trained on first use and cached (about 5 CPU minutes)."""
    return STORED_MODEL if STORED_MODEL.exists() else cached_checkpoint(Config(), progress)


def shapes_captioner() -> Captioner:
    """A Captioner for the default shapes model (trained and cached on first use)."""
    return Captioner.from_checkpoint(shapes_checkpoint())
