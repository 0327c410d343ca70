"""Scores: corpus BLEU (nltk) for any data, and grounding / hallucination / recall where objects are known."""

from __future__ import annotations

import warnings
from typing import Sequence

import torch
from nltk.translate.bleu_score import corpus_bleu

from .shapes import COLOURS, SHAPES, ShapeObject

BLEU_WEIGHTS = [(1.0,), (0.5, 0.5), (1 / 3, 1 / 3, 1 / 3), (0.25, 0.25, 0.25, 0.25)]


def bleu(hypotheses: Sequence[Sequence[str]], references: Sequence[Sequence[Sequence[str]]]) -> dict[str, float]:
    """Corpus BLEU-1..4 on a 0-1 scale; each hypothesis is scored against all of its image's references.

    Hypotheses are complete word lists: nothing is trimmed (a common bug drops their last real word).
    """
    if len(hypotheses) != len(references):
        raise ValueError(f"{len(hypotheses)} hypotheses but {len(references)} reference sets")
    with warnings.catch_warnings():  # nltk warns when a corpus has no matching n-gram; the score is then 0, as intended
        warnings.simplefilter("ignore", UserWarning)
        scores = corpus_bleu([list(map(list, r)) for r in references], [list(h) for h in hypotheses], weights=BLEU_WEIGHTS)
    return {f"bleu{n}": float(s) for n, s in enumerate(scores, start=1)}


def named_objects(words: Sequence[str]) -> list[tuple[int, str | None, str]]:
    """(position, colour, shape) of every shape word; the colour is the word just before it, if any."""
    found = []
    for i, word in enumerate(words):
        if word in SHAPES:
            colour = words[i - 1] if i > 0 and words[i - 1] in COLOURS else None
            found.append((i, colour, word))
    return found


def matching_object(colour: str | None, shape: str, objects: Sequence[ShapeObject]) -> ShapeObject | None:
    """The object a phrase names (colour and shape; shape alone when no colour was said), or None."""
    for obj in objects:
        if obj.shape == shape and colour in (None, obj.colour):
            return obj
    return None


def cell_boxes(grid_size: int, image_size: int) -> torch.Tensor:
    """Pixel rectangle (x0, y0, x1, y1) of each of the grid_size**2 attention cells, row-major: (P, 4)."""
    edges = torch.arange(grid_size + 1, dtype=torch.float64) * image_size / grid_size  # (G+1,)
    rows, cols = torch.meshgrid(torch.arange(grid_size), torch.arange(grid_size), indexing="ij")
    rows, cols = rows.reshape(-1), cols.reshape(-1)  # (P,)
    return torch.stack([edges[cols], edges[rows], edges[cols + 1], edges[rows + 1]], dim=1)  # (P, 4)


def cells_overlapping(box: tuple[int, int, int, int], cells: torch.Tensor) -> torch.Tensor:
    """Bool (P,): which cells share area with the box."""
    x0, y0, x1, y1 = box
    return (cells[:, 0] < x1) & (x0 < cells[:, 2]) & (cells[:, 1] < y1) & (y0 < cells[:, 3])


def cells_away(cell: int, covered: torch.Tensor, grid_size: int) -> int:
    """How many cells (king's moves on the grid) from cell to the nearest covered one: 0 on it, 1 beside it."""
    where = covered.nonzero().squeeze(1)  # (K,) covered cells, row-major
    if not len(where):
        raise ValueError(f"cells_away: no cell of the {grid_size}x{grid_size} grid is covered, so none is nearest")
    rows, cols = where // grid_size, where % grid_size  # (K,) each
    return int(torch.maximum((rows - cell // grid_size).abs(), (cols - cell % grid_size).abs()).min())


def object_scores(
    captions: Sequence[Sequence[str]],
    alphas: Sequence[torch.Tensor],
    objects: Sequence[Sequence[ShapeObject]],
    grid_size: int,
    image_size: int,
) -> dict[str, float]:
    """Grounding (+ its chance level), CHAIR-i hallucination and object recall over a set of captions.

    grounding: share of shape words naming an object in the image whose argmax-α cell overlaps that
    object's box; grounding_chance: the same for a uniformly random cell. hallucination (CHAIR-i,
    Rohrbach et al. 2018): share of named objects (colour + shape) absent from the image. recall:
    share of the image's objects that the caption names.
    """
    cells = cell_boxes(grid_size, image_size)
    grounded = chance = named = missing = mentioned = present = 0.0
    n_grounding = 0
    for words, alpha, objs in zip(captions, alphas, objects):
        found = set()
        for position, colour, shape in named_objects(words):
            named += 1
            obj = matching_object(colour, shape, objs)
            if obj is None:
                missing += 1
                continue
            found.add(obj)
            overlap = cells_overlapping(obj.box, cells)  # (P,)
            grounded += float(overlap[int(alpha[position].argmax())])
            chance += float(overlap.double().mean())
            n_grounding += 1
        mentioned += len(found)
        present += len(objs)
    return {
        "grounding": grounded / max(n_grounding, 1),
        "grounding_chance": chance / max(n_grounding, 1),
        "hallucination": missing / max(named, 1),
        "recall": mentioned / max(present, 1),
    }
