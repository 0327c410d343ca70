"""Attention figures: each word's α grid upsampled over the image (paper Fig. 2-3 style)."""

from __future__ import annotations

import math

import matplotlib.pyplot as plt
import numpy as np
import torch
import torch.nn.functional as F
from PIL import Image


def upsample_alpha(alpha: torch.Tensor, grid_size: int, size: tuple[int, int]) -> np.ndarray:
    """One word's α (P,) -> (H, W) map over the image, bilinear, scaled to [0, 1]."""
    grid = alpha.reshape(1, 1, grid_size, grid_size).float()  # (1, 1, G, G)
    up = F.interpolate(grid, size=(size[1], size[0]), mode="bilinear", align_corners=False)[0, 0]  # (H, W)
    return (up / up.max().clamp_min(1e-12)).numpy()


def attention_figure(image: Image.Image, words: list[str], alphas: torch.Tensor, grid_size: int, columns: int = 5, title: str | None = None):
    """A grid of panels: the image, then one panel per word with its attention overlaid."""
    n = len(words) + 1
    rows = math.ceil(n / columns)
    fig, axes = plt.subplots(rows, columns, figsize=(2.2 * columns, 2.4 * rows), squeeze=False)
    for ax in axes.flat:
        ax.axis("off")
    axes.flat[0].imshow(image)
    axes.flat[0].set_title(title or "input", fontsize=9)
    for i, word in enumerate(words, start=1):
        ax = axes.flat[i]
        ax.imshow(image)
        ax.imshow(upsample_alpha(alphas[i - 1], grid_size, image.size), cmap="gray", alpha=0.6, extent=(0, image.size[0], image.size[1], 0))
        ax.set_title(word, fontsize=10)
    fig.tight_layout()
    return fig
