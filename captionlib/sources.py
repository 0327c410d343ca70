"""Where the splits come from: the built-in shapes world, or a real data set on disk checked row by row and image by image.

layouts.py finds a folder's caption file and tells its format, flickr.py (captions.txt, results.csv, token
files) or karpathy.py (dataset_*.json) parses it, and rows.py checks every row the same way and makes the splits.
"""

from __future__ import annotations

from pathlib import Path

from .config import Config
from .flickr import ROW_READERS, read_flickr
from .karpathy import read_karpathy
from .layouts import CAPTION_FILES, find_caption_file

# Importable from here as before: Split, the reasons a row is skipped (tests), the split names (shapes.SPLITS).
from .rows import (  # noqa: F401
    BLANK_CAPTION,
    DUPLICATE_CAPTION,
    DUPLICATE_IMAGE,
    EMPTY_IMAGE,
    MALFORMED,
    MISSING_IMAGE,
    NO_CAPTIONS,
    NOT_AN_IMAGE,
    OVERSIZED_IMAGE,
    SPLIT_NAMES,
    UNDECODABLE_IMAGE,
    UNREADABLE_IMAGE,
    UNSAFE_PATH,
    LoadReport,
    Split,
    reported,
)
from .shapes import generate


def read_dataset(path: str | Path, format: str | None = None, strict: bool = False, restval_to_train: bool = True) -> tuple[dict[str, Split], LoadReport]:
    """Splits and the report of a data folder or caption file; the format (see CAPTION_FILES) is detected if None."""
    caption_file, format = find_caption_file(Path(path), format)
    report = LoadReport(caption_file, format, strict)
    if format == "karpathy":
        return read_karpathy(caption_file, report, restval_to_train), report
    if format in ROW_READERS:
        return read_flickr(caption_file, format, report), report
    raise ValueError(f"{path}: unknown data format {format!r}; expected one of {', '.join(dict.fromkeys(CAPTION_FILES.values()))}")


def load_dataset(path: str | Path, format: str | None = None, strict: bool = False, restval_to_train: bool = True) -> dict[str, Split]:
    """read_dataset, then the report on stderr; an empty split is an error (training needs all three)."""
    return reported(*read_dataset(path, format, strict, restval_to_train))


def load_splits(cfg: Config, strict: bool = False, restval_to_train: bool = True) -> dict[str, Split]:
    """train/val/test splits for cfg.data: 'shapes', or a data folder / caption file in a supported format."""
    if cfg.data == "shapes":
        world = generate(cfg.shapes)
        return {name: Split(name, s.images, s.captions, s.objects) for name, s in world.items()}
    return load_dataset(cfg.data, strict=strict, restval_to_train=restval_to_train)
