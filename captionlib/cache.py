"""The cache of trained models ($CAPTIONLIB_CACHE): what is in it, and removing the runs the current sources no longer produce."""

from __future__ import annotations

import datetime
import fcntl
import shutil
from contextlib import nullcontext, suppress
from dataclasses import dataclass, field
from pathlib import Path

import torch

from .checkpoint import load_checkpoint
from .config import Config, changed_fields
from .distributed import resolve_device
from .files import cache_dir
from .pretrained import run_dir
from .train import BEST, LAST, autocast_dtype

# str(train.autocast_dtype(...)), as pretrained.run_dir hashes it: float32, bfloat16 on a CPU, float16 on a GPU.
PRECISIONS = ("None", "torch.bfloat16", "torch.float16")
KEPT = ("current", "other precision")  # the statuses prune keeps: the current sources train these runs, here or elsewhere
MB = 1e6


@dataclass
class Entry:
    """One thing in the cache folder: a run (a folder holding last.pt or best.pt) or anything else ("other")."""

    path: Path
    size: int  # bytes, all its files
    last_used: float  # the newest mtime of its files (a Unix time)
    status: str = "other"  # runs: current, other precision, stale or unreadable
    changes: list[tuple[str, object]] = field(default_factory=list)  # (dotted field, value) where its config is not Config()
    epochs: tuple[int, int] | None = None  # (done, total)

    @property
    def is_run(self) -> bool:
        """True for a run folder, False for anything else (the feature cache, a run still in its first epoch)."""
        return self.status != "other"

    def to_dict(self) -> dict:
        """The entry as `captionlib cache list --json` prints it."""
        done, total = self.epochs or (None, None)
        used = datetime.datetime.fromtimestamp(self.last_used).astimezone().isoformat(timespec="seconds")
        return {"name": self.path.name, "run": self.is_run, "status": self.status, "size_mb": round(self.size / MB, 1),
                "epochs_done": done, "epochs": total, "last_used": used, "changes": dict(self.changes)}  # fmt: skip


def run_name(config: Config, precision: str) -> str:
    """The folder name pretrained.run_dir gives `config` trained in `precision` (one of PRECISIONS) by these sources."""
    return run_dir(config, precision).name


def precision_here(config: Config) -> str | None:
    """The precision this machine trains `config` in, as run_dir hashes it; None for train.device=cuda without a GPU."""
    if config.train.device == "cuda" and not torch.cuda.is_available():
        return None
    return str(autocast_dtype(config, resolve_device(config.train.device)))


def run_status(name: str, config: Config) -> str:
    """'current' when this machine trains `config` into folder `name`, 'other precision' when another one does, else 'stale'."""
    here = precision_here(config)
    if here is not None and name == run_name(config, here):
        return "current"
    return "other precision" if name in {run_name(config, p) for p in PRECISIONS if p != here} else "stale"


def size_and_last_use(path: Path) -> tuple[int, float]:
    """Bytes of the files under `path` and their newest mtime; files that vanish meanwhile (a run writing) are skipped."""
    size, newest = 0, 0.0
    for file in [path, *path.rglob("*")] if path.is_dir() else [path]:
        with suppress(FileNotFoundError):
            stat = file.lstat()
            if not file.is_dir():
                size, newest = size + stat.st_size, max(newest, stat.st_mtime)
    return size, newest


def describe(path: Path) -> Entry:
    """What `path`, a file or folder of the cache, is: a run with its config, epochs and status, or "other".

    Last used is the newest mtime of its files: pretrained.cached_checkpoint opens the run's .lock for writing each
    time it hands the model out, training writes last.pt and best.pt, and scoring writes scores-*.json.
    """
    size, last_used = size_and_last_use(path)
    checkpoint = next((path / name for name in (LAST, BEST) if (path / name).is_file()), None)
    if checkpoint is None:
        return Entry(path, size, last_used)
    try:
        payload = load_checkpoint(checkpoint)
        config = Config.from_dict(payload["config"])
        epochs = (payload["epoch"] + 1, config.train.epochs)
    except (ValueError, KeyError, TypeError):  # CheckpointError is a ValueError; so is a config out of today's limits
        return Entry(path, size, last_used, "unreadable")
    changes = [(name, value) for name, _, value in changed_fields(Config().to_dict(), config.to_dict())]
    return Entry(path, size, last_used, run_status(path.name, config), changes, epochs)


def entries(root: Path | None = None) -> list[Entry]:
    """Everything in the cache folder (default: cache_dir()), by name; [] when there is no cache yet."""
    root = cache_dir() if root is None else root
    return [describe(path) for path in sorted(root.iterdir())] if root.is_dir() else []


def format_line(entry: Entry) -> str:
    """One line of `captionlib cache list`: name, size, epochs, last use, status and the config's changes from Config()."""
    epochs = f"{entry.epochs[0]}/{entry.epochs[1]} epochs" if entry.epochs else ""
    used = datetime.datetime.fromtimestamp(entry.last_used).strftime("%Y-%m-%d %H:%M")
    changes = (" ".join(f"{name}={value}" for name, value in entry.changes) or "(default)") if entry.epochs else ""
    return f"{entry.path.name:<20} {entry.size / MB:>9.1f} MB  {epochs:<12}  {used}  {entry.status:<15}  {changes}".rstrip()


def to_prune(found: list[Entry], everything: bool = False) -> list[Entry]:
    """The entries prune removes: the runs the current sources no longer produce, or with everything=True all of them."""
    return [e for e in found if everything or (e.is_run and e.status not in KEPT)]


def count(found: list[Entry]) -> str:
    """How many runs, and other entries if any: '2 runs', '1 run and 1 other entry'."""
    runs = sum(entry.is_run for entry in found)
    others = len(found) - runs
    return f"{runs} run{'s' * (runs != 1)}" + (f" and {others} other entr{'ies' if others != 1 else 'y'}" if others else "")


def remove(path: Path) -> None:
    """Delete a file or folder of the cache; BlockingIOError, deleting nothing, while a process trains into it (holds .lock)."""
    if path.is_symlink() or not path.is_dir():
        path.unlink(missing_ok=True)
        return
    lock = path / ".lock"
    with open(lock) if lock.exists() else nullcontext() as held:
        if held:
            fcntl.flock(held, fcntl.LOCK_EX | fcntl.LOCK_NB)  # the lock pretrained.cached_checkpoint takes to train
        shutil.rmtree(path)
