"""Feature cache for a frozen encoder: annotations computed once, stored as float16 in a memory-mapped file."""

from __future__ import annotations

import hashlib
import json
import math
import os
from pathlib import Path
from typing import Callable

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


def file_checksum(path: Path, chunk: int = 1 << 24) -> str:
    """SHA-256 of a file's bytes, read 16 MiB at a time (about 1.4 GB/s on one core with SHA instructions)."""
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        while block := f.read(chunk):
            digest.update(block)
    return digest.hexdigest()


class FeatureCache(Dataset):
    """Cached annotations (N, P, D) float16 on disk, served as float32 with each image's encoded captions."""

    def __init__(self, path: Path, dataset: ImageCaptionsDataset, shape: tuple[int, ...]):
        self.array = np.memmap(path, dtype=np.float16, mode="r", shape=shape)  # (N, P, D)
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
            features = encoder(images.to(device)).float().cpu()  # (B, P, D)
            _check_finite(features, indices, dataset)
            features = features.half().numpy()  # (B, P, D)
            if array is None:
                array = np.memmap(tmp, dtype=np.float16, mode="w+", shape=(len(dataset), *features.shape[1:]))  # (N, P, D)
            array[indices.numpy()] = features
        array.flush()
        shape = list(array.shape)
        del array  # closes the memory map before the rename
        checksum = file_checksum(tmp)  # of the bytes on disk, as the check on opening reads them
    with atomic_path(path.with_suffix(".json")) as tmp:
        tmp.write_text(json.dumps({**key, "shape": shape, "sha256": checksum}))


def image_name(dataset: ImageCaptionsDataset, index: int) -> str:
    """How an error names an image: its file, or its place in an in-memory data set."""
    item = dataset.images[index]
    return str(item.path) if isinstance(item, ImageRecord) else f"training image {index} (in memory)"


def _check_finite(features: torch.Tensor, indices: torch.Tensor, dataset: ImageCaptionsDataset) -> None:
    """Refuse, naming the first such image, features that are not finite or that float16 would turn into inf."""
    per_image = features.flatten(1)  # (B, P * D)
    finite = per_image.isfinite().all(dim=1)  # (B,)
    fits = per_image.abs().amax(dim=1) <= torch.finfo(torch.float16).max  # (B,) NaN compares False
    if bool((finite & fits).all()):
        return
    first = int((~(finite & fits)).nonzero()[0])
    name = image_name(dataset, int(indices[first]))
    if not finite[first]:
        bad = per_image[first][~per_image[first].isfinite()][0].item()
        raise ValueError(f"feature cache: {name}: the encoder gives {bad} for it; its pixels or the encoder's weights are damaged")
    largest = per_image[first].abs().max().item()
    raise ValueError(f"feature cache: {name}: a feature of {largest:.3g} is past float16's range; set train.feature_cache=false")


def cache_problem(path: Path, key: dict, checksum: bool = True) -> str | None:
    """Why the cache file `path` cannot be used for `key`, in a few words; "" when it was never built, None when it is good.

    Checked: the metadata is readable and describes `key`, the file has the size its shape implies and, with
    checksum=True, its SHA-256 is the one recorded when it was built (which catches bytes overwritten in place).
    """
    meta_path = path.with_suffix(".json")
    if not meta_path.exists():
        return ""
    try:
        meta = json.loads(meta_path.read_text())
        shape, recorded = tuple(int(n) for n in meta["shape"]), meta.get("sha256")
    except (OSError, UnicodeDecodeError, ValueError, KeyError, TypeError) as e:
        return f"its metadata {meta_path.name} cannot be read ({type(e).__name__})"
    if {k: v for k, v in meta.items() if k not in ("shape", "sha256")} != json.loads(json.dumps(key)):
        return f"its metadata {meta_path.name} describes another encoder or other images"
    if not isinstance(recorded, str):
        return "its metadata records no checksum (written by an older captionlib)"
    try:
        size = path.stat().st_size
    except OSError as e:
        return f"the file cannot be read ({e.strerror or e})"
    if size != math.prod(shape) * 2:  # float16: two bytes a number
        return f"the file is {size} bytes but its metadata says {math.prod(shape) * 2} (shape {list(shape)})"
    if checksum:
        try:
            if file_checksum(path) != recorded:
                return "its bytes do not match the SHA-256 recorded in its metadata"
        except OSError as e:
            return f"the file cannot be read ({e.strerror or e})"
    return None


def feature_cache(
    encoder: Encoder,
    dataset: ImageCaptionsDataset,
    root: Path,
    image_size: int,
    grid_size: int,
    num_workers: int = 0,
    checksum: bool = True,
    log: Callable[[str], None] = print,
) -> FeatureCache:
    """The cache for this encoder, preprocessing and images: reused when it checks out (cache_problem), built otherwise.

    A damaged file (wrong size, bytes that no longer match its checksum, or one that cannot be mapped) is rebuilt,
    with one line through `log` naming it. checksum=False skips reading the whole file (torchrun's other ranks,
    after rank 0 has checked it).
    """
    if not encoder.frozen:
        raise ValueError("feature cache: the encoder is being trained, so its features change every step")
    key = cache_key(encoder, image_size, grid_size, dataset.images)
    digest = hashlib.sha256(json.dumps(key, sort_keys=True).encode()).hexdigest()[:16]
    path = Path(root) / f"{encoder.name}-{digest}.f16"
    problem = cache_problem(path, key, checksum)
    if problem is None:
        shape = tuple(json.loads(path.with_suffix(".json").read_text())["shape"])
        try:
            return FeatureCache(path, dataset, shape)
        except (OSError, ValueError) as e:  # a file the system will not map
            problem = f"the file cannot be mapped ({str(e).splitlines()[0] if str(e) else type(e).__name__})"
    if problem:
        log(f"feature cache {path}: {problem}; rebuilding it")
    path.parent.mkdir(parents=True, exist_ok=True)
    build_feature_cache(encoder, dataset, path, key, num_workers=num_workers)
    return FeatureCache(path, dataset, tuple(json.loads(path.with_suffix(".json").read_text())["shape"]))
