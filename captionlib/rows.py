"""Caption rows as the format parsers yield them, the checks they pass, and the splits they make.

flickr.py (captions.txt, token files) and karpathy.py (dataset_*.json) only parse: they yield one
CaptionRow per caption, or a BadRow for a line they cannot parse. Everything else is checked here, the
same way for every format, and every skipped row goes into a LoadReport with its FILE:LINE. That includes the
rows of an image file that cannot be used (missing, unreadable, empty, not an image, truncated): each image is
decoded once, here, before training starts, and its rows are skipped with the file and the reason.
"""

from __future__ import annotations

import sys
from collections import Counter
from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path, PurePosixPath, PureWindowsPath

import torch

from .data import ImageRecord
from .images import EMPTY_IMAGE, MISSING_IMAGE, NOT_AN_IMAGE, OVERSIZED_IMAGE, UNDECODABLE_IMAGE, UNREADABLE_IMAGE, check_image
from .shapes import SPLITS as SPLIT_NAMES  # train, val, test: the splits of every data source
from .shapes import ShapeObject
from .vocab import tokenize

# Why a row was skipped: the first words of every report line after FILE:LINE.
MALFORMED, UNSAFE_PATH = "malformed", "unsafe path"
BLANK_CAPTION, DUPLICATE_CAPTION, DUPLICATE_IMAGE, NO_CAPTIONS = "blank caption", "duplicate caption", "duplicate image", "no captions"
# ...and those about the image file itself (from images.py), whose detail names the file: counted per file too.
IMAGE_FILE_REASONS = (MISSING_IMAGE, UNREADABLE_IMAGE, EMPTY_IMAGE, NOT_AN_IMAGE, UNDECODABLE_IMAGE, OVERSIZED_IMAGE)


@dataclass
class Split:
    """Images (an in-memory uint8 tensor or image files) with their reference captions."""

    name: str
    images: torch.Tensor | list[ImageRecord]
    captions: list[list[str]]
    objects: list[list[ShapeObject]] | None = field(default=None)  # known only in the shapes world

    def __len__(self) -> int:
        return len(self.captions)


@dataclass(frozen=True, slots=True)
class CaptionRow:
    """One caption as a file states it: where (FILE:LINE), the image's folder and name under the data root, the text."""

    where: str
    folder: str
    image: str
    caption: str

    @property
    def key(self) -> str:
        return image_key(self.folder, self.image)


@dataclass(frozen=True)
class BadRow:
    """A skipped row: where it is, why (one of the reasons above) and the specifics."""

    where: str
    reason: str
    detail: str

    def __str__(self) -> str:
        return f"{self.where}: {self.reason}: {self.detail}"


@dataclass
class LoadReport:
    """What a loader read, skipped and left unused; strict=True turns the first bad row into a ValueError."""

    source: Path
    format: str = ""
    strict: bool = False
    rows: int = 0  # caption rows (Karpathy: sentences) read, good or bad
    skipped: list[BadRow] = field(default_factory=list)
    unused: list[str] = field(default_factory=list)  # images with good captions that no split takes
    split_rule: str = ""  # how images were assigned to splits

    def skip(self, bad: BadRow) -> None:
        """Record a bad row, or raise it as a one-line ValueError in strict mode."""
        if self.strict:
            raise ValueError(str(bad))
        self.skipped.append(bad)

    def counts(self) -> Counter[str]:
        """Skipped rows per reason."""
        return Counter(bad.reason for bad in self.skipped)

    def files(self) -> Counter[str]:
        """Distinct image files per reason about the file (IMAGE_FILE_REASONS): the rows of one file share its detail."""
        return Counter(reason for reason, _ in {(bad.reason, bad.detail) for bad in self.skipped if bad.reason in IMAGE_FILE_REASONS})

    def summary(self, splits: dict[str, Split], examples: int = 5) -> str:
        """A few lines for stderr: what was read, the splits, skipped rows per reason with the first of each."""
        sizes = ", ".join(f"{name} {len(split)}" for name, split in splits.items())
        lines = [f"{self.source} ({self.format}): {self.rows} caption rows -> {sizes} images; {self.split_rule}"]
        if self.skipped:
            counts, files = self.counts(), self.files()
            per_file = {reason: f" ({plural(n, 'file')})" for reason, n in files.items()}  # 'undecodable image 5 (1 file)'
            reasons = ", ".join(f"{reason} {n}{per_file.get(reason, '')}" for reason, n in counts.items())
            lines.append(f"skipped {len(self.skipped)} rows: {reasons}; --strict makes the first an error; first of each:")
            firsts = {bad.reason: bad for bad in reversed(self.skipped)}  # the first row of each reason
            lines += [f"  {firsts[reason]}" for reason in counts]
        if self.unused:
            shown = ", ".join(self.unused[:examples]) + (", ..." if len(self.unused) > examples else "")
            lines.append(f"{len(self.unused)} images with captions are in no split and not used: {shown}")
        return "\n".join(lines)


def plural(n: int, noun: str) -> str:
    """'1 file', '3 files'."""
    return f"{n} {noun}{'' if n == 1 else 's'}"


def image_key(folder: str, image: str) -> str:
    """An image's path relative to the data root, as text: 'Images/x.jpg' or 'val2014/COCO_val2014_....jpg'."""
    return f"{folder}/{image}" if folder else image


def escapes_folder(name: str) -> bool:
    """True for a name that may point outside its folder: absolute, with a drive, or with a '..' part.

    Checked on the text alone, so data sets whose image files are symlinks still load.
    """
    path = PurePosixPath(name.replace("\\", "/"))
    return path.is_absolute() or bool(PureWindowsPath(name).drive) or ".." in path.parts


def find_image_root(caption_file: Path, folders: Iterable[str]) -> tuple[Path, str]:
    """(data root, image folder): the first of `folders` beside the caption file or one level up."""
    folders = [f for f in folders if f and not escapes_folder(f)]
    for root in (caption_file.parent, caption_file.parent.parent):
        for folder in folders:
            if (root / folder).is_dir():
                return root, folder
    raise ValueError(f"{caption_file}: no image folder ({', '.join(f + '/' for f in folders)}) beside it or one level up")


@dataclass
class CaptionTable:
    """Good captions per image key in file order; which images rows named; which were rejected (and reported) outright."""

    captions: dict[str, list[str]] = field(default_factory=dict)
    named: set[str] = field(default_factory=set)
    rejected: set[str] = field(default_factory=set)  # name escapes the folder, or the file is missing or unusable


def image_problem(folder: str, image: str, root: Path) -> tuple[str, str] | None:
    """(reason, detail) when an image cannot be used: its name points outside the data root, or the file is missing,
    unreadable, empty, not an image or does not decode (images.check_image: what training's open_image would say)."""
    if escapes_folder(folder):
        return UNSAFE_PATH, f"folder {folder!r} points outside {root}"
    if escapes_folder(image):
        return UNSAFE_PATH, f"{image!r} points outside {root / folder}"
    if not (root / folder / image).is_file():
        return MISSING_IMAGE, f"{root / folder / image} does not exist"
    error = check_image(root / folder / image)
    return (error.reason, str(error)) if error else None


def check_rows(rows: Iterable[CaptionRow | BadRow], root: Path, report: LoadReport) -> CaptionTable:
    """Keep the good rows; report malformed ones, unsafe names, missing or unusable image files, blank and duplicate captions."""
    table = CaptionTable()
    problems: dict[str, tuple[str, str] | None] = {}  # per image, judged once however many captions it has
    first_seen: dict[tuple[str, tuple[str, ...]], str] = {}  # (image, words) -> where they first appeared
    for row in rows:
        report.rows += 1
        if isinstance(row, BadRow):
            report.skip(row)
            continue
        undecodable = next((ch for ch in row.image + row.caption if "\udc80" <= ch <= "\udcff"), None)
        if undecodable:  # a malformed row: it names no image (and its text could not be printed)
            report.skip(BadRow(row.where, MALFORMED, f"not UTF-8 text (byte {ord(undecodable) - 0xDC00:#x})"))
            continue
        key = row.key
        table.named.add(key)
        if key not in problems:
            problems[key] = image_problem(row.folder, row.image, root)
        if problems[key]:
            table.rejected.add(key)
            report.skip(BadRow(row.where, *problems[key]))
            continue
        words = tuple(tokenize(row.caption))  # what the model would see: blank and duplicate are judged on these
        if not words:
            report.skip(BadRow(row.where, BLANK_CAPTION, f"no words in the caption of {key}"))
            continue
        if (key, words) in first_seen:
            report.skip(BadRow(row.where, DUPLICATE_CAPTION, f"same words as {first_seen[key, words]} for {key}"))
            continue
        first_seen[key, words] = row.where
        table.captions.setdefault(key, []).append(row.caption.strip())
    return table


def assemble(table: CaptionTable, root: Path, members: dict[str, list[tuple[str, str]]], report: LoadReport) -> dict[str, Split]:
    """Splits of ImageRecords from members {split: [(image key, where it was listed)]}; images left without captions are reported."""
    splits, placed = {}, {}
    for name, entries in members.items():
        records = []
        for key, where in entries:
            if key in table.rejected:
                continue  # its rows were reported already
            if key in placed:
                report.skip(BadRow(where, DUPLICATE_IMAGE, f"{key} is already in {placed[key]}"))
                continue
            captions = table.captions.get(key)
            if not captions:
                why = "every caption of it was skipped" if key in table.named else "no caption row names it"
                report.skip(BadRow(where, NO_CAPTIONS, f"{key}: {why}"))
                continue
            placed[key] = where
            records.append(ImageRecord(root / key, captions))
        splits[name] = Split(name, records, [r.captions for r in records])
    report.unused = sorted(set(table.captions) - set(placed))
    return splits


def reported(splits: dict[str, Split], report: LoadReport) -> dict[str, Split]:
    """The splits, after the report on stderr; an empty split is an error (training needs all three)."""
    summary = report.summary(splits)
    print("\n".join(f"captionlib: {line}" for line in summary.splitlines()), file=sys.stderr)
    for name in SPLIT_NAMES:
        if not splits.get(name):
            raise ValueError(f"{report.source}: the {name} split has no usable images ({report.split_rule})")
    return splits
