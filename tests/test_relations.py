"""Relation metrics: which stated relations are true, how often captions state them, and the likelihood probe."""

from __future__ import annotations

import pytest
import torch
import torch.nn as nn

from captionlib import Vocabulary, tokenize
from captionlib.config import ShapesConfig
from captionlib.data import ImageCaptionsDataset, image_transform
from captionlib.relations import flipped_captions, relation_probe, relation_scores, stated_relations, true_relation
from captionlib.shapes import ShapeObject, generate_split


def box_at(cx: int, cy: int, r: int = 5) -> tuple[int, int, int, int]:
    return (cx - r, cy - r, cx + r + 1, cy + r + 1)


RED_CIRCLE = ShapeObject("circle", "red", "small", box_at(10, 30))
BLUE_SQUARE = ShapeObject("square", "blue", "large", box_at(50, 34))  # right of the circle, nearly level
GREEN_DIAMOND = ShapeObject("diamond", "green", "small", box_at(14, 55))  # below the circle, a little right


def test_true_relation_follows_the_worlds_caption_rule():
    assert true_relation(RED_CIRCLE, BLUE_SQUARE) == "left" and true_relation(BLUE_SQUARE, RED_CIRCLE) == "right"
    assert true_relation(RED_CIRCLE, GREEN_DIAMOND) == "above" and true_relation(GREEN_DIAMOND, RED_CIRCLE) == "below"


@pytest.mark.parametrize("relation_first", [False, True])
def test_every_reference_relation_is_true_and_every_flip_is_false(relation_first):
    split = generate_split("val", 200, ShapesConfig(relation_first=relation_first))
    captions = [tokenize(c) for caps in split.captions for c in caps]
    objects = [objs for objs in split.objects for _ in range(5)]
    assert relation_scores(captions, objects)["relation_accuracy"] == 1.0
    flips = [(flipped, objs) for words, objs in zip(captions, objects) for _, flipped in flipped_captions(words)]
    assert len(flips) > 200
    # A caption stating r relations has r flips, each with one false relation and r - 1 true ones.
    r = [len(stated_relations(words)) for words in captions]
    expected = sum(n * (n - 1) for n in r) / sum(n * n for n in r)
    assert expected < 0.5 and relation_scores([f for f, _ in flips], [o for _, o in flips])["relation_accuracy"] == expected


def test_relation_scores_on_hand_made_captions():
    objects = [RED_CIRCLE, BLUE_SQUARE]
    cases = {
        "a small red circle to the left of a large blue square": 1.0,
        "a large blue square to the right of a small red circle": 1.0,
        "a small red circle above a large blue square": 0.0,  # the world says 'to the left of'
        "a small red circle to the left of a small red circle": 0.0,  # one object twice
        "a small red circle to the left of a large yellow square": 0.0,  # no yellow square in the image
        "to the left of a large blue square": 0.0,  # no subject
        "a small red circle and a large blue square to the right of it": 1.0,  # "it": the object named before
        "a small red circle and a large blue square to the left of it": 0.0,
        "a large blue square to the right of it": 0.0,  # "it" with nothing named before
    }
    for text, accuracy in cases.items():
        scores = relation_scores([tokenize(text)], [objects])
        assert scores["relation_accuracy"] == accuracy, text
        assert scores["relation_rate"] == 1.0 and scores["relations_stated"] == 1
    listing = relation_scores([tokenize("a picture of a small red circle and a large blue square")], [objects])
    assert listing["relation_rate"] == 0.0 and listing["relations_stated"] == 0
    one_object = relation_scores([tokenize("a small red circle above a small red circle")], [[RED_CIRCLE]])
    assert one_object["relation_accuracy"] == 0.0 and one_object["relation_rate"] == 0.0  # no multi-object image


def test_stated_relations_pair_each_relation_with_its_neighbours():
    words = tokenize("a small red circle, a small green diamond below it and a large blue square to the right of it")
    assert stated_relations(words) == [
        ("below", ("green", "diamond"), ("red", "circle")),
        ("right", ("blue", "square"), ("green", "diamond")),
    ]
    words = tokenize("a small red circle above a small green diamond to the right of a large blue square")
    assert stated_relations(words) == [
        ("above", ("red", "circle"), ("green", "diamond")),
        ("right", ("green", "diamond"), ("blue", "square")),
    ]
    assert [w for w, _ in flipped_captions(words)] == ["above", "right"]
    assert " ".join(flipped_captions(words)[1][1]) == " ".join(words).replace("right", "left")


class PrefersAboveAndLeft(nn.Module):
    """A stand-in model: every step gives 'above' and 'left' a higher logit than their opposites."""

    def __init__(self, vocab: Vocabulary):
        super().__init__()
        self.bias = nn.Parameter(torch.zeros(len(vocab)))
        self.bias.data[vocab.stoi["above"]] = self.bias.data[vocab.stoi["left"]] = 3.0

    def forward(self, images, captions, lengths, image_of_caption):
        T = int(lengths.max()) - 1
        return self.bias.expand(captions.size(0), T, -1), None, None  # (N, T, V)


def test_probe_compares_each_true_caption_with_its_flips():
    split = generate_split("test", 60, ShapesConfig())
    vocab = Vocabulary.build(c for caps in split.captions for c in caps)
    dataset = ImageCaptionsDataset(split.images, split.captions, vocab, image_transform(64))
    probe = relation_probe(PrefersAboveAndLeft(vocab), dataset, split.objects, batch_images=7)
    assert probe["relation_probe_above"] == 1.0 and probe["relation_probe_left"] == 1.0
    assert probe["relation_probe_below"] == 0.0 and probe["relation_probe_right"] == 0.0
    assert 0.0 < probe["relation_probe"] < 1.0


@pytest.mark.parametrize("beam_size", [1, 3])
def test_evaluate_reports_the_relation_metrics(tiny_checkpoint, beam_size):
    from captionlib.checkpoint import load_model
    from captionlib.evaluate import evaluate
    from captionlib.sources import load_splits

    model, vocab, cfg = load_model(tiny_checkpoint, torch.device("cpu"))
    result = evaluate(model, vocab, load_splits(cfg)["test"], beam_size=beam_size)
    for key in ("relation_probe", "relation_probe_above", "relation_accuracy", "relation_rate"):
        assert key in result
    assert 0.0 <= result["relation_probe"] <= 1.0
