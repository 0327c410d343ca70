"""Bahdanau soft attention over the annotation grid (paper eqs. 4, 5, 6 and 13)."""

from __future__ import annotations

import torch
import torch.nn as nn

# Elements of the (images, k, P, A) sum inside tanh computed at once on a CPU (score_cpu): 512K floats = 2 MB, about the
# L2 cache of two cores, so the add, the sigmoid and the sum over A read what the step before just wrote
# (one image's 5 beams at the paper's sizes). Beam search over many images would otherwise allocate hundreds
# of MB per step. A GPU takes the whole batch in one pass.
SCORE_CHUNK_ELEMENTS = 1 << 19


class SoftAttention(nn.Module):
    """e_ti = w^T tanh(W_a a_i + W_h h_{t-1}),  α_t = softmax(e_t),  z_t = Σ_i α_ti a_i."""

    def __init__(self, encoder_dim: int, decoder_dim: int, attention_dim: int):
        super().__init__()
        self.W_a = nn.Linear(encoder_dim, attention_dim)  # projects annotations, once per image
        self.W_h = nn.Linear(decoder_dim, attention_dim, bias=False)  # projects the previous hidden state
        # Scores each cell. No bias: it would shift every e_ti alike and cancel in the softmax, so its gradient is
        # rounding noise, which Adam (scale-free steps) would turn into a random walk.
        self.w = nn.Linear(attention_dim, 1, bias=False)

    def project(self, annotations: torch.Tensor) -> torch.Tensor:
        """W_a a_i for every cell: (B, P, D) -> (B, P, A). Independent of t, so computed once per image."""
        return self.W_a(annotations)  # (B, P, A)

    def score(self, projected: torch.Tensor, query: torch.Tensor) -> torch.Tensor:
        """e for k queries per image: projected (B, P, A) = W_a a and query (B, k, A) = W_h h -> (B, k, P)."""
        x = projected.unsqueeze(1) + query.unsqueeze(2)  # (B, k, P, A)  W_a a_i + W_h h_{t-1}
        return self.w(torch.tanh(x)).squeeze(3)  # (B, k, P)  eq. 4: e_ti = w^T tanh(W_a a_i + W_h h_{t-1})

    def score_cpu(self, projected: torch.Tensor, query: torch.Tensor) -> torch.Tensor:
        """score on a CPU, the same values faster (tests/test_model.py): a few images at a time, each by score_cpu_chunk."""
        B, P, A = projected.shape
        step = max(1, SCORE_CHUNK_ELEMENTS // (query.size(1) * P * A))  # images per pass
        # split, not slicing: backward then joins the chunks' gradients once, where each slice would write a zero-filled
        # (B, P, A) gradient of its own to be summed
        chunks = [self.score_cpu_chunk(p, q) for p, q in zip(projected.split(step), query.split(step))]  # (step, k, P) each
        return torch.cat(chunks)  # (B, k, P)

    def score_cpu_chunk(self, projected: torch.Tensor, query: torch.Tensor) -> torch.Tensor:
        """score for a few images on a CPU, where torch's tanh is mostly slower than its sigmoid (A1 has the figures).

        tanh x = 2σ(2x) − 1, so  w^T tanh x = 2 w^T σ(2x) − Σ_a w_a: the same e.
        """
        x = projected.unsqueeze(1) + query.unsqueeze(2)  # (B, k, P, A)  W_a a_i + W_h h
        w = self.w.weight.view(-1).to(x.dtype)  # (A,) in x's dtype: under bfloat16 autocast the passes below stay bfloat16
        sigma = x.mul_(2).sigmoid_()  # (B, k, P, A)  σ(2x), in place: no second buffer
        if torch.is_grad_enabled():  # training: autograd keeps σ; a matrix-vector product reads it once, with no copy
            weighted = sigma @ w  # (B, k, P)
        else:  # decoding: in place, then a sum, split between threads as the passes above are: each core reads its own writes
            weighted = sigma.mul_(w).sum(3)  # (B, k, P)
        return 2 * weighted - w.sum()  # (B, k, P)  e = 2 w^T σ(2x) − Σ_a w_a

    def weights(
        self,
        projected: torch.Tensor,  # (B, P, A), from project()
        h: torch.Tensor,  # (B*k, n), h_{t-1}; rows b*k .. b*k+k-1 belong to image b
        mask: torch.Tensor | None = None,  # (B, P) bool, False = cell to ignore (padding)
    ) -> torch.Tensor:
        """α_t (B*k, P): where each of the k hidden states per image looks."""
        B, P, A = projected.shape
        query = self.W_h(h).view(B, -1, A)  # (B, k, A)
        score = self.score_cpu if h.device.type == "cpu" else self.score  # the same e, computed faster on a CPU
        e = score(projected, query)  # (B, k, P)
        if mask is not None:
            e = e.masked_fill(~mask.unsqueeze(1), float("-inf"))  # masked cells get α = 0
        return torch.softmax(e, dim=2).flatten(0, 1)  # (B*k, P)  eq. 5

    def forward(
        self,
        annotations: torch.Tensor,  # (B, P, D)
        projected: torch.Tensor,  # (B, P, A), from project()
        h: torch.Tensor,  # (B*k, n), h_{t-1}; rows b*k .. b*k+k-1 belong to image b
        mask: torch.Tensor | None = None,  # (B, P) bool, False = cell to ignore (padding)
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """Returns the context z_t (B*k, D) and the weights α_t (B*k, P).

        Training and greedy decoding may have one hidden state per image (k = 1) or several, one per caption of
        the image; beam search has one per hypothesis. All k attend over the same image: its annotations are used
        as they are, not copied k times.
        """
        B, P, _ = annotations.shape
        alpha = self.weights(projected, h, mask).view(B, -1, P)  # (B, k, P)
        z = torch.bmm(alpha, annotations)  # (B, k, D)  eqs. 6 and 13
        return z.flatten(0, 1), alpha.flatten(0, 1)  # (B*k, D), (B*k, P)
