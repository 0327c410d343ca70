"""LSTM decoder with soft attention, the β gate and the deep output layer (paper §3.1.2, §4.2.1)."""

from __future__ import annotations

import torch
import torch.nn as nn
import torch.nn.functional as F

from .attention import SoftAttention
from .config import ModelConfig

State = tuple[torch.Tensor, torch.Tensor]  # (h, c), each (R, n): a row per image, or per hypothesis in beam search


class Decoder(nn.Module):
    """Generates a caption one word at a time, attending to the annotations before every word."""

    def __init__(self, vocab_size: int, encoder_dim: int, cfg: ModelConfig):
        super().__init__()
        m, n, D = cfg.embed_dim, cfg.decoder_dim, encoder_dim
        self.vocab_size = vocab_size
        self.embedding = nn.Embedding(vocab_size, m)  # E
        self.attention = SoftAttention(D, n, cfg.attention_dim)
        self.init_h = nn.Linear(D, n)  # f_init,h
        self.init_c = nn.Linear(D, n)  # f_init,c
        self.f_beta = nn.Linear(n, D)  # gate, §4.2.1: one per channel (the paper's β is a scalar; chapter 05)
        self.lstm = nn.LSTMCell(m + D, n)  # input: [E y_{t-1}; ẑ_t]
        self.L_h = nn.Linear(n, m)  # deep output, eq. 7
        self.L_z = nn.Linear(D, m)
        self.L_o = nn.Linear(m, vocab_size)
        self.dropout = nn.Dropout(cfg.dropout)  # a module, so model.eval() switches it off

    def init_state(self, annotations: torch.Tensor) -> State:
        """h_0, c_0 from the mean annotation: c_0 = f_init,c(mean_i a_i), h_0 = f_init,h(mean_i a_i)."""
        mean = annotations.mean(dim=1)  # (B, D)
        return torch.tanh(self.init_h(mean)), torch.tanh(self.init_c(mean))  # (B, n) each

    def step(
        self,
        prev_words: torch.Tensor,  # (R,) ids of y_{t-1}, R = B*k rows: k per image, image by image
        state: State,  # h_{t-1}, c_{t-1}, (R, n) each
        annotations: torch.Tensor,  # (B, P, D)
        projected: torch.Tensor,  # (B, P, A) = W_a a, computed once per image
    ) -> tuple[torch.Tensor, State, torch.Tensor]:
        """One time step -> logits (R, V), the new state, α_t (R, P). k = 1 except in beam search (k beams)."""
        h, c = state
        emb = self.embedding(prev_words)  # (R, m)  E y_{t-1}
        z, alpha = self.attention(annotations, projected, h)  # (R, D), (R, P)
        beta = torch.sigmoid(self.f_beta(h))  # (R, D)  β_t = σ(f_β(h_{t-1}))
        z = beta * z  # (R, D)  ẑ_t = β_t Σ_i α_ti a_i
        h, c = self.lstm(torch.cat([emb, z], dim=1), (h, c))  # (R, n) each, eqs. 1-3
        deep = torch.tanh(emb + self.L_h(h) + self.L_z(z))  # (R, m)  eq. 7 (tanh as in the authors' code)
        logits = self.L_o(self.dropout(deep))  # (R, V)
        return logits, (h, c), alpha

    def forward(
        self,
        annotations: torch.Tensor,  # (B, P, D), one row per image
        captions: torch.Tensor,  # (N, L) ids: <start> w1 .. wk <end> <pad>...
        lengths: torch.Tensor,  # (N,) tokens per caption including <start> and <end>
        image_of_caption: torch.Tensor | None = None,  # (N,) which image each caption describes
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """Teacher forcing: logits (N, T, V) for words 1..T and α (N, T, P), zero past each caption's end."""
        projected = self.attention.project(annotations)  # (B, P, A)  once per image, not per step
        h0, c0 = self.init_state(annotations)  # (B, n) each
        if image_of_caption is not None:  # several captions share one image's features
            annotations, projected = annotations[image_of_caption], projected[image_of_caption]  # (N, P, D), (N, P, A)
            h0, c0 = h0[image_of_caption], c0[image_of_caption]  # (N, n) each
        steps = lengths - 1  # (N,) predictions per caption
        # Longest first, so the captions still running at step t are always a prefix of the batch.
        order = torch.argsort(steps, descending=True, stable=True)  # (N,)
        words, steps = captions[order], steps[order]  # (N, L), (N,)
        annotations, projected = annotations[order], projected[order]
        state = (h0[order], c0[order])
        N, T = captions.size(0), int(steps[0])
        step_logits, step_alphas = [], []
        running = [int((steps > t).sum()) for t in range(T)]
        for t, b in enumerate(running):
            state = (state[0][:b], state[1][:b])
            logit, state, alpha = self.step(words[:b, t], state, annotations[:b], projected[:b])  # (b, V), _, (b, P)
            # Rows of ended captions are zero. Padding, unlike writing into a preallocated (N, T, V)
            # tensor, keeps backward from refilling a full-size gradient at every step.
            step_logits.append(F.pad(logit, (0, 0, 0, N - b)))  # (N, V)
            step_alphas.append(F.pad(alpha, (0, 0, 0, N - b)))  # (N, P)
        logits, alphas = torch.stack(step_logits, 1), torch.stack(step_alphas, 1)  # (N, T, V), (N, T, P)
        unsort = torch.argsort(order)  # (N,)
        return logits[unsort], alphas[unsort]
