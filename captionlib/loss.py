"""The doubly stochastic attention loss (paper eq. 14)."""

from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F

IGNORED = -100  # the target id of padding, which cross_entropy skips (its default ignore_index, named)


@dataclass
class LossTerms:
    """The training objective and its two parts, reported separately."""

    total: torch.Tensor
    cross_entropy: torch.Tensor
    attention_penalty: torch.Tensor  # Σ_i (1 - Σ_t α_ti)², averaged over captions, before λ


def real_words(lengths: torch.Tensor, T: int) -> torch.Tensor:
    """(N, T) True where step t predicts a word of the caption (its <end> included), False on padding."""
    return torch.arange(T, device=lengths.device) < (lengths - 1).unsqueeze(1)  # (N, T)


def word_log_likelihoods(logits: torch.Tensor, captions: torch.Tensor, lengths: torch.Tensor) -> torch.Tensor:
    """log p(y_t | y_<t, a) of each reference word, teacher-forced: logits (N, T, V) -> (N, T), zero past the end."""
    T = logits.size(1)
    targets = captions[:, 1 : T + 1]  # (N, T) word t+1 is predicted at step t
    logp = F.log_softmax(logits, dim=2).gather(2, targets.unsqueeze(2)).squeeze(2)  # (N, T)
    return logp * real_words(lengths, T)  # (N, T)


def caption_loss(
    logits: torch.Tensor,  # (N, T, V)
    captions: torch.Tensor,  # (N, L) with L >= T + 1
    lengths: torch.Tensor,  # (N,)
    alphas: torch.Tensor,  # (N, T, P), zero past each caption's end
    attention_lambda: float,
) -> LossTerms:
    """-log p(y|x) per real token + λ Σ_i (1 - Σ_t α_ti)² per caption.

    The paper sums -log p over a caption's words, so its λ corresponds to λ / (mean caption length) here.
    """
    T = logits.size(1)
    targets = captions[:, 1 : T + 1]  # (N, T) word t+1 is predicted at step t
    real = real_words(lengths, T)  # (N, T) not padding
    # padding's targets become cross_entropy's ignore_index: the mean is over real tokens. Its log-softmax also covers
    # the padding's rows, which costs less than copying the real words' logits out and their gradient back (1.02x)
    ignored = targets.masked_fill(~real, IGNORED)  # (N, T)
    cross_entropy = F.cross_entropy(logits.flatten(0, 1), ignored.flatten(), ignore_index=IGNORED)  # mean over real tokens
    coverage = alphas.sum(dim=1)  # (N, P)  Σ_t α_ti
    penalty = ((1.0 - coverage) ** 2).sum(dim=1).mean()  # Σ_i (1 - Σ_t α_ti)², mean over captions
    return LossTerms(cross_entropy + attention_lambda * penalty, cross_entropy, penalty)
