"""Checkpoints: one self-describing file, written atomically, read back with weights_only=True."""

from __future__ import annotations

import pickle
import warnings
from pathlib import Path

import torch

from .config import Config
from .files import atomic_path
from .model import CaptionModel
from .vocab import Vocabulary

FORMAT = "captionlib-checkpoint-v1"


class CheckpointError(ValueError):
    """A checkpoint file that cannot be used; str() is one line naming the file."""


def save_checkpoint(payload: dict, path: str | Path) -> None:
    """torch.save to a temporary file in the same folder, fsync, then rename over the target (files.atomic_path)."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    with atomic_path(path) as tmp, open(tmp, "xb") as f:  # open() honours the umask, unlike mkstemp's 0600
        torch.save({"format": FORMAT, **payload}, f)


def first_sentence(text: str) -> str:
    """Torch's error messages run on for several sentences; the first one names the problem."""
    return text.strip().split(". ")[0].rstrip(".")


def load_checkpoint(path: str | Path, map_location: str | torch.device = "cpu") -> dict:
    """Read a checkpoint without executing any code from it (weights_only=True)."""
    path = Path(path)
    if path.is_dir():
        raise CheckpointError(f"{path}: is a directory, not a checkpoint file")
    if not path.is_file():
        raise CheckpointError(f"{path}: no such checkpoint file")
    try:
        with warnings.catch_warnings():
            # A foreign pickle makes torch warn about its protocol before refusing it; the refusal says enough.
            warnings.filterwarnings("ignore", message="Detected pickle protocol")
            payload = torch.load(path, map_location=map_location, weights_only=True)
    except pickle.UnpicklingError as e:
        lines = str(e).strip().splitlines()
        named = next((line for line in lines if "GLOBAL" in line), None)  # a class or function it would have to import
        if named:
            raise CheckpointError(f"{path}: refused, holds objects weights_only=True does not load ({first_sentence(named)})") from None
        detail = next((line for line in lines if "Unsupported" in line), lines[0] if lines else "")
        raise CheckpointError(f"{path}: truncated or not a torch checkpoint ({first_sentence(detail)})") from None
    except Exception as e:  # noqa: BLE001  garbage makes the unpickler raise anything: EOFError, IndexError, struct.error...
        detail = (str(e).strip().splitlines() or [type(e).__name__])[0]
        if "CUDA device" in detail and not torch.cuda.is_available():
            raise CheckpointError(f"{path}: asked to load onto a GPU, but torch sees none; load it with map_location='cpu'") from None
        raise CheckpointError(f"{path}: truncated or not a torch checkpoint ({type(e).__name__}: {first_sentence(detail)})") from None
    if not isinstance(payload, dict) or payload.get("format") != FORMAT:
        raise CheckpointError(f"{path}: not a captionlib checkpoint (no '{FORMAT}' marker)")
    return payload


def model_from_checkpoint(payload: dict, path: str | Path = "<checkpoint>") -> tuple[CaptionModel, Vocabulary, Config]:
    """Rebuild model, vocabulary and config from a loaded checkpoint, checking they belong together."""
    try:
        config = Config.from_dict(payload["config"])
        words, state = payload["vocab"], payload["model"]
    except KeyError as e:
        raise CheckpointError(f"{path}: incomplete checkpoint (no {e} entry)") from None
    except ValueError as e:  # a config value out of its limits
        raise CheckpointError(f"{path}: {e}") from None
    if not (isinstance(words, list) and all(isinstance(word, str) for word in words)):
        raise CheckpointError(f"{path}: its 'vocab' entry is not a list of words")
    try:
        vocab = Vocabulary(words)
    except ValueError as e:  # no special tokens first, or a word twice
        raise CheckpointError(f"{path}: {e}") from None
    if not isinstance(state, dict) or not all(isinstance(v, torch.Tensor) for v in state.values()):
        raise CheckpointError(f"{path}: its 'model' entry is not a state dict of tensors")
    rows = state.get("decoder.embedding.weight")
    if rows is None or rows.dim() != 2 or rows.size(0) != len(vocab):
        got = "missing" if rows is None else rows.size(0)
        raise CheckpointError(f"{path}: vocabulary has {len(vocab)} words but the model's embedding has {got} rows")
    try:
        model = CaptionModel(config.model, len(vocab), load_weights=False)  # the weights come from the checkpoint
    except ValueError as e:  # an encoder name this torchvision does not know
        raise CheckpointError(f"{path}: {e}") from None
    try:
        model.load_state_dict(state)
    except RuntimeError as e:
        raise CheckpointError(f"{path}: weights do not fit the model its config describes ({str(e).splitlines()[0]})") from None
    model.eval()
    return model, vocab, config


def load_model(path: str | Path, map_location: str | torch.device = "cpu") -> tuple[CaptionModel, Vocabulary, Config]:
    """Load a trained captioner for inference: (model in eval mode on map_location, vocabulary, config)."""
    model, vocab, config = model_from_checkpoint(load_checkpoint(path, map_location), path)
    return model.to(map_location), vocab, config
