"""Where the splits come from: the built-in shapes world or a real data set on disk."""

from __future__ import annotations

from dataclasses import dataclass, field

import torch

from .config import Config
from .data import ImageRecord
from .shapes import ShapeObject, generate


@dataclass
class Split:
    """Images (an in-memory uint8 tensor or image files) with their reference captions."""

    name: str
    images: torch.Tensor | list[ImageRecord]
    captions: list[list[str]]
    objects: list[list[ShapeObject]] | None = field(default=None)  # known only in the shapes world

    def __len__(self) -> int:
        return len(self.captions)


def load_splits(cfg: Config) -> dict[str, Split]:
    """train/val/test splits for cfg.data: 'shapes', or a folder in the Flickr8k Kaggle layout."""
    if cfg.data == "shapes":
        world = generate(cfg.shapes)
        return {name: Split(name, s.images, s.captions, s.objects) for name, s in world.items()}
    from .flickr import load_flickr

    return load_flickr(cfg.data)
