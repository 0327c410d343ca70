"""Feature cache for a frozen encoder: annotations computed once, stored as float16 in a memory-mapped file."""

from __future__ import annotations

import hashlib
import json
import os
from pathlib import Path

import numpy as np
import torch
from torch.utils.data import DataLoader, Dataset

from .data import IMAGENET_MEAN, IMAGENET_STD, ImageCaptionsDataset, ImageRecord, collate_grouped
from .encoder import Encoder
from .files import atomic_path


def dataset_fingerprint(images: torch.Tensor | list[ImageRecord]) -> str:
    """Identity of the images: their bytes in memory, or path, size and mtime of each file."""
    h = hashlib.sha256()
    if isinstance(images, torch.Tensor):
        h.update(images.contiguous().numpy().tobytes())
    else:
        for record in images:
            stat = os.stat(record.path)
            h.update(f"{record.path}|{stat.st_size}|{stat.st_mtime_ns}\n".encode())
    return h.hexdigest()


def cache_key(encoder: Encoder, image_size: int, grid_size: int, images) -> dict:
    """Everything the cached numbers depend on: encoder weights, preprocessing and the images."""
    weights = hashlib.sha256()
    for name, tensor in sorted(encoder.state_dict().items()):
        weights.update(name.encode())
        weights.update(tensor.detach().cpu().contiguous().numpy().tobytes())
    return {
        "encoder": encoder.name,
        "encoder_weights": weights.hexdigest(),
        "image_size": image_size,
        "grid_size": grid_size,
        "normalize": [IMAGENET_MEAN, IMAGENET_STD],
        "images": dataset_fingerprint(images),
    }


class FeatureCache(Dataset):
    """Cached annotations (N, P, D) float16 on disk, served as float32 with each image's encoded captions."""

    def __init__(self, path: Path, dataset: ImageCaptionsDataset):
        meta = json.loads(path.with_suffix(".json").read_text())
        self.array = np.memmap(path, dtype=np.float16, mode="r", shape=tuple(meta["shape"]))  # (N, P, D)
        self.encoded = dataset.encoded

    def __len__(self) -> int:
        return self.array.shape[0]

    def __getitem__(self, index: int) -> tuple[torch.Tensor, list[torch.Tensor], int]:
        features = torch.from_numpy(np.asarray(self.array[index], dtype=np.float32))  # (P, D)
        return features, self.encoded[index], index


@torch.no_grad()
def build_feature_cache(
    encoder: Encoder, dataset: ImageCaptionsDataset, path: Path, key: dict, batch_size: int = 64, num_workers: int = 0
) -> None:
    """Encode every image once and write float16 annotations; the .json written last marks it complete."""
    if not len(dataset):
        raise ValueError("feature cache: the data set has no images to encode")
    encoder.eval()
    device = next(encoder.parameters()).device
    loader = DataLoader(dataset, batch_size=batch_size, collate_fn=collate_grouped, num_workers=num_workers)  # workers decode files
    with atomic_path(path) as tmp:
        array = None
        for images, _, _, _, indices in loader:
            features = encoder(images.to(device)).half().cpu().numpy()  # (B, P, D)
            if array is None:
                array = np.memmap(tmp, dtype=np.float16, mode="w+", shape=(len(dataset), *features.shape[1:]))  # (N, P, D)
            array[indices.numpy()] = features
        array.flush()
        shape = list(array.shape)
        del array  # closes the memory map before the rename
    with atomic_path(path.with_suffix(".json")) as tmp:
        tmp.write_text(json.dumps({**key, "shape": shape}))


def feature_cache(
    encoder: Encoder, dataset: ImageCaptionsDataset, root: Path, image_size: int, grid_size: int, num_workers: int = 0
) -> FeatureCache:
    """The cache for this encoder, preprocessing and images: reused when its key matches, built otherwise."""
    if not encoder.frozen:
        raise ValueError("feature cache: the encoder is being trained, so its features change every step")
    key = cache_key(encoder, image_size, grid_size, dataset.images)
    digest = hashlib.sha256(json.dumps(key, sort_keys=True).encode()).hexdigest()[:16]
    path = Path(root) / f"{encoder.name}-{digest}.f16"
    meta = path.with_suffix(".json")
    if not (meta.exists() and {k: v for k, v in json.loads(meta.read_text()).items() if k != "shape"} == json.loads(json.dumps(key))):
        path.parent.mkdir(parents=True, exist_ok=True)
        build_feature_cache(encoder, dataset, path, key, num_workers=num_workers)
    return FeatureCache(path, dataset)
