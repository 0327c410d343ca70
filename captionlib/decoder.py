"""LSTM decoder with attention (soft, hard or none), the β gate and the deep output layer (paper §3.1.2, §4.2.1)."""

from __future__ import annotations

import torch
import torch.nn as nn
import torch.nn.functional as F

from .attention import SoftAttention
from .config import ModelConfig
from .hard_attention import HardAttention
from .no_attention import NoAttention

# Under CPU autocast, L_o scores the batch's real words in a number of rows rounded up to this (Decoder.forward)
ROWS_MULTIPLE = 128

State = tuple[torch.Tensor, torch.Tensor]  # (h, c), each (R, n): a row per image, or per hypothesis in beam search


def make_attention(kind: str, encoder_dim: int, decoder_dim: int, attention_dim: int) -> nn.Module:
    """model.attention: "soft" (§4.2), "hard" (§4.1) or "none" (the mean annotation at every step)."""
    if kind == "soft":
        return SoftAttention(encoder_dim, decoder_dim, attention_dim)
    if kind == "hard":
        return HardAttention(encoder_dim, decoder_dim, attention_dim)
    if kind == "none":
        return NoAttention()
    raise ValueError(f"model.attention = {kind!r}: must be one of soft, hard, none")


def captions_per_image(
    annotations: torch.Tensor,  # (B, P, D)
    captions: torch.Tensor,  # (N, L)
    image_of_caption: torch.Tensor | None,  # (N,), None when N == B
) -> tuple[torch.Tensor, int]:
    """The annotations the captions attend to, and k, the captions per image (shared, as beam search's k hypotheses do).

    Captions that come image by image, k per image, share their image's annotations; otherwise (e.g. COCO's 5 to 7
    captions per image) each caption gets a copy of its image's annotations, (N, P, D), and k = 1.
    """
    N, B = captions.size(0), annotations.size(0)
    if image_of_caption is None:
        image_of_caption = torch.arange(N, device=captions.device)  # (N,) one caption per image
    k = N // B
    grouped = k * B == N and bool((image_of_caption == torch.arange(B, device=captions.device).repeat_interleave(k)).all())
    return (annotations, k) if grouped else (annotations[image_of_caption], 1)


class Decoder(nn.Module):
    """Generates a caption one word at a time, attending to the annotations before every word."""

    def __init__(self, vocab_size: int, encoder_dim: int, cfg: ModelConfig):
        super().__init__()
        m, n, D = cfg.embed_dim, cfg.decoder_dim, encoder_dim
        self.vocab_size = vocab_size
        self.embedding = nn.Embedding(vocab_size, m)  # E
        self.attention = make_attention(cfg.attention, D, n, cfg.attention_dim)
        self.init_h = nn.Linear(D, n)  # f_init,h
        self.init_c = nn.Linear(D, n)  # f_init,c
        # gate, §4.2.1: one per channel (the paper's β is a scalar; chapter 04); None: ẑ_t = z_t
        self.f_beta = nn.Linear(n, D) if cfg.beta_gate else None
        self.lstm = nn.LSTMCell(m + D, n)  # input: [E y_{t-1}; ẑ_t]
        if cfg.deep_output:  # eq. 7
            self.L_h = nn.Linear(n, m)
            self.L_z = nn.Linear(D, m)
            self.L_o = nn.Linear(m, vocab_size)
        else:  # the logits are a linear map of h_t, as in Show and Tell
            self.L_h = self.L_z = None
            self.L_o = nn.Linear(n, vocab_size)
        self.dropout = nn.Dropout(cfg.dropout)  # a module, so model.eval() switches it off

    def init_state(self, annotations: torch.Tensor) -> State:
        """h_0, c_0 from the mean annotation: c_0 = f_init,c(mean_i a_i), h_0 = f_init,h(mean_i a_i)."""
        mean = annotations.mean(dim=1)  # (B, D)
        return torch.tanh(self.init_h(mean)), torch.tanh(self.init_c(mean))  # (B, n) each

    def project(self, annotations: torch.Tensor) -> torch.Tensor:
        """What attention needs of each image, computed once before the first word: (B, P, D) -> e.g. W_a a (B, P, A)."""
        return self.attention.project(annotations)

    def step(
        self,
        prev_words: torch.Tensor,  # (R,) ids of y_{t-1}, R = B*k rows: k per image, image by image
        state: State,  # h_{t-1}, c_{t-1}, (R, n) each
        annotations: torch.Tensor,  # (B, P, D)
        projected: torch.Tensor,  # (B, P, A) = W_a a, computed once per image
    ) -> tuple[torch.Tensor, State, torch.Tensor]:
        """One time step -> logits (R, V), the new state, α_t (R, P). k = 1 except in beam search (k beams)."""
        logits, state, alpha, _ = self.step_and_locate(prev_words, state, annotations, projected)
        return logits, state, alpha

    def step_and_locate(
        self, prev_words: torch.Tensor, state: State, annotations: torch.Tensor, projected: torch.Tensor, sample: bool = False
    ) -> tuple[torch.Tensor, State, torch.Tensor, torch.Tensor | None]:
        """step, and with sample=True (hard attention, training) the context is a sampled a_{s_t}: also returns s_t (R,)."""
        emb = self.embedding(prev_words)  # (R, m)  E y_{t-1}
        out, state, alpha, location = self.advance(emb, state, annotations, projected, sample)
        logits = self.L_o(out)  # (R, V)  eq. 7's word scores
        return logits, state, alpha, location

    def advance(
        self, emb: torch.Tensor, state: State, annotations: torch.Tensor, projected: torch.Tensor, sample: bool = False
    ) -> tuple[torch.Tensor, State, torch.Tensor, torch.Tensor | None]:
        """From E y_{t-1} (R, m) and h_{t-1}, c_{t-1}: what L_o scores (R, m), after dropout; h_t, c_t; α_t (R, P); s_t or None."""
        h, c = state
        location = None
        if sample:  # s_t ~ Multinoulli(α_t), z_t = a_{s_t}  (eqs. 8, 9)
            alpha = self.attention.weights(projected, h)  # (R, P)
            location = self.attention.sample(alpha)  # (R,)
            z = self.attention.read(annotations, location)  # (R, D)
        else:
            z, alpha = self.attention(annotations, projected, h)  # (R, D), (R, P)
        if self.f_beta is not None:
            z = torch.sigmoid(self.f_beta(h)) * z  # (R, D)  ẑ_t = β_t z_t,  β_t = σ(f_β(h_{t-1}))
        h, c = self.lstm(torch.cat([emb, z], dim=1), (h, c))  # (R, n) each, eqs. 1-3
        if self.L_h is not None:
            out = torch.tanh(emb + self.L_h(h) + self.L_z(z))  # (R, m)  eq. 7 (tanh as in the authors' code)
        else:
            out = h  # (R, n)
        return self.dropout(out), (h, c), alpha, location

    def forward(
        self,
        annotations: torch.Tensor,  # (B, P, D), one row per image
        captions: torch.Tensor,  # (N, L) ids: <start> w1 .. wk <end> <pad>...
        lengths: torch.Tensor,  # (N,) tokens per caption including <start> and <end>
        image_of_caption: torch.Tensor | None = None,  # (N,) which image each caption describes
        sample_locations: bool = False,  # hard attention: sample s_t (training); otherwise the expected context
    ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor | None]:
        """Teacher forcing: logits (N, T, V) for words 1..T, α (N, T, P) and, when sampled, the locations s (N, T).

        Logits and α are zero past each caption's end, and so are the locations. Under autocast they come in its dtype. The captions of one image attend
        together (k rows per image, as in beam search), and an image leaves the batch once its longest caption ends.
        """
        if sample_locations and not isinstance(self.attention, HardAttention):
            raise ValueError(f"sample_locations=True samples hard attention's locations; this decoder's attention is {type(self.attention).__name__}")
        N = captions.size(0)
        annotations, k = captions_per_image(annotations, captions, image_of_caption)  # (B, P, D), k captions per image
        projected = self.project(annotations)  # (B, P, A)  once per image, not per step
        h, c = self.init_state(annotations)  # (B, n) each
        steps = (lengths - 1).view(-1, k)  # (B, k) predictions per caption, image by image
        # Longest first, so the images still running at step t are always a prefix of the batch.
        order = torch.argsort(steps.max(dim=1).values, descending=True, stable=True)  # (B,)
        steps, annotations, projected = steps[order], annotations[order], projected[order]
        rows = (order.unsqueeze(1) * k + torch.arange(k, device=order.device)).flatten()  # (N,) caption row of each slot
        words = captions[rows]  # (N, L)
        state = (h[order].repeat_interleave(k, 0), c[order].repeat_interleave(k, 0))  # (N, n) each
        longest = steps.max(dim=1).values  # (B,)
        T = int(longest[0])
        running = [int((longest > t).sum()) for t in range(T)]  # images still running at step t
        live = torch.arange(T, device=steps.device) < steps.flatten().unsqueeze(1)  # (N, T) word t is real
        # Teacher forcing knows every y_{t-1} in advance, and the recurrence never reads the logits: E y is looked up for
        # all steps at once before the loop, and L_o scores all steps at once after it (step_and_locate, for decoding,
        # does both one step at a time). One large product each, instead of T small ones and T gradients to sum.
        embedded = self.embedding(words[:, :T]).unbind(1)  # T x (N, m)  E y_{t-1}
        step_outs, step_alphas, step_locations = [], [], []
        for t, b in enumerate(running):
            if b < annotations.size(0):  # slice what is left, not the whole batch: backward fills only b rows
                annotations, projected = annotations[:b], projected[:b]
            r = b * k
            state = (state[0][:r], state[1][:r])
            out, state, alpha, location = self.advance(embedded[t][:r], state, annotations, projected, sample_locations)
            keep = live[:r, t : t + 1]  # (r, 1) False for captions that have ended in a running image
            # Padding, unlike writing into a preallocated (N, T, ...) tensor, keeps backward from refilling a full-size
            # gradient at every step.
            step_outs.append(F.pad(out, (0, 0, 0, N - r)))  # (N, m)
            step_alphas.append(F.pad(alpha * keep, (0, 0, 0, N - r)))  # (N, P)
            if location is not None:
                step_locations.append(F.pad(location * keep.squeeze(1), (0, N - r)))  # (N,)
        outs, alphas = torch.stack(step_outs, 1), torch.stack(step_alphas, 1)  # (N, T, m), (N, T, P)
        slot, step = live.nonzero(as_tuple=True)  # (W,) each: the W real words of the batch, slot by slot
        real_outs = outs[slot, step]  # (W, m)
        W = real_outs.size(0)
        if torch.is_autocast_enabled("cpu") and real_outs.device.type == "cpu":
            # bfloat16 products on a CPU go to oneDNN, which builds a kernel for each new shape (about 5 ms, forward and
            # backward); W differs from batch to batch, so round it up to a few shapes, built once
            real_outs = F.pad(real_outs, (0, 0, 0, -W % ROWS_MULTIPLE))  # (W', m), W' a multiple of ROWS_MULTIPLE
        word_logits = self.L_o(real_outs)[:W]  # (W, V) their scores
        logits = word_logits.new_zeros(N, T, self.vocab_size)  # (N, T, V) zero past each caption's end
        logits[rows[slot], step] = word_logits  # in the captions' own order: no (N, T, V) copy to unsort
        unsort = torch.argsort(rows)  # (N,)
        locations = torch.stack(step_locations, 1)[unsort] if step_locations else None  # (N, T)
        return logits, alphas[unsort], locations
