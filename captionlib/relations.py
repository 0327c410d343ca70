"""Are the stated spatial relations true? Relation accuracy and rate of decoded captions, and a likelihood probe.

BLEU and CHAIR score words and objects; neither can tell "a red circle above a blue square" from "… below …".
The shapes world knows every object's box, so it can: a relation is true when the world's own caption rule
(`shapes.relation`) would state it for those two objects.
"""

from __future__ import annotations

from typing import Sequence

import torch

from .data import pad_captions
from .loss import word_log_likelihoods
from .metrics import cell_boxes, cells_overlapping, matching_object, named_objects
from .shapes import ShapeObject, relation_between

# The word that tells each relation apart ("to the left of" -> "left"), and the word of its opposite.
RELATION_WORDS = {"left": "to the left of", "right": "to the right of", "above": "above", "below": "below"}
OPPOSITE = {"left": "right", "right": "left", "above": "below", "below": "above"}


def true_relation(a: ShapeObject, b: ShapeObject) -> str:
    """The relation word ('left', 'right', 'above' or 'below') the shapes world states for a relative to b."""
    words = relation_between(a, b)
    return next(key for key, phrase in RELATION_WORDS.items() if phrase == words)


def stated_relations(words: Sequence[str]) -> list[tuple[str, tuple[str | None, str] | None, tuple[str | None, str] | None]]:
    """(relation word, subject, object) for every relation word; subject and object are (colour, shape) or None.

    The subject is the last object named before the relation. The object is the first one named after it or, when
    the relation ends in "it" ("a blue square below it"), the object named before the subject.
    """
    named = named_objects(words)  # [(position, colour, shape)]
    found = []
    for i, word in enumerate(words):
        if word in RELATION_WORDS:
            before = [(c, s) for p, c, s in named if p < i]
            after = [(c, s) for p, c, s in named if p > i]
            end = i + 2 if words[i + 1 : i + 2] == ["of"] else i + 1  # the word after "to the left of" / "above"
            if words[end : end + 1] == ["it"]:
                obj = before[-2] if len(before) >= 2 else None
            else:
                obj = after[0] if after else None
            found.append((word, before[-1] if before else None, obj))
    return found


def relation_scores(captions: Sequence[Sequence[str]], objects: Sequence[Sequence[ShapeObject]]) -> dict[str, float]:
    """relation_accuracy: share of stated relations that are true (an absent or repeated object makes it false);
    relation_rate: share of images with two or more objects whose caption states a relation."""
    stated = true = multi = with_relation = 0
    for words, objs in zip(captions, objects):
        relations = stated_relations(words)
        if len(objs) >= 2:
            multi += 1
            with_relation += bool(relations)
        for word, subject, obj in relations:
            stated += 1
            a = matching_object(*subject, objs) if subject else None
            b = matching_object(*obj, objs) if obj else None
            true += a is not None and b is not None and a is not b and true_relation(a, b) == word
    return {
        "relation_accuracy": true / max(stated, 1),
        "relation_rate": with_relation / max(multi, 1),
        "relations_stated": stated,
    }


def flipped_captions(words: Sequence[str]) -> list[tuple[str, list[str]]]:
    """(relation word, the caption with that one relation replaced by its opposite), for every relation it states."""
    return [(w, [*words[:i], OPPOSITE[w], *words[i + 1 :]]) for i, w in enumerate(words) if w in RELATION_WORDS]


@torch.no_grad()
def caption_log_likelihoods(model, images: torch.Tensor, captions: torch.Tensor, lengths: torch.Tensor, image_of_caption: torch.Tensor) -> torch.Tensor:
    """Teacher-forced log p(caption | image), <end> included: images (B, 3, S, S), captions (N, L) -> (N,)."""
    logits, _, _ = model(images, captions, lengths, image_of_caption)  # (N, T, V)
    return word_log_likelihoods(logits, captions, lengths).sum(dim=1)  # (N,)


def _teacher_forced_batch(model, dataset, chunk: list[int], texts: list[list[str]], owners: list[int]):
    """The images of `chunk` (dataset indices) and the word lists `texts` (text i describes image chunk[owners[i]]) as
    tensors on the model's device: images (B, 3, S, S), ids (N, L), lengths (N,), image_of_caption (N,)."""
    device, vocab = next(model.parameters()).device, dataset.vocab
    images = torch.stack([dataset[index][0] for index in chunk]).to(device)  # (B, 3, S, S)
    ids = [torch.tensor([vocab.start_id, *(vocab.stoi.get(w, vocab.unk_id) for w in t), vocab.end_id]) for t in texts]
    padded, lengths = pad_captions(ids)  # (N, L), (N,)
    return images, padded.to(device), lengths.to(device), torch.tensor(owners, device=device)


@torch.no_grad()
def relation_probe(model, dataset, objects: Sequence[Sequence[ShapeObject]], batch_images: int = 100) -> dict[str, float | None]:
    """Share of (true relational caption, same caption with one relation flipped) pairs the model scores the true one higher.

    Every reference caption of every image with two or more objects that states a relation is compared with each
    of its one-relation flips; reported overall and per relation word (chance: 0.5).
    """
    model.eval()
    vocab = dataset.vocab
    wins = {w: 0 for w in RELATION_WORDS}
    total = {w: 0 for w in RELATION_WORDS}
    multi = [i for i, objs in enumerate(objects) if len(objs) >= 2]
    for start in range(0, len(multi), batch_images):
        chunk = multi[start : start + batch_images]
        texts, owners, kinds = [], [], []  # kinds: (relation word, true caption's row, flipped caption's row) per flip
        for b, index in enumerate(chunk):
            for caption in dataset.captions[index]:
                words = vocab.decode(vocab.encode(caption))
                flips = flipped_captions(words)
                if not flips:
                    continue
                true_row = len(texts)
                texts.append(words), owners.append(b)
                for word, flipped in flips:
                    kinds.append((word, true_row, len(texts)))
                    texts.append(flipped), owners.append(b)
        if not kinds:
            continue
        logp = caption_log_likelihoods(model, *_teacher_forced_batch(model, dataset, chunk, texts, owners)).cpu()  # (N,)
        for word, true_row, flipped_row in kinds:
            total[word] += 1
            wins[word] += bool(logp[true_row] > logp[flipped_row])
    result = {"relation_probe": sum(wins.values()) / max(sum(total.values()), 1)}
    result |= {f"relation_probe_{w}": wins[w] / total[w] if total[w] else None for w in RELATION_WORDS}  # None: no such relation
    return result


@torch.no_grad()
def attention_at_relations(model, dataset, objects: Sequence[Sequence[ShapeObject]], batch_images: int = 100) -> dict[str, float]:
    """Where the model looks while it predicts a relation word, teacher-forced on the reference captions.

    For each relation word the argmax-α cell is checked against the box of the subject (the object named before
    the word) and of the object (named after it): the relation needs the object's position, yet it is not named yet.
    """
    model.eval()
    vocab, grid = dataset.vocab, model.cfg.grid_size
    cells = cell_boxes(grid, model.cfg.image_size)  # (P, 4)
    at = {"subject": 0, "object": 0, "elsewhere": 0}
    multi = [i for i, objs in enumerate(objects) if len(objs) >= 2]
    for start in range(0, len(multi), batch_images):
        chunk = multi[start : start + batch_images]
        texts, owners = [], []
        for b, index in enumerate(chunk):
            for caption in dataset.captions[index]:
                words = vocab.decode(vocab.encode(caption))
                if stated_relations(words):
                    texts.append(words), owners.append(b)
        _, alphas, _ = model(*_teacher_forced_batch(model, dataset, chunk, texts, owners))  # alphas (N, T, P)
        for words, owner, alpha in zip(texts, owners, alphas.cpu()):  # alpha (T, P): step t predicts word t
            objs = objects[chunk[owner]]
            for position, (word, subject, obj) in zip([i for i, w in enumerate(words) if w in RELATION_WORDS], stated_relations(words)):
                cell = int(alpha[position].argmax())
                a, b = matching_object(*subject, objs), matching_object(*obj, objs)
                if cells_overlapping(b.box, cells)[cell]:
                    at["object"] += 1
                elif cells_overlapping(a.box, cells)[cell]:
                    at["subject"] += 1
                else:
                    at["elsewhere"] += 1
    total = max(sum(at.values()), 1)
    return {f"attention_at_relation_on_{k}": v / total for k, v in at.items()}
