"""No attention, the baseline of Show and Tell (Vinyals et al., 2015): every step sees the mean annotation."""

from __future__ import annotations

import torch
import torch.nn as nn


class NoAttention(nn.Module):
    """z_t = (1/P) Σ_i a_i at every step: soft attention with α frozen at 1/P, so no parameters and nothing learned."""

    def project(self, annotations: torch.Tensor) -> torch.Tensor:
        """The mean annotation, once per image: (B, P, D) -> (B, 1, D)."""
        return annotations.mean(dim=1, keepdim=True)  # (B, 1, D)

    def forward(self, annotations: torch.Tensor, projected: torch.Tensor, h: torch.Tensor, mask: torch.Tensor | None = None):
        """The context (B*k, D) and the uniform α (B*k, P) that gives it; h only sets k. (mask: not supported.)"""
        if mask is not None:
            raise ValueError("model.attention = none: masks of padded cells are not supported")
        B, P, _ = annotations.shape
        k = h.size(0) // B
        z = projected.squeeze(1).repeat_interleave(k, dim=0)  # (B*k, D)
        alpha = annotations.new_full((B * k, P), 1.0 / P)  # (B*k, P), so grounding and the explorer still work
        return z, alpha
