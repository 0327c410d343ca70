"""Stochastic "hard" attention (paper §4.1, eqs. 8-12 and its final learning rule): the decoder reads one sampled location, a_{s_t}."""

from __future__ import annotations

import torch

from .attention import SoftAttention
from .config import DECODE_AT
from .loss import real_words, word_log_likelihoods


class HardAttention(SoftAttention):
    """The same α_t as soft attention (eqs. 4, 5), but the context is one location: z_t = a_{s_t}, s_t ~ Multinoulli(α_t).

    Training samples s_t on some minibatches (the decoder's sample_locations) and uses the expected context
    Σ_i α_ti a_i on the others (§4.1: "with probability 0.5"). Decoding reads the expected context, as the authors'
    generate_caps.py does, or the most probable location (decode_at = "argmax"), as most re-implementations do.
    """

    def __init__(self, encoder_dim: int, decoder_dim: int, attention_dim: int):
        super().__init__(encoder_dim, decoder_dim, attention_dim)
        self.decode_at = "expected"  # one of DECODE_AT; not saved: set it for each evaluation
        # b of §4.1 (the baseline after eq. 12): a moving average of the per-word negative log-likelihood. A buffer, so checkpoints keep it.
        self.register_buffer("baseline", torch.zeros(()))

    @staticmethod
    def sample(alpha: torch.Tensor) -> torch.Tensor:
        """s_t ~ Multinoulli(α_t) (eq. 8): one location per row, (R, P) -> (R,)."""
        return torch.multinomial(alpha, 1).squeeze(1)  # (R,)  eq. 8: p(s_t = i | s_<t, a) = α_ti

    @staticmethod
    def read(annotations: torch.Tensor, location: torch.Tensor) -> torch.Tensor:
        """z_t = a_{s_t}: annotations (B, P, D) with k rows of location (B*k,) per image -> (B*k, D)."""
        B = annotations.size(0)
        image = torch.arange(B, device=annotations.device).repeat_interleave(location.numel() // B)  # (B*k,)
        return annotations[image, location]  # (B*k, D)  eq. 9: ẑ_t = Σ_i s_ti a_i = a_{s_t}

    def forward(self, annotations: torch.Tensor, projected: torch.Tensor, h: torch.Tensor, mask: torch.Tensor | None = None):
        """Context (B*k, D) and α (B*k, P) without sampling: expected, or at argmax α_t when decoding so."""
        if self.training or self.decode_at == "expected":
            return super().forward(annotations, projected, h, mask)  # (B*k, D), (B*k, P)
        alpha = self.weights(projected, h, mask)  # (B*k, P)
        return self.read(annotations, alpha.argmax(dim=1)), alpha  # (B*k, D), (B*k, P)


def set_decode_at(model: torch.nn.Module, decode_at: str) -> None:
    """Make every HardAttention in model decode at `decode_at` ("expected" or "argmax"); soft and none models ignore it."""
    if decode_at not in DECODE_AT:
        raise ValueError(f"hard attention decoding {decode_at!r}: choose from {', '.join(DECODE_AT)}")
    for module in model.modules():
        if isinstance(module, HardAttention):
            module.decode_at = decode_at


def reinforce_terms(
    logits: torch.Tensor,  # (N, T, V), teacher-forced with sampled locations
    captions: torch.Tensor,  # (N, L)
    lengths: torch.Tensor,  # (N,)
    alphas: torch.Tensor,  # (N, T, P), zero past each caption's end
    locations: torch.Tensor | None,  # (N, T) the sampled s_t, or None for a minibatch that used the expected context
    baseline: torch.Tensor,  # () b, a per-word negative log-likelihood
) -> tuple[torch.Tensor, torch.Tensor]:
    """The score-function surrogate of eqs. 10-12 and the mean entropy H[α_t], both per word of the batch.

    surrogate = Σ_n (nll_n − b·L_n) · log p(s̃_n | a) / Σ_n L_n, where nll_n = −log p(y_n | s̃_n, a) is held constant
    and log p(s̃_n | a) = Σ_t log α_t,s_t. Added to the cross-entropy (per word), its gradient is an unbiased estimate of
    the gradient of E_s[−log p(y | s, a)] per word, i.e. of −L_s (eq. 10); b (after eq. 12) changes the variance, not the mean.
    Without locations the surrogate is 0: the expected context needs no estimator.
    """
    T = logits.size(1)
    real = real_words(lengths, T)  # (N, T)
    words = real.sum(dim=1)  # (N,) L_n
    entropy = -(alphas * alphas.clamp_min(1e-12).log()).sum(dim=2)  # (N, T)  the final rule's H[s_t] = H[α_t]; 0 past the end
    mean_entropy = (entropy * real).sum() / words.sum()
    if locations is None:
        return logits.new_zeros(()), mean_entropy
    nll = -word_log_likelihoods(logits, captions, lengths).sum(dim=1).detach()  # (N,)  eq. 10: −log p(y | s̃, a)
    picked = alphas.gather(2, locations.unsqueeze(2)).squeeze(2)  # (N, T)  α_t,s_t
    log_p_locations = picked.masked_fill(~real, 1.0).log().sum(dim=1)  # (N,)  eqs. 11, 12: log p(s̃ | a); log 1 = 0 past the end
    surrogate = ((nll - baseline * words) * log_p_locations).sum() / words.sum()  # eq. 12 with b, per word
    return surrogate, mean_entropy
