"""Checkpoints: one self-describing file, written atomically, read back with weights_only=True."""

from __future__ import annotations

import os
import pickle
import tempfile
import zipfile
from pathlib import Path

import torch

from .config import Config
from .model import CaptionModel
from .vocab import Vocabulary

FORMAT = "captionlib-checkpoint-v1"


class CheckpointError(ValueError):
    """A checkpoint file that cannot be used; str() is one line naming the file."""


def save_checkpoint(payload: dict, path: str | Path) -> None:
    """torch.save to a temporary file in the same folder, fsync, then rename over the target."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        with os.fdopen(fd, "wb") as f:
            torch.save({"format": FORMAT, **payload}, f)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)  # atomic: readers see the old file or the new one, never half of one
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def load_checkpoint(path: str | Path, map_location: str | torch.device = "cpu") -> dict:
    """Read a checkpoint without executing any code from it (weights_only=True)."""
    path = Path(path)
    if not path.is_file():
        raise CheckpointError(f"{path}: no such checkpoint file")
    try:
        payload = torch.load(path, map_location=map_location, weights_only=True)
    except pickle.UnpicklingError as e:
        first = str(e).strip().splitlines()
        detail = next((line for line in first if "GLOBAL" in line or "Unsupported" in line), first[0] if first else "")
        raise CheckpointError(f"{path}: refused, holds objects weights_only=True does not load ({detail.strip()})") from None
    except (RuntimeError, EOFError, zipfile.BadZipFile, OSError) as e:
        first = (str(e).strip().splitlines() or [type(e).__name__])[0]
        raise CheckpointError(f"{path}: truncated or not a torch checkpoint ({first})") from None
    if not isinstance(payload, dict) or payload.get("format") != FORMAT:
        raise CheckpointError(f"{path}: not a captionlib checkpoint (no '{FORMAT}' marker)")
    return payload


def model_from_checkpoint(payload: dict, path: str | Path = "<checkpoint>") -> tuple[CaptionModel, Vocabulary, Config]:
    """Rebuild model, vocabulary and config from a loaded checkpoint, checking they belong together."""
    try:
        config = Config.from_dict(payload["config"])
        vocab = Vocabulary(payload["vocab"])
        state = payload["model"]
    except (KeyError, TypeError, ValueError) as e:
        raise CheckpointError(f"{path}: incomplete checkpoint ({e})") from None
    rows = state.get("decoder.embedding.weight")
    if rows is None or rows.size(0) != len(vocab):
        got = "missing" if rows is None else rows.size(0)
        raise CheckpointError(f"{path}: vocabulary has {len(vocab)} words but the model's embedding has {got} rows")
    config.model.pretrained = False  # the weights come from the checkpoint, not from torchvision
    model = CaptionModel(config.model, len(vocab))
    try:
        model.load_state_dict(state)
    except RuntimeError as e:
        raise CheckpointError(f"{path}: weights do not fit the model its config describes ({str(e).splitlines()[0]})") from None
    model.eval()
    return model, vocab, config


def load_model(path: str | Path, map_location: str | torch.device = "cpu") -> tuple[CaptionModel, Vocabulary, Config]:
    """Load a trained captioner for inference: (model in eval mode, vocabulary, config)."""
    return model_from_checkpoint(load_checkpoint(path, map_location), path)
