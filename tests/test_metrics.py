"""Object metrics on hand-made grids: which cells a box covers, how far a peak lies from it, grounding and CHAIR."""

from __future__ import annotations

import pytest
import torch

from captionlib.metrics import cell_boxes, cells_away, cells_overlapping, object_scores
from captionlib.shapes import ShapeObject

G, S = 8, 64  # an 8 x 8 grid of 8-pixel cells
SQUARE = ShapeObject("square", "red", "small", (16, 16, 24, 32))  # cells (2, 2) and (3, 2): x 16-23, y 16-31


def test_a_box_covers_the_cells_it_shares_area_with():
    covered = cells_overlapping(SQUARE.box, cell_boxes(G, S))  # (P,)
    assert covered.nonzero().flatten().tolist() == [2 * G + 2, 3 * G + 2]  # touching an edge is not sharing area


@pytest.mark.parametrize(("cell", "away"), [((2, 2), 0), ((3, 2), 0), ((4, 3), 1), ((1, 1), 1), ((3, 5), 3), ((7, 0), 4)])
def test_cells_away_counts_kings_moves_to_the_nearest_covered_cell(cell, away):
    covered = cells_overlapping(SQUARE.box, cell_boxes(G, S))
    assert cells_away(cell[0] * G + cell[1], covered, G) == away


def test_cells_away_from_nothing_says_so():
    with pytest.raises(ValueError, match="no cell of the 8x8 grid is covered"):
        cells_away(0, torch.zeros(G * G, dtype=torch.bool), G)


def test_grounding_and_hallucination_on_a_hand_made_caption():
    words = "a small red square and a small blue circle".split()
    on, beside = torch.zeros(G * G), torch.zeros(G * G)
    on[2 * G + 2], beside[2 * G + 3] = 1.0, 1.0  # the peak on the square, and one cell to its right
    alphas = torch.stack([on] * 4 + [beside] * 5)  # (T, P): "square" is word 3, "circle" word 8
    scores = object_scores([words], [alphas], [[SQUARE]], G, S)
    assert scores == {"grounding": 1.0, "grounding_chance": 2 / 64, "hallucination": 0.5, "recall": 1.0}
    alphas[3] = beside  # the square's peak moves off it
    assert object_scores([words], [alphas], [[SQUARE]], G, S)["grounding"] == 0.0
