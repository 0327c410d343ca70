"""Vocabulary, shapes world, datasets and collates."""

from __future__ import annotations

import torch
from conftest import tiny_config

import captionlib.rows
from captionlib import Vocabulary, tokenize
from captionlib.config import ShapesConfig
from captionlib.data import CaptionDataset, ImageCaptionsDataset, collate_grouped, collate_pairs, image_transform
from captionlib.flickr import load_flickr
from captionlib.shapes import SHAPES, describe, export_flickr8k, generate, generate_split
from captionlib.sources import load_splits


def test_tokenize_needs_no_nltk_data():
    assert tokenize("A dog's ball, on the GRASS!") == ["a", "dogs", "ball", "on", "the", "grass"]


def test_tokenize_keeps_letters_of_every_script():
    assert tokenize("A man in a CAFÉ, snake_case") == ["a", "man", "in", "a", "café", "snake", "case"]
    assert tokenize("Ein Mädchen läuft.") == ["ein", "mädchen", "läuft"]
    assert tokenize("cafe\u0301") == ["café"]  # decomposed: e + combining acute, NFC-normalised
    assert tokenize("हिन्दी में एक लड़का") == ["हिन्दी", "में", "एक", "लड़का"]  # vowel signs are combining marks


def test_vocabulary_threshold_encode_decode_and_json(tmp_path):
    vocab = Vocabulary.build(["a red circle", "a blue circle", "a red square"], threshold=2)
    assert vocab.itos == ["<pad>", "<start>", "<end>", "<unk>", "a", "circle", "red"]
    ids = vocab.encode("A red triangle")
    assert ids == [1, 4, 6, 3, 2]
    assert vocab.decode(ids + [0, 0]) == ["a", "red", "<unk>"]
    vocab.save(tmp_path / "v.json")
    assert Vocabulary.load(tmp_path / "v.json") == vocab


def test_shapes_world_is_deterministic_and_consistent():
    cfg = ShapesConfig(n_train=50, n_val=5, n_test=5, seed=3)
    a, b = generate_split("train", 50, cfg), generate_split("train", 50, cfg)
    assert torch.equal(a.images, b.images) and a.captions == b.captions
    other = generate_split("train", 50, ShapesConfig(seed=4))
    assert not torch.equal(a.images, other.images)
    assert a.images.shape == (50, 3, 64, 64) and a.images.dtype == torch.uint8
    for objects, captions in zip(a.objects, a.captions):
        assert 1 <= len(objects) <= 3 and len(captions) == 5 and len(set(captions)) == 5
        kinds = [(o.colour, o.shape) for o in objects]
        assert len(set(kinds)) == len(kinds)  # each (colour, shape) at most once per image
        for c in captions:  # every caption names every object
            assert all(o.phrase() in c for o in objects)
        xs = [o.centre[0] for o in objects]
        assert xs == sorted(xs)


def test_boxes_do_not_overlap_and_hold_their_colour():
    from captionlib.shapes import COLOURS

    split = generate_split("val", 40, ShapesConfig())
    for image, objects in zip(split.images, split.objects):
        for i, o in enumerate(objects):
            x0, y0, x1, y1 = o.box
            patch = image[:, y0:y1, x0:x1].reshape(3, -1).T  # (pixels, 3)
            assert (patch == torch.tensor(COLOURS[o.colour], dtype=torch.uint8)).all(1).float().mean() > 0.4
            for p in objects[i + 1 :]:
                assert p.box[0] >= x1 or p.box[2] <= x0 or p.box[1] >= y1 or p.box[3] <= y0


def test_relations_in_captions():
    from captionlib.shapes import ShapeObject

    left = ShapeObject("circle", "red", "small", (0, 20, 10, 30))
    right = ShapeObject("square", "blue", "large", (40, 20, 60, 40))
    top = ShapeObject("diamond", "green", "small", (45, 0, 55, 10))
    # the default: both objects are named before the relation word
    assert describe([left, right])[0] == "a small red circle and a large blue square to the right of it"
    # the other placing caption reads right to left, and says so first: the first object named is never ambiguous
    assert describe([left, right])[2] == "leftwards : a large blue square and a small red circle to the left of it"
    assert describe([left, right], mark_leftwards=False)[2] == "a large blue square and a small red circle to the left of it"
    assert describe([left], mark_leftwards=False) == describe([left])  # one object: no right-to-left caption to mark
    assert describe([right, top])[0] == "a large blue square and a small green diamond above it"
    assert describe([left, right, top])[0] == "a small red circle, a large blue square to the right of it and a small green diamond above it"
    # relation_first, the book's first captions: the relation word comes before the object it points to
    assert describe([left, right], relation_first=True)[0] == "a small red circle to the left of a large blue square"
    assert describe([left, right], relation_first=True)[2] == "leftwards : a large blue square to the right of a small red circle"
    assert describe([right, top], relation_first=True)[0] == "a large blue square below a small green diamond"
    assert all(s in SHAPES for s in ("circle", "square", "triangle", "diamond"))


def test_export_is_read_back_by_the_flickr_loader(tmp_path):
    world = generate(ShapesConfig(n_train=6, n_val=2, n_test=3))
    export_flickr8k(world, tmp_path)
    assert (tmp_path / "captions.txt").read_text().splitlines()[0] == "image,caption"
    splits = load_flickr(tmp_path)
    assert {k: len(v) for k, v in splits.items()} == {"train": 6, "val": 2, "test": 3}
    assert splits["test"].captions == world["test"].captions
    vocab = Vocabulary.build(c for caps in splits["train"].captions for c in caps)
    dataset = ImageCaptionsDataset(splits["test"].images, splits["test"].captions, vocab, image_transform(64))
    from_disk = dataset[0][0]
    in_memory = image_transform(64)(world["test"].images[0])
    torch.testing.assert_close(from_disk, in_memory)  # PNG round trip is lossless


def test_shapes_world_has_no_image_files_to_check(monkeypatch):
    def refuse(path):
        raise AssertionError(f"the shapes world checked {path}")

    monkeypatch.setattr(captionlib.rows, "check_image", refuse)
    splits = load_splits(tiny_config())
    assert {name: len(split) for name, split in splits.items()} == {"train": 96, "val": 16, "test": 16}
    assert all(isinstance(split.images, torch.Tensor) for split in splits.values())  # in memory, never decoded from a file


def test_collates_pad_and_group():
    cfg = ShapesConfig(n_train=4)
    split = generate_split("train", 4, cfg)
    vocab = Vocabulary.build(c for caps in split.captions for c in caps)
    grouped = ImageCaptionsDataset(split.images, split.captions, vocab, image_transform(64))
    images, captions, lengths, image_of_caption, indices = collate_grouped([grouped[0], grouped[2]])
    assert images.shape == (2, 3, 64, 64) and captions.shape == (10, int(lengths.max()))
    assert image_of_caption.tolist() == [0] * 5 + [1] * 5 and indices.tolist() == [0, 2]
    assert all(captions[i, lengths[i] - 1] == Vocabulary.end_id for i in range(10))
    assert all((captions[i, lengths[i] :] == Vocabulary.pad_id).all() for i in range(10))
    pairs = CaptionDataset(grouped)
    assert len(pairs) == 20
    images, captions, lengths = collate_pairs([pairs[0], pairs[7]])
    assert images.shape == (2, 3, 64, 64) and captions.shape[0] == 2
