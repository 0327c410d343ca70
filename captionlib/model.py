"""The whole captioner: encoder annotations in, word logits and attention maps out."""

from __future__ import annotations

import torch
import torch.nn as nn

from .config import ModelConfig
from .decoder import Decoder
from .encoder import Encoder
from .transformer import TransformerDecoder


class CaptionModel(nn.Module):
    """Show, Attend and Tell: Encoder -> Decoder with soft, hard or no attention (or a Transformer decoder, chapter 13)."""

    def __init__(self, cfg: ModelConfig, vocab_size: int, load_weights: bool = True):
        super().__init__()
        self.cfg = cfg
        self.encoder = Encoder(cfg, load_weights)  # load_weights=False: the weights will come from a checkpoint
        decoder = TransformerDecoder if cfg.decoder == "transformer" else Decoder
        self.decoder = decoder(vocab_size, self.encoder.dim, cfg)

    def forward(
        self,
        inputs: torch.Tensor,  # images (B, 3, S, S), or cached annotations (B, P, D)
        captions: torch.Tensor,  # (N, L)
        lengths: torch.Tensor,  # (N,)
        image_of_caption: torch.Tensor | None = None,  # (N,), None when N == B
        sample_locations: bool = False,  # hard attention only: sample where to look (training)
    ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor | None]:
        """Teacher-forced logits (N, T, V), attention (N, T, P) and the sampled locations (N, T) or None."""
        annotations = inputs if inputs.dim() == 3 else self.encoder(inputs)  # (B, P, D)
        return self.decoder(annotations, captions, lengths, image_of_caption, sample_locations)
