"""Karpathy's split files (dataset_flickr8k.json, dataset_flickr30k.json, dataset_coco.json): most papers' splits.

Each file is {"images": [{"filename", "split", "sentences": [{"raw", "tokens"}, ...]}, ...]}, and COCO's entries
also name their "filepath" (train2014/ or val2014/). COCO's "restval" images (val2014 outside the 5000 val and
test images) go into train, as in Karpathy's and most later work; restval_to_train=False leaves them unused.
"""

from __future__ import annotations

import codecs
import json
from collections.abc import Iterator
from pathlib import Path

from .layouts import IMAGE_DIRS
from .rows import (
    MALFORMED,
    SPLIT_NAMES,
    BadRow,
    CaptionRow,
    LoadReport,
    Split,
    assemble,
    check_rows,
    find_image_root,
    image_key,
)

KARPATHY_SPLITS = ("train", "val", "test", "restval")


def read_entries(path: Path) -> list:
    """The file's list of image entries."""
    raw = path.read_bytes()
    body = raw.removeprefix(codecs.BOM_UTF8)  # Windows editors write one
    try:
        data = json.loads(body.decode("utf-8"))
    except UnicodeDecodeError as e:
        offset = e.start + len(raw) - len(body)  # in the file, BOM included
        raise ValueError(f"{path}: not UTF-8 text (byte {e.object[e.start]:#x} at offset {offset})") from None
    except json.JSONDecodeError as e:
        raise ValueError(f"{path}:{e.lineno}: not valid JSON ({e.msg}, column {e.colno})") from None
    images = data.get("images") if isinstance(data, dict) else None
    if not isinstance(images, list):
        raise ValueError(f"{path}: expected a JSON object with an 'images' list (Karpathy's dataset_*.json)")  # noqa: TRY004 -- a data error, reported like the others
    return images


def entry_problem(entry) -> str | None:
    """Why an entry cannot be used, or None."""
    if not isinstance(entry, dict):
        return "not a JSON object"
    for key, kind in (("filename", str), ("split", str), ("sentences", list)):
        if key not in entry:
            return f"missing key {key!r}"
        if not isinstance(entry[key], kind):
            return f"{key!r} is not a {kind.__name__}"
    if not isinstance(entry.get("filepath", ""), str):  # only COCO has it
        return "'filepath' is not a str"
    if not entry["filename"].strip():
        return "empty 'filename'"
    if entry["split"] not in KARPATHY_SPLITS:
        return f"unknown split {entry['split']!r}, expected one of {', '.join(KARPATHY_SPLITS)}"
    return None


def where_is(path: Path, index: int, entry) -> str:
    """'FILE: entry INDEX (FILENAME)', the JSON stand-in for FILE:LINE."""
    name = entry.get("filename") if isinstance(entry, dict) else None
    return f"{path}: entry {index} ({name if isinstance(name, str) else '?'})"


def karpathy_rows(path: Path, entries: list, default_folder: str) -> Iterator[CaptionRow | BadRow]:
    """One row per sentence; an unusable entry is one malformed row."""
    for index, entry in enumerate(entries):
        where = where_is(path, index, entry)
        problem = entry_problem(entry)
        if problem:
            yield BadRow(where, MALFORMED, problem)
            continue
        folder = entry.get("filepath", default_folder)
        for j, sentence in enumerate(entry["sentences"]):
            if isinstance(sentence, dict) and isinstance(sentence.get("raw"), str):
                yield CaptionRow(f"{where} sentence {j}", folder, entry["filename"], sentence["raw"])
            else:
                yield BadRow(f"{where} sentence {j}", MALFORMED, "expected an object with a 'raw' string")


def karpathy_members(path: Path, entries: list, default_folder: str, restval_to_train: bool) -> dict[str, list[tuple[str, str]]]:
    """{split: [(image key, where)]} from each usable entry's "split"."""
    members: dict[str, list[tuple[str, str]]] = {name: [] for name in SPLIT_NAMES}
    for index, entry in enumerate(entries):
        if entry_problem(entry):
            continue  # reported by karpathy_rows
        split = "train" if entry["split"] == "restval" and restval_to_train else entry["split"]
        if split in members:
            members[split].append((image_key(entry.get("filepath", default_folder), entry["filename"]), where_is(path, index, entry)))
    return members


def read_karpathy(path: Path, report: LoadReport, restval_to_train: bool = True) -> dict[str, Split]:
    """Splits of a Karpathy JSON file; images under its "filepath" folders (COCO) or a Flickr image folder beside it."""
    entries = read_entries(path)
    filepaths = {e["filepath"] for e in entries if isinstance(e, dict) and isinstance(e.get("filepath"), str)}
    root, folder = find_image_root(path, sorted(filepaths) or IMAGE_DIRS)
    default_folder = "" if filepaths else folder  # COCO entries name their own folder
    table = check_rows(karpathy_rows(path, entries, default_folder), root, report)
    report.split_rule = "Karpathy's splits" + (", restval in train" if restval_to_train else ", restval unused")
    return assemble(table, root, karpathy_members(path, entries, default_folder, restval_to_train), report)
