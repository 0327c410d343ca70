"""Bahdanau soft attention over the annotation grid (paper eqs. 4, 5, 6 and 13)."""

from __future__ import annotations

import torch
import torch.nn as nn


class SoftAttention(nn.Module):
    """e_ti = w^T tanh(W_a a_i + W_h h_{t-1}),  α_t = softmax(e_t),  z_t = Σ_i α_ti a_i."""

    def __init__(self, encoder_dim: int, decoder_dim: int, attention_dim: int):
        super().__init__()
        self.W_a = nn.Linear(encoder_dim, attention_dim)  # projects annotations, once per image
        self.W_h = nn.Linear(decoder_dim, attention_dim, bias=False)  # projects the previous hidden state
        self.w = nn.Linear(attention_dim, 1)  # scores each cell

    def project(self, annotations: torch.Tensor) -> torch.Tensor:
        """W_a a_i for every cell: (B, P, D) -> (B, P, A). Independent of t, so computed once per image."""
        return self.W_a(annotations)  # (B, P, A)

    def forward(
        self,
        annotations: torch.Tensor,  # (B, P, D)
        projected: torch.Tensor,  # (B, P, A), from project()
        h: torch.Tensor,  # (B, n), h_{t-1}
        mask: torch.Tensor | None = None,  # (B, P) bool, False = cell to ignore (padding)
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """Returns the context z_t (B, D) and the weights α_t (B, P)."""
        e = self.w(torch.tanh(projected + self.W_h(h).unsqueeze(1))).squeeze(2)  # (B, P)  eq. 4
        if mask is not None:
            e = e.masked_fill(~mask, float("-inf"))  # masked cells get α = 0
        alpha = torch.softmax(e, dim=1)  # (B, P)  eq. 5
        z = torch.bmm(alpha.unsqueeze(1), annotations).squeeze(1)  # (B, D)  eqs. 6 and 13
        return z, alpha
