"""Decode a whole split and score it: BLEU against all references, object scores where known."""

from __future__ import annotations

import torch
from torch.utils.data import DataLoader, Subset

from .data import ImageCaptionsDataset, collate_grouped, image_transform
from .decoding import Caption, decode
from .distributed import gather_round_robin, rank_and_world
from .metrics import bleu, object_scores
from .model import CaptionModel
from .relations import relation_probe, relation_scores
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
    """Captions for every image of the dataset, in order; num_workers processes decode the image files.

    Under torchrun each of the W processes decodes every W-th image, and every process gets all the captions.
    """
    model.eval()
    device = next(model.parameters()).device
    pin = device.type == "cuda"  # page-locked batches copy to the GPU while the next ones load
    rank, world = rank_and_world()
    shard = dataset if world == 1 else Subset(dataset, range(rank, len(dataset), world))
    loader = DataLoader(shard, batch_size=batch_size, collate_fn=collate_grouped, num_workers=num_workers, pin_memory=pin)
    captions: list[Caption] = []
    for images, *_ in loader:
        annotations = model.encoder(images.to(device, non_blocking=pin))  # (B, P, D)
        captions += decode(model.decoder, annotations, beam_size, max_len, length_penalty)
    if world == 1:
        return captions
    return _gather_captions(captions, len(dataset), max_len, model.cfg.grid_size**2)


def _gather_captions(captions: list[Caption], total: int, max_len: int, cells: int) -> list[Caption]:
    """Every process's captions (dealt round robin, as predict() decodes them) in dataset order, on every process."""
    n = len(captions)
    tokens = torch.full((n, max_len), -1, dtype=torch.long)  # (n, T) word ids, -1 past each caption's end
    alphas = torch.zeros(n, max_len, cells)  # (n, T, P)
    scores = torch.zeros(n, 2, dtype=torch.float64)  # (n, 2) log p and finished (1.0 or 0.0)
    for i, caption in enumerate(captions):
        length = len(caption.tokens)
        tokens[i, :length] = torch.tensor(caption.tokens, dtype=torch.long)
        alphas[i, :length] = caption.alphas
        scores[i] = torch.tensor([caption.score, float(caption.finished)], dtype=torch.float64)
    tokens, alphas, scores = (gather_round_robin(t, total) for t in (tokens, alphas, scores))  # (total, ...) each
    lengths = (tokens >= 0).sum(dim=1).tolist()
    return [Caption(tokens[i, :m].tolist(), alphas[i, :m], float(scores[i, 0]), bool(scores[i, 1])) for i, m in enumerate(lengths)]


def score(captions: list[Caption], split: Split, vocab: Vocabulary, grid_size: int, image_size: int) -> dict[str, float]:
    """BLEU-1..4 for any split; grounding, hallucination, recall and the stated relations when the split knows its objects."""
    hypotheses = [[vocab.itos[i] for i in c.tokens] for c in captions]
    references = [[tokenize(r) for r in refs] for refs in split.captions]
    result = bleu(hypotheses, references)
    if split.objects is not None:
        result |= object_scores(hypotheses, [c.alphas for c in captions], split.objects, grid_size, image_size)
        result |= relation_scores(hypotheses, split.objects)
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
    probe: bool = True,
) -> dict[str, float]:
    """predict() then score() on one split, plus the relation probe where objects are known (probe=False: not, as
    in training's per-epoch validation, which needs BLEU-4 only); coco=True adds pycocoevalcap's metrics.

    Under torchrun the processes share the decoding and all get the scores; the COCO metrics (a Java METEOR
    each) are computed by rank 0 alone.
    """
    cfg = model.cfg
    dataset = split_dataset(split, vocab, cfg.image_size)
    captions = predict(model, dataset, beam_size, max_len, length_penalty, num_workers=num_workers)
    result = score(captions, split, vocab, cfg.grid_size, cfg.image_size)
    if probe and split.objects is not None:  # teacher-forced, so the same on every process: each computes it whole
        result |= relation_probe(model, dataset, split.objects)
    if coco and rank_and_world()[0] == 0:
        from .coco_metrics import coco_scores

        result |= coco_scores([" ".join(vocab.itos[i] for i in c.tokens) for c in captions], split.captions)
    return result
