"""Caption arbitrary images with a trained checkpoint: the object behind the CLI and the explorer."""

from __future__ import annotations

from pathlib import Path

import torch
from PIL import Image

from .checkpoint import load_model
from .config import Config
from .data import image_transform
from .decoding import Caption, decode
from .model import CaptionModel
from .vocab import Vocabulary


class Captioner:
    """A trained model with its vocabulary and preprocessing, ready to caption PIL images."""

    def __init__(self, model: CaptionModel, vocab: Vocabulary, config: Config):
        self.model, self.vocab, self.config = model.eval(), vocab, config
        self.transform = image_transform(config.model.image_size)

    @classmethod
    def from_checkpoint(cls, path: str | Path, device: str | torch.device = "cpu") -> "Captioner":
        """Load a checkpoint written by training (weights_only, nothing executed) onto `device`."""
        return cls(*load_model(path, device))

    @property
    def grid_size(self) -> int:
        """Side of the attention grid (P = grid_size**2 cells)."""
        return self.config.model.grid_size

    @torch.no_grad()
    def caption(self, images: list[Image.Image], beam_size: int = 3, max_len: int | None = None, length_penalty: float = 0.0) -> list[Caption]:
        """Decode captions for RGB PIL images, batched."""
        if not images:
            return []
        device = next(self.model.parameters()).device
        batch = torch.stack([self.transform(im) for im in images]).to(device)  # (B, 3, S, S)
        annotations = self.model.encoder(batch)  # (B, P, D)
        limit = max_len or self.config.train.max_caption_len
        return decode(self.model.decoder, annotations, beam_size, limit, length_penalty)

    def words(self, caption: Caption) -> list[str]:
        """The caption's words."""
        return [self.vocab.itos[i] for i in caption.tokens]
