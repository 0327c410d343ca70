"""captionlib: Show, Attend and Tell (Xu et al., 2015) in small, readable PyTorch."""

from __future__ import annotations

import importlib

__version__ = "0.1.0"

# Public name -> the module that defines it. The modules are imported on first use (PEP 562), so that
# `import captionlib.config` or `captionlib --help` does not wait seconds for torch and torchvision.
_EXPORTS = {
    "SoftAttention": "attention",
    "Captioner": "captioner",
    "CheckpointError": "checkpoint",
    "load_checkpoint": "checkpoint",
    "load_model": "checkpoint",
    "save_checkpoint": "checkpoint",
    "Config": "config",
    "ModelConfig": "config",
    "ShapesConfig": "config",
    "TrainConfig": "config",
    "Decoder": "decoder",
    "Caption": "decoding",
    "beam_search": "decoding",
    "beam_search_one_image": "decoding",
    "decode": "decoding",
    "greedy_decode": "decoding",
    "Encoder": "encoder",
    "HardAttention": "hard_attention",
    "NoAttention": "no_attention",
    "WeightsNotFoundError": "encoder",
    "ImageLoadError": "images",
    "open_image": "images",
    "LossTerms": "loss",
    "caption_loss": "loss",
    "bleu": "metrics",
    "object_scores": "metrics",
    "CaptionModel": "model",
    "Vocabulary": "vocab",
    "tokenize": "vocab",
}

__all__ = sorted(_EXPORTS)


def __getattr__(name: str):
    """`captionlib.beam_search` and `from captionlib import beam_search`: import the defining module now."""
    if name not in _EXPORTS:
        raise AttributeError(f"module 'captionlib' has no attribute {name!r}")
    return getattr(importlib.import_module(f".{_EXPORTS[name]}", __name__), name)


def __dir__() -> list[str]:
    return sorted([*globals(), *_EXPORTS])
