"""Decode a whole split and score it: BLEU against all references, object scores where known."""

from __future__ import annotations

import torch
from torch.utils.data import DataLoader

from .data import ImageCaptionsDataset, collate_grouped, image_transform
from .decoding import Caption, decode
from .metrics import bleu, object_scores
from .model import CaptionModel
from .sources import Split
from .vocab import Vocabulary, tokenize


def split_dataset(split: Split, vocab: Vocabulary, image_size: int) -> ImageCaptionsDataset:
    """A split as a dataset of images, each with all of its captions."""
    return ImageCaptionsDataset(split.images, split.captions, vocab, image_transform(image_size))


@torch.no_grad()
def predict(
    model: CaptionModel,
    dataset: ImageCaptionsDataset,
    beam_size: int = 3,
    max_len: int = 24,
    length_penalty: float = 0.0,
    batch_size: int = 100,
    num_workers: int = 0,
) -> list[Caption]:
    """Captions for every image of the dataset, in order; num_workers processes decode the image files."""
    model.eval()
    device = next(model.parameters()).device
    pin = device.type == "cuda"  # page-locked batches copy to the GPU while the next ones load
    loader = DataLoader(dataset, batch_size=batch_size, collate_fn=collate_grouped, num_workers=num_workers, pin_memory=pin)
    captions: list[Caption] = []
    for images, *_ in loader:
        annotations = model.encoder(images.to(device, non_blocking=pin))  # (B, P, D)
        captions += decode(model.decoder, annotations, beam_size, max_len, length_penalty)
    return captions


def score(captions: list[Caption], split: Split, vocab: Vocabulary, grid_size: int, image_size: int) -> dict[str, float]:
    """BLEU-1..4 for any split; grounding, hallucination and recall when the split knows its objects."""
    hypotheses = [[vocab.itos[i] for i in c.tokens] for c in captions]
    references = [[tokenize(r) for r in refs] for refs in split.captions]
    result = bleu(hypotheses, references)
    if split.objects is not None:
        result |= object_scores(hypotheses, [c.alphas for c in captions], split.objects, grid_size, image_size)
    result["unfinished"] = sum(not c.finished for c in captions) / max(len(captions), 1)
    return result


def evaluate(
    model: CaptionModel,
    vocab: Vocabulary,
    split: Split,
    beam_size: int = 3,
    max_len: int = 24,
    length_penalty: float = 0.0,
    coco: bool = False,
    num_workers: int = 0,
) -> dict[str, float]:
    """predict() then score() on one split; coco=True adds pycocoevalcap's metrics on the same captions."""
    cfg = model.cfg
    dataset = split_dataset(split, vocab, cfg.image_size)
    captions = predict(model, dataset, beam_size, max_len, length_penalty, num_workers=num_workers)
    result = score(captions, split, vocab, cfg.grid_size, cfg.image_size)
    if coco:
        from .coco_metrics import coco_scores

        result |= coco_scores([" ".join(vocab.itos[i] for i in c.tokens) for c in captions], split.captions)
    return result
