"""How caption data sets lie on disk: caption files and their formats, image folders, split lists.

Names, and the two functions that find a folder's caption file and tell its format. Nothing here imports
captionlib, so any module may: shapes.py writes the Flickr8k layout, flickr.py and karpathy.py read it.
"""

from __future__ import annotations

from pathlib import Path

# Caption files a data folder may hold (glob pattern -> format), looked for in the folder and in Flickr8k_text/.
CAPTION_FILES = {
    "captions.txt": "kaggle",
    "results.csv": "results_csv",
    "Flickr8k.token.txt": "token",
    "results_20130124.token": "token",
    "dataset_*.json": "karpathy",
}
TEXT_DIRS = (".", "Flickr8k_text")

# How caption files are opened: a BOM is dropped, and a byte that is not UTF-8 becomes a lone surrogate
# (U+DC80..U+DCFF) that check_rows reports with its FILE:LINE, instead of one bad byte failing the whole file.
TEXT = {"encoding": "utf-8-sig", "errors": "surrogateescape"}

# Kaggle, the original Flickr8k zip (sic), Flickr30k's original tarball, Flickr30k on Kaggle (results.csv beside it)
IMAGE_DIRS = ("Images", "Flicker8k_Dataset", "flickr30k-images", "flickr30k_images")
# The official Flickr8k split lists, which flickr.py reads when they lie beside the caption file
SPLIT_LISTS = {"train": "Flickr_8k.trainImages.txt", "val": "Flickr_8k.devImages.txt", "test": "Flickr_8k.testImages.txt"}


def find_caption_file(path: Path, format: str | None = None) -> tuple[Path, str]:
    """The caption file and its format: `path` itself if it is a file, else the one caption file the folder holds."""
    if path.is_file():
        return path, format or sniff_format(path)
    if not path.is_dir():
        raise FileNotFoundError(f"{path}: no such data folder or caption file")
    found = [
        (file, kind)
        for sub in TEXT_DIRS
        for pattern, kind in CAPTION_FILES.items()
        for file in sorted((path / sub).glob(pattern))
        if format in (None, kind)
    ]
    if not found:
        raise ValueError(f"{path}: no caption file ({', '.join(CAPTION_FILES)}) in it or in Flickr8k_text/")
    if len(found) > 1:
        names = ", ".join(str(file.relative_to(path)) for file, _ in found)
        raise ValueError(f"{path}: several caption files ({names}); give the one to use instead of the folder")
    return found[0]


def sniff_format(path: Path) -> str:
    """'karpathy' for JSON, 'token' when the first line has a tab, 'results_csv' when it has a '|', else 'kaggle'.

    The chosen reader then checks the header, if its format has one.
    """
    if path.suffix == ".json":
        return "karpathy"
    with open(path, **TEXT) as f:
        first = f.readline()
    return "token" if "\t" in first else "results_csv" if "|" in first else "kaggle"
