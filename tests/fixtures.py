"""Tiny data sets in the exact on-disk formats people download: Flickr8k (Kaggle and original), Flickr30k, Karpathy JSON."""

from __future__ import annotations

import functools
import hashlib
import io
import json
from collections.abc import Iterable
from pathlib import Path

import numpy as np
import pytest
from PIL import Image, ImageDraw

FLICKR_CAPTIONS = [
    "A child in a pink dress is climbing up a set of stairs in an entry way .",
    "A black dog and a spotted dog are fighting",
    "A little girl covered in paint sits in front of a painted rainbow with her hands in a bowl .",
    "A man lays on a bench while his dog sits by him .",
    "Two dogs of different breeds looking at each other on the road .",
    "A girl in a pink shirt, jeans and sneakers is jumping on a trampoline .",  # a comma, unquoted in Kaggle's file
    "A brown dog is running through the grass .",
    "A surfer rides a large wave , while others watch from the beach .",
    "Two young guys with shaggy hair look at their hands while hanging out in the yard .",
    "A man in an orange hat starring at something .",
    'A boy shouts "look" as he jumps into the lake .',
]
SPLIT_LIST_NAMES = {"train": "Flickr_8k.trainImages.txt", "val": "Flickr_8k.devImages.txt", "test": "Flickr_8k.testImages.txt"}


def flickr_name(i: int, suffix: str = ".jpg") -> str:
    """A name shaped like Flickr8k's '1000268201_693b08cb0e.jpg'."""
    return f"{1000268201 + 7919 * i}_{hashlib.sha1(str(i).encode()).hexdigest()[:10]}{suffix}"


def write_image(path: Path, i: int) -> Path:
    """A small real photo-like file (JPEG or PNG by suffix): a gradient sky with a coloured blob."""
    path.parent.mkdir(parents=True, exist_ok=True)
    image = Image.new("RGB", (48, 40), (40 + 17 * i % 200, 120, 200))
    ImageDraw.Draw(image).ellipse((4 + i % 20, 10, 24 + i % 20, 34), fill=(200, 60 + 23 * i % 180, 30))
    image.save(path)
    return path


def captions_for(names: list[str], per_image: int = 3) -> dict[str, list[str]]:
    """Three different Flickr-style captions per image."""
    n = len(FLICKR_CAPTIONS)
    return {name: [FLICKR_CAPTIONS[(i + k) % n] for k in range(per_image)] for i, name in enumerate(names)}


def write_split_lists(folder: Path, names: list[str], n_val: int = 2, n_test: int = 2) -> dict[str, list[str]]:
    """Flickr_8k.{train,dev,test}Images.txt: the last n_val + n_test names are held out."""
    n_train = len(names) - n_val - n_test
    splits = {"train": names[:n_train], "val": names[n_train : n_train + n_val], "test": names[n_train + n_val :]}
    folder.mkdir(parents=True, exist_ok=True)
    for split, file_name in SPLIT_LIST_NAMES.items():
        (folder / file_name).write_text("".join(f"{name}\n" for name in splits[split]))
    return splits


def write_kaggle(root: Path, n: int = 10, lists: bool = True) -> dict[str, list[str]]:
    """Kaggle's Flickr8k: Images/ + captions.txt (header 'image,caption', commas unquoted), split lists beside."""
    names = [flickr_name(i, ".png" if i % 3 == 0 else ".jpg") for i in range(n)]
    for i, name in enumerate(names):
        write_image(root / "Images" / name, i)
    captions = captions_for(names)
    lines = ["image,caption"] + [f"{name},{c}" for name, caps in captions.items() for c in caps]
    (root / "captions.txt").write_text("\n".join(lines) + "\n", encoding="utf-8")
    if lists:
        write_split_lists(root, names)
    return captions


PHOTOS = ("astronaut", "coffee", "chelsea", "rocket")  # scikit-image's CC0 photographs
BAD_IMAGE_KINDS = ("truncated", "empty", "text", "unreadable")


@functools.lru_cache(maxsize=None)
def photo_array(name: str) -> np.ndarray:
    """One of scikit-image's photographs as (H, W, 3) uint8; the test is skipped where scikit-image is not installed."""
    return getattr(pytest.importorskip("skimage.data"), name)()


def photo(i: int, size: tuple[int, int] | None = (80, 60)) -> Image.Image:
    """A real photograph, cropped differently for each i and shrunk to `size` (None: the crop's own size)."""
    array = photo_array(PHOTOS[i % len(PHOTOS)])  # (H, W, 3)
    height, width = array.shape[:2]
    top, left = (7 * i) % (height // 4), (11 * i) % (width // 4)
    image = Image.fromarray(array[top : top + 3 * height // 4, left : left + 3 * width // 4])
    return image.resize(size) if size else image


def write_bad_image(path: Path, kind: str) -> Path:
    """A file named like an image that cannot be used as one: one of BAD_IMAGE_KINDS."""
    path.parent.mkdir(parents=True, exist_ok=True)
    if kind == "truncated":  # a whole photograph, cut off halfway through its compressed data
        whole = io.BytesIO()
        photo(2, size=None).save(whole, "JPEG", quality=90)
        path.write_bytes(whole.getvalue()[: len(whole.getvalue()) // 2])
    elif kind == "empty":
        path.write_bytes(b"")
    elif kind == "text":
        path.write_text("image,caption\nthis file is a caption list saved under an image's name\n")
    elif kind == "unreadable":  # a good photograph nobody may read (root still can)
        photo(3).save(path, "JPEG")
        path.chmod(0)
    else:
        raise ValueError(f"unknown kind of bad image {kind!r}; expected one of {', '.join(BAD_IMAGE_KINDS)}")
    return path


def write_kaggle_photos(root: Path, n: int = 20, bad: Iterable[str] = ()) -> tuple[dict[str, list[str]], dict[str, str]]:
    """Kaggle's Flickr8k layout (Images/ + captions.txt, no split lists: a seeded split) of n real photographs, then one
    bad file of each kind in `bad`, each with three captions. Returns the good images' captions and {kind: file name}."""
    names = [flickr_name(i) for i in range(n)]
    (root / "Images").mkdir(parents=True, exist_ok=True)
    for i, name in enumerate(names):
        photo(i).save(root / "Images" / name, "JPEG", quality=90)
    bad_names = {kind: flickr_name(n + k) for k, kind in enumerate(bad)}
    for kind, name in bad_names.items():
        write_bad_image(root / "Images" / name, kind)
    captions = captions_for(names + list(bad_names.values()))
    lines = ["image,caption"] + [f"{name},{c}" for name, caps in captions.items() for c in caps]
    (root / "captions.txt").write_text("\n".join(lines) + "\n", encoding="utf-8")
    return {name: captions[name] for name in names}, bad_names


def write_token(root: Path, n: int = 10, flickr30k: bool = False) -> dict[str, list[str]]:
    """The original Flickr8k (Flickr8k_text/Flickr8k.token.txt, Flicker8k_Dataset/, split lists) or Flickr30k's token file."""
    names = [f"{1000092795 + 31 * i}.jpg" if flickr30k else flickr_name(i) for i in range(n)]
    image_dir = root / ("flickr30k-images" if flickr30k else "Flicker8k_Dataset")
    for i, name in enumerate(names):
        write_image(image_dir / name, i)
    captions = captions_for(names)
    token_file = root / "results_20130124.token" if flickr30k else root / "Flickr8k_text" / "Flickr8k.token.txt"
    token_file.parent.mkdir(parents=True, exist_ok=True)
    token_file.write_text("".join(f"{name}#{k}\t{c}\n" for name, caps in captions.items() for k, c in enumerate(caps)))
    if not flickr30k:
        write_split_lists(token_file.parent, names)
    return captions


def write_flickr30k_csv(root: Path, n: int = 10) -> dict[str, list[str]]:
    """Flickr30k as Kaggle ships it: flickr30k_images/results.csv ('image_name| comment_number| comment', pipes
    padded with spaces) beside the image folder flickr30k_images/flickr30k_images/."""
    names = [f"{1000092795 + 31 * i}.jpg" for i in range(n)]
    folder = root / "flickr30k_images"
    for i, name in enumerate(names):
        write_image(folder / "flickr30k_images" / name, i)
    captions = captions_for(names)
    lines = ["image_name| comment_number| comment"]
    lines += [f"{name}| {k}| {c}" for name, caps in captions.items() for k, c in enumerate(caps)]
    (folder / "results.csv").write_text("\n".join(lines) + "\n", encoding="utf-8")
    return captions


def karpathy_entries(names: list[str], splits: list[str], filepaths: list[str] | None = None) -> list[dict]:
    """Entries shaped like Karpathy's: filename, split, sentences with raw and tokens (and COCO's filepath)."""
    captions = captions_for(names)
    entries = []
    for i, (name, split) in enumerate(zip(names, splits)):
        sentences = [{"raw": c, "tokens": c.lower().replace(",", "").split()[:-1], "imgid": i} for c in captions[name]]
        entry = {"filename": name, "imgid": i, "split": split, "sentences": sentences, "sentids": list(range(3 * i, 3 * i + 3))}
        if filepaths:
            entry["filepath"] = filepaths[i]
        entries.append(entry)
    return entries


def write_karpathy(root: Path, entries: list[dict], name: str = "dataset_flickr8k.json") -> Path:
    """dataset_*.json beside the images; Flickr entries' images go in Images/, COCO's in their filepath folder."""
    for i, entry in enumerate(entries):
        folder = entry.get("filepath", "Images")
        if isinstance(entry.get("filename"), str) and ".." not in folder + entry["filename"]:
            write_image(root / folder / entry["filename"], i)
    path = root / name
    path.write_text(json.dumps({"images": entries, "dataset": name[len("dataset_") : -len(".json")]}))
    return path


def append_lines(path: Path, *lines: str) -> int:
    """Append raw lines to a caption file; returns the line number of the first one."""
    first = len(path.read_text(encoding="utf-8").splitlines()) + 1
    with open(path, "a", encoding="utf-8") as f:
        f.write("".join(f"{line}\n" for line in lines))
    return first
