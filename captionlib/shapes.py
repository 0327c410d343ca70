"""The shapes world: seeded synthetic images whose objects, boxes and captions are known."""

from __future__ import annotations

import csv
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

from .config import ShapesConfig

COLOURS = {
    "red": (220, 40, 40),
    "green": (40, 160, 60),
    "blue": (50, 80, 220),
    "yellow": (235, 200, 30),
    "purple": (150, 60, 190),
}
SHAPES = ("circle", "square", "triangle", "diamond")
SIZES = {"small": 0.09, "large": 0.17}  # half-extent as a fraction of the image side
COUNT_WORDS = {1: "one", 2: "two", 3: "three"}
SPLITS = ("train", "val", "test")  # every data source has these three (sources.SPLIT_NAMES)


@dataclass(frozen=True)
class ShapeObject:
    """One object: what it is and where it is (box in pixels, x1/y1 exclusive)."""

    shape: str
    colour: str
    size: str
    box: tuple[int, int, int, int]  # (x0, y0, x1, y1)

    @property
    def centre(self) -> tuple[float, float]:
        """(x, y) centre of the box in pixels."""
        x0, y0, x1, y1 = self.box
        return (x0 + x1) / 2, (y0 + y1) / 2

    def phrase(self) -> str:
        """Noun phrase without article, e.g. 'small red circle'."""
        return f"{self.size} {self.colour} {self.shape}"


@dataclass
class ShapesSplit:
    """One split of the shapes world held in memory."""

    name: str
    images: torch.Tensor  # (N, 3, H, W) uint8
    captions: list[list[str]]  # N lists of 5 captions
    objects: list[list[ShapeObject]]  # N lists of 1..3 objects, left to right

    def __len__(self) -> int:
        return len(self.captions)

    def image_name(self, index: int) -> str:
        """File name used when exporting to the Flickr8k layout."""
        return f"{self.name}_{index:05d}.png"


def relation(a: ShapeObject, b: ShapeObject) -> tuple[str, str]:
    """Spatial relation of a to b and its inverse, for a left of (or level with) b."""
    (ax, ay), (bx, by) = a.centre, b.centre
    if bx - ax >= abs(by - ay):
        return "to the left of", "to the right of"
    return ("above", "below") if ay < by else ("below", "above")


def relation_between(a: ShapeObject, b: ShapeObject) -> str:
    """The relation the captions state for a relative to b, in either order ("to the right of" if b is left of a)."""
    return relation(a, b)[0] if a.centre <= b.centre else relation(b, a)[1]  # objects are described in centre order


def placed(objects: list[ShapeObject], relation_first: bool) -> str:
    """Each object placed relative to the one named before it, in the order given.

    relation_first: "a A to the left of a B" (the relation word comes before the object it points to);
    otherwise "a A and a B to the right of it" (both objects are named before the relation word).
    """
    phrases = [f"a {o.phrase()}" for o in objects]
    if relation_first:
        return " ".join([phrases[0]] + [f"{relation_between(a, b)} {p}" for a, b, p in zip(objects, objects[1:], phrases[1:])])
    later = [f"{p} {relation_between(b, a)} it" for a, b, p in zip(objects, objects[1:], phrases[1:])]
    return ", ".join([phrases[0], *later[:-1]]) + f" and {later[-1]}" if later else phrases[0]


def describe(objects: list[ShapeObject], relation_first: bool = False, mark_leftwards: bool = True) -> list[str]:
    """Five differently worded captions for objects sorted left to right: two place them, three list them.

    mark_leftwards: the caption that names the objects right to left opens with "leftwards :", so every caption
    that starts "a <size>" names the leftmost object first (unmarked, a decoder cannot tell which end it starts at).
    """
    phrases = [o.phrase() for o in objects]
    listed = phrases[0] if len(phrases) == 1 else ", a ".join(phrases[:-1]) + f" and a {phrases[-1]}"
    n = len(objects)
    count = "a single shape" if n == 1 else f"{COUNT_WORDS[n]} shapes"
    leftwards = "leftwards : " if mark_leftwards else ""
    return [
        placed(objects, relation_first),  # left to right
        f"there is a {listed}",
        leftwards + placed(objects[::-1], relation_first) if n > 1 else f"a {phrases[0]} in the picture",  # right to left
        f"a picture of a {listed}",
        f"an image with {count} : a {listed}",
    ]


def _place(rng: np.random.Generator, size: int, n: int, attempts: int = 100) -> list[tuple[int, int, int]]:
    """Centres and half-extents of n non-overlapping objects (boxes at least 2 px apart)."""
    while True:
        placed: list[tuple[int, int, int]] = []
        for _ in range(attempts):
            r = int(round(SIZES[rng.choice(list(SIZES))] * size))
            cx, cy = (int(v) for v in rng.integers(r + 1, size - r - 1, size=2))
            if all(abs(cx - px) > r + pr + 2 or abs(cy - py) > r + pr + 2 for px, py, pr in placed):
                placed.append((cx, cy, r))
                if len(placed) == n:
                    return placed
        # rare: the canvas filled up badly; start this image again


def _mask(shape: str, cx: int, cy: int, r: int, yy: np.ndarray, xx: np.ndarray) -> np.ndarray:
    """Boolean mask of one shape centred at (cx, cy) with half-extent r."""
    dx, dy = xx - cx, yy - cy
    if shape == "circle":
        return dx**2 + dy**2 <= r * (r + 1)  # r(r+1) rounds the rim without pixel nubs
    if shape == "square":
        return (np.abs(dx) <= r) & (np.abs(dy) <= r)
    if shape == "diamond":
        return np.abs(dx) + np.abs(dy) <= r
    # triangle pointing up: apex at (cx, cy - r), base from (cx - r, cy + r) to (cx + r, cy + r)
    return (dy <= r) & (2 * np.abs(dx) <= dy + r)


def render(objects: list[tuple[ShapeObject, tuple[int, int, int]]], size: int, rng: np.random.Generator) -> np.ndarray:
    """Draw objects on a lightly noisy grey background -> (3, size, size) uint8."""
    background = rng.integers(190, 240)
    canvas = np.full((size, size, 3), background, dtype=np.int16)
    canvas += rng.integers(-12, 13, size=(size, size, 1), dtype=np.int16)
    yy, xx = np.mgrid[0:size, 0:size]
    for obj, (cx, cy, r) in objects:
        canvas[_mask(obj.shape, cx, cy, r, yy, xx)] = COLOURS[obj.colour]
    return np.clip(canvas, 0, 255).astype(np.uint8).transpose(2, 0, 1)


def generate_split(name: str, n: int, cfg: ShapesConfig) -> ShapesSplit:
    """Generate one split; the same (seed, split name) always gives the same images."""
    rng = np.random.default_rng([cfg.seed, SPLITS.index(name)])
    size = cfg.image_size
    images = np.empty((n, 3, size, size), dtype=np.uint8)
    captions, all_objects = [], []
    kinds = [(c, s) for c in COLOURS for s in SHAPES]
    for i in range(n):
        count = int(rng.integers(cfg.min_objects, cfg.max_objects + 1))
        picks = rng.choice(len(kinds), size=count, replace=False)  # distinct (colour, shape) pairs
        placed = _place(rng, size, count)
        drawn = []
        for (cx, cy, r), k in zip(placed, picks):
            colour, shape = kinds[k]
            size_word = min(SIZES, key=lambda w: abs(SIZES[w] * size - r))
            box = (cx - r, cy - r, cx + r + 1, cy + r + 1)
            drawn.append((ShapeObject(shape, colour, size_word, box), (cx, cy, r)))
        drawn.sort(key=lambda d: d[0].centre)
        images[i] = render(drawn, size, rng)
        objects = [o for o, _ in drawn]
        all_objects.append(objects)
        texts = describe(objects, cfg.relation_first, cfg.mark_leftwards)
        rng.shuffle(texts)  # no caption position carries meaning
        captions.append(texts)
    return ShapesSplit(name, torch.from_numpy(images), captions, all_objects)


def generate(cfg: ShapesConfig | None = None) -> dict[str, ShapesSplit]:
    """All three splits of the shapes world described by cfg."""
    cfg = cfg or ShapesConfig()
    sizes = {"train": cfg.n_train, "val": cfg.n_val, "test": cfg.n_test}
    return {name: generate_split(name, sizes[name], cfg) for name in SPLITS}


def export_flickr8k(world: dict[str, ShapesSplit], out_dir: str | Path) -> Path:
    """Write the Flickr8k Kaggle layout (Images/ + captions.txt) plus the official split lists."""
    from PIL import Image

    from .layouts import SPLIT_LISTS  # the official list names, which read_flickr looks for

    out = Path(out_dir)
    (out / "Images").mkdir(parents=True, exist_ok=True)
    rows = []
    for name, split in world.items():
        names = [split.image_name(i) for i in range(len(split))]
        for i, file_name in enumerate(names):
            Image.fromarray(split.images[i].permute(1, 2, 0).numpy()).save(out / "Images" / file_name)
            rows.extend((file_name, c) for c in split.captions[i])
        (out / SPLIT_LISTS[name]).write_text("".join(f"{n}\n" for n in names))
    with open(out / "captions.txt", "w", newline="", encoding="utf-8") as f:
        writer = csv.writer(f, lineterminator="\n")
        writer.writerow(["image", "caption"])
        writer.writerows(rows)
    return out
