"""Datasets, transforms and padding collates shared by the shapes world and real photos."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Callable, Sequence

import torch
from torch.nn.utils.rnn import pad_sequence
from torch.utils.data import Dataset
from torchvision.transforms import v2

from .images import open_image
from .vocab import Vocabulary

IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)


def image_transform(image_size: int) -> v2.Compose:
    """PIL image or uint8 tensor -> normalised float tensor (3, S, S); no flips (captions say left/right)."""
    return v2.Compose(
        [
            v2.ToImage(),
            v2.Resize((image_size, image_size), antialias=True),
            v2.ToDtype(torch.float32, scale=True),
            v2.Normalize(IMAGENET_MEAN, IMAGENET_STD),
        ]
    )


@dataclass
class ImageRecord:
    """One image of a real data set: where it is and its reference captions."""

    path: Path
    captions: list[str]


class ImageCaptionsDataset(Dataset):
    """One item per image with all of its captions: training encodes each image once, evaluation scores against all."""

    def __init__(self, images: torch.Tensor | Sequence[ImageRecord], captions: Sequence[Sequence[str]], vocab: Vocabulary, transform: Callable):
        if len(images) != len(captions):
            raise ValueError(f"{len(images)} images but {len(captions)} caption lists")
        self.images, self.captions, self.vocab, self.transform = images, captions, vocab, transform
        self.encoded = [[torch.tensor(vocab.encode(c)) for c in caps] for caps in captions]

    def __len__(self) -> int:
        return len(self.captions)

    def load_image(self, index: int):
        """Raw image: a uint8 tensor for in-memory data, a decoded PIL image for files."""
        item = self.images[index]
        return open_image(item.path) if isinstance(item, ImageRecord) else item

    def __getitem__(self, index: int) -> tuple[torch.Tensor, list[torch.Tensor], int]:
        return self.transform(self.load_image(index)), self.encoded[index], index


class CaptionDataset(Dataset):
    """One item per (image, caption) pair, the classic layout of captioning tutorials."""

    def __init__(self, grouped: ImageCaptionsDataset):
        self.grouped = grouped
        self.pairs = [(i, j) for i, caps in enumerate(grouped.encoded) for j in range(len(caps))]

    def __len__(self) -> int:
        return len(self.pairs)

    def __getitem__(self, index: int) -> tuple[torch.Tensor, torch.Tensor]:
        i, j = self.pairs[index]
        return self.grouped.transform(self.grouped.load_image(i)), self.grouped.encoded[i][j]


def pad_captions(captions: Sequence[torch.Tensor]) -> tuple[torch.Tensor, torch.Tensor]:
    """List of id tensors -> padded (N, L) ids and (N,) lengths (counting <start> and <end>)."""
    lengths = torch.tensor([len(c) for c in captions])  # (N,)
    return pad_sequence(list(captions), batch_first=True, padding_value=Vocabulary.pad_id), lengths


def collate_pairs(batch) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """[(image, caption)] -> images (B, 3, S, S), captions (B, L), lengths (B,)."""
    images, captions = zip(*batch)
    padded, lengths = pad_captions(captions)
    return torch.stack(images), padded, lengths


def collate_grouped(batch) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor]:
    """[(image, captions, index)] -> images (B,3,S,S), captions (N,L), lengths (N,), image_of_caption (N,), indices (B,)."""
    images, caption_lists, indices = zip(*batch)
    flat = [c for caps in caption_lists for c in caps]
    image_of_caption = torch.tensor([b for b, caps in enumerate(caption_lists) for _ in caps])  # (N,)
    padded, lengths = pad_captions(flat)
    return torch.stack(images), padded, lengths, image_of_caption, torch.tensor(indices)
