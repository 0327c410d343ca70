"""Real photo data sets on disk (Flickr8k Kaggle layout)."""

from __future__ import annotations

import csv
from pathlib import Path

from .data import ImageRecord
from .sources import Split

SPLIT_LISTS = {"train": "Flickr_8k.trainImages.txt", "val": "Flickr_8k.devImages.txt", "test": "Flickr_8k.testImages.txt"}


def read_kaggle_captions(path: Path) -> dict[str, list[str]]:
    """captions.txt with header 'image,caption' -> {image name: [captions]} in file order."""
    captions: dict[str, list[str]] = {}
    with open(path, newline="", encoding="utf-8") as f:
        rows = csv.reader(f)
        header = next(rows, None)
        if header != ["image", "caption"]:
            raise ValueError(f"{path}:1: expected header 'image,caption', got {header!r}")
        for row in rows:
            name, caption = row[0], ",".join(row[1:])
            captions.setdefault(name, []).append(caption)
    return captions


def load_flickr(root: str | Path) -> dict[str, Split]:
    """Read Images/ + captions.txt and the Flickr_8k.*Images.txt split lists beside them."""
    root = Path(root)
    captions = read_kaggle_captions(root / "captions.txt")
    splits = {}
    for name, list_file in SPLIT_LISTS.items():
        names = (root / list_file).read_text().split()
        records = [ImageRecord(root / "Images" / n, captions[n]) for n in names]
        splits[name] = Split(name, records, [r.captions for r in records])
    return splits
