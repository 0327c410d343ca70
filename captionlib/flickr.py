"""Flickr8k and Flickr30k caption files: Kaggle's captions.txt and results.csv, and the original NAME#N<TAB>caption token files.

Splits come from the official Flickr8k lists (Flickr_8k.{train,dev,test}Images.txt) when they sit beside the
caption file, in the data folder or in Flickr8k_text/. Otherwise (Kaggle's download, Flickr30k) the split is
seeded: the n images named by a well-formed row of the caption file are ordered by sha256("0:" + image name); the first
min(1000, n // 8) (at least 1) go to val, as many more to test, the rest to train. The same names always give the same
split, on any machine, in any language, even when some of their captions or image files turn out to be bad.
"""

from __future__ import annotations

import csv
import hashlib
from collections.abc import Iterable, Iterator
from pathlib import Path

from .layouts import IMAGE_DIRS, SPLIT_LISTS, TEXT, TEXT_DIRS, find_caption_file
from .rows import (
    MALFORMED,
    BadRow,
    CaptionRow,
    LoadReport,
    Split,
    assemble,
    check_rows,
    find_image_root,
    image_key,
    reported,
)

RESULTS_CSV_HEADER = ["image_name", "comment_number", "comment"]
SPLIT_SEED = 0
HELD_OUT = 1000  # val and test images of a seeded split: the size of the official Flickr8k lists


def kaggle_rows(path: Path, folder: str) -> Iterator[CaptionRow | BadRow]:
    """captions.txt: the header 'image,caption', then IMAGE,CAPTION lines; commas in captions may be quoted or not."""
    with open(path, newline="", **TEXT) as f:
        header = f.readline().strip()
        if header != "image,caption":
            raise ValueError(f"{path}:1: expected the header 'image,caption', got {header!r}")
        for number, line in enumerate(f, start=2):
            if not line.strip():
                continue  # a blank line holds no caption to lose
            where = f"{path}:{number}"
            fields = next(csv.reader([line.rstrip("\r\n")]))
            if len(fields) < 2 or not fields[0].strip():
                yield BadRow(where, MALFORMED, f"expected IMAGE,CAPTION, got {line.strip()!r}")
                continue
            yield CaptionRow(where, folder, fields[0].strip(), ",".join(fields[1:]))  # unquoted commas split the caption


def token_rows(path: Path, folder: str) -> Iterator[CaptionRow | BadRow]:
    """Flickr8k.token.txt or Flickr30k's results_20130124.token: 'NAME#N<TAB>caption' lines."""
    with open(path, **TEXT) as f:
        for number, line in enumerate(f, start=1):
            if not line.strip():
                continue
            where = f"{path}:{number}"
            name_n, tab, caption = line.rstrip("\r\n").partition("\t")
            name, hash_sign, n = name_n.rpartition("#")
            if not tab:
                yield BadRow(where, MALFORMED, f"no tab between NAME#N and the caption in {line.strip()!r}")
            elif not (hash_sign and n.isdigit() and name.strip()):
                yield BadRow(where, MALFORMED, f"expected NAME#N before the tab, got {name_n!r}")
            else:
                yield CaptionRow(where, folder, name.strip(), caption)


def results_csv_rows(path: Path, folder: str) -> Iterator[CaptionRow | BadRow]:
    """Flickr30k's Kaggle results.csv: the header 'image_name| comment_number| comment', then 'NAME| N| caption' lines."""
    with open(path, **TEXT) as f:
        header = f.readline()
        if [field.strip() for field in header.split("|")] != RESULTS_CSV_HEADER:
            raise ValueError(f"{path}:1: expected the header 'image_name| comment_number| comment', got {header.strip()!r}")
        for number, line in enumerate(f, start=2):
            if not line.strip():
                continue
            where = f"{path}:{number}"
            fields = line.rstrip("\r\n").split("|", 2)  # a caption may itself hold a '|'
            if len(fields) != 3 or not fields[0].strip() or not fields[1].strip().isdigit():
                yield BadRow(where, MALFORMED, f"expected NAME| N| CAPTION, got {line.strip()!r}")
                continue
            yield CaptionRow(where, folder, fields[0].strip(), fields[2])


ROW_READERS = {"kaggle": kaggle_rows, "token": token_rows, "results_csv": results_csv_rows}


def find_split_lists(dirs: Iterable[Path]) -> dict[str, Path] | None:
    """The official split lists from the first folder that has them, or None; a partial set is an error."""
    for folder in dict.fromkeys(dirs):  # unique, in order
        paths = {split: folder / name for split, name in SPLIT_LISTS.items()}
        present = [p.name for p in paths.values() if p.is_file()]
        if len(present) == len(paths):
            return paths
        if present:
            raise ValueError(f"{folder}: has {', '.join(present)} but not all of {', '.join(SPLIT_LISTS.values())}")
    return None


def listed_members(lists: dict[str, Path], folder: str) -> dict[str, list[tuple[str, str]]]:
    """{split: [(image key, FILE:LINE)]} from split lists holding one image name per line."""
    members = {}
    for split, path in lists.items():
        lines = path.read_text(**TEXT).splitlines()
        members[split] = [(image_key(folder, name.strip()), f"{path}:{n}") for n, name in enumerate(lines, start=1) if name.strip()]
    return members


def seeded_members(keys: Iterable[str], seed: int = SPLIT_SEED, held_out: int = HELD_OUT) -> dict[str, list[tuple[str, str]]]:
    """{split: [(image key, where)]}: val and test get min(held_out, n // 8) images each by hashed name, train the rest."""
    order = sorted(keys, key=lambda key: hashlib.sha256(f"{seed}:{key.rsplit('/', 1)[-1]}".encode()).hexdigest())  # name only
    n = min(held_out, max(1, len(order) // 8))
    parts = {"train": order[2 * n :], "val": order[:n], "test": order[n : 2 * n]}
    return {split: [(key, f"seeded {split} split") for key in sorted(part)] for split, part in parts.items()}


def read_flickr(caption_file: Path, format: str, report: LoadReport) -> dict[str, Split]:
    """Captions from captions.txt ('kaggle'), results.csv ('results_csv') or a token file ('token'), images from the
    folder beside it, then the splits."""
    root, folder = find_image_root(caption_file, IMAGE_DIRS)
    rows = ROW_READERS[format](caption_file, folder)
    table = check_rows(rows, root, report)
    lists = find_split_lists([caption_file.parent, *(root / d for d in TEXT_DIRS)])
    if lists:
        members = listed_members(lists, folder)
        report.split_rule = f"official split lists in {lists['train'].parent}"
    else:
        # Every image the caption file names takes part, even one skipped for a bad row or a missing file, so
        # that fixing or losing a file does not move the others across the split boundaries (train into test).
        members = seeded_members(table.named)
        n_held = len(members["val"])
        report.split_rule = f"no split lists, so seeded by image name: {n_held} val, {n_held} test, the rest train"
    return assemble(table, root, members, report)


def load_flickr(root: str | Path, strict: bool = False) -> dict[str, Split]:
    """Splits of a Flickr8k/Flickr30k folder (a Kaggle layout or a token file), with the report on stderr."""
    caption_file, format = find_caption_file(Path(root))
    if format not in ROW_READERS:
        raise ValueError(f"{caption_file}: not a Flickr caption file ({format}); captionlib.sources.load_dataset reads every format")
    report = LoadReport(caption_file, format, strict)
    return reported(read_flickr(caption_file, format, report), report)
