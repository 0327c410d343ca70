"""Hard attention (paper §4.1): sampling, decoding both ways, and the score-function estimator against the exact gradient."""

from __future__ import annotations

import itertools

import pytest
import torch

from captionlib import Decoder, ModelConfig, caption_loss
from captionlib.hard_attention import HardAttention, reinforce_terms, set_decode_at

# A decoder small enough to enumerate every location sequence: P = 3 cells, T = 3 steps, so 27 sequences.
TINY = ModelConfig(attention="hard", embed_dim=4, attention_dim=4, decoder_dim=5, dropout=0.0)
P, D, V = 3, 4, 6
CAPTION = torch.tensor([[1, 4, 5, 2]])  # <start> w w <end>: three predictions
LENGTH = torch.tensor([4])


def tiny_decoder() -> tuple[Decoder, torch.Tensor]:
    torch.manual_seed(0)
    decoder = Decoder(V, D, TINY)
    annotations = torch.randn(1, P, D) * 2  # (1, P, D) distinct cells, so where it looks matters
    return decoder, annotations


def forced(decoder: Decoder, sequence) -> None:
    """Make the decoder's next samples follow `sequence`, one location per step."""
    steps = iter(sequence)
    decoder.attention.sample = lambda alpha: torch.full((alpha.size(0),), next(steps), dtype=torch.long)


def exact_gradient(decoder: Decoder, annotations: torch.Tensor) -> torch.Tensor:
    """∇ of Σ_s p(s|a) (−log p(y|s,a) / L): the expected cross-entropy per word, by enumerating every sequence s."""
    decoder.zero_grad()
    total = 0.0
    for sequence in itertools.product(range(P), repeat=3):
        forced(decoder, sequence)
        logits, alphas, locations = decoder(annotations, CAPTION, LENGTH, sample_locations=True)
        p_s = alphas[0].gather(1, locations[0].unsqueeze(1)).prod()  # Π_t α_t,s_t
        cross_entropy = caption_loss(logits, CAPTION, LENGTH, alphas, 0.0).cross_entropy  # −log p(y|s,a) / L
        total = total + p_s * cross_entropy
    total.backward()
    del decoder.attention.sample
    return flat_grad(decoder)


def flat_grad(decoder: Decoder) -> torch.Tensor:
    return torch.cat([p.grad.flatten() if p.grad is not None else torch.zeros(p.numel()) for p in decoder.parameters()])


def sampled_gradients(decoder, annotations, baseline: float, score_function: bool = True, batches: int = 40, copies: int = 500):
    """Mean gradients of `batches` minibatches, each `copies` samples of the same caption: (batches, parameters)."""
    torch.manual_seed(1)
    captions, lengths = CAPTION.expand(copies, -1), LENGTH.expand(copies)
    image_of_caption = torch.zeros(copies, dtype=torch.long)
    grads = []
    for _ in range(batches):
        decoder.zero_grad()
        logits, alphas, locations = decoder(annotations, captions, lengths, image_of_caption, sample_locations=True)
        loss = caption_loss(logits, captions, lengths, alphas, 0.0).cross_entropy
        surrogate, _ = reinforce_terms(logits, captions, lengths, alphas, locations, torch.tensor(baseline))
        (loss + surrogate if score_function else loss).backward()
        grads.append(flat_grad(decoder))
    return torch.stack(grads)


def z_scores(grads: torch.Tensor, exact: torch.Tensor) -> torch.Tensor:
    """(mean − exact) / standard error, per parameter that gets a gradient."""
    mean, se = grads.mean(0), grads.std(0) / grads.size(0) ** 0.5
    used = se > 1e-9
    return (mean[used] - exact[used]) / se[used]


@pytest.mark.parametrize("baseline", [0.0, 1.8])
def test_sampled_gradient_is_unbiased(baseline):
    """The mean of 20 000 sampled gradients matches the exact one: every |z| < 4.5 over about 350 parameters (a false
    alarm has probability about 0.2% for 350 independent normals), with and without the baseline b."""
    decoder, annotations = tiny_decoder()
    exact = exact_gradient(decoder, annotations)
    z = z_scores(sampled_gradients(decoder, annotations, baseline), exact)
    assert z.abs().max() < 4.5, f"largest |z| {z.abs().max():.1f}"


def test_dropping_the_score_function_term_is_caught():
    """Without the REINFORCE term the estimator misses how α moves the loss: the same check fails by far."""
    decoder, annotations = tiny_decoder()
    exact = exact_gradient(decoder, annotations)
    z = z_scores(sampled_gradients(decoder, annotations, 0.0, score_function=False), exact)
    assert z.abs().max() > 10, f"largest |z| {z.abs().max():.1f}"


def test_baseline_lowers_the_variance():
    """b near the per-word NLL leaves the mean alone (above) and shrinks the spread of the attention's gradient."""
    decoder, annotations = tiny_decoder()
    spread = {b: sampled_gradients(decoder, annotations, b, batches=10, copies=200).std(0).sum() for b in (0.0, 1.8)}
    assert spread[1.8] < 0.7 * spread[0.0], spread


def test_decoding_reads_the_expected_context_or_the_most_probable_cell():
    decoder, annotations = tiny_decoder()
    decoder.eval()
    h = torch.randn(2, TINY.decoder_dim)  # two rows on the one image
    attention: HardAttention = decoder.attention
    projected = attention.project(annotations)
    z_expected, alpha = attention(annotations, projected, h)
    set_decode_at(decoder, "argmax")
    z_argmax, alpha_again = attention(annotations, projected, h)
    torch.testing.assert_close(alpha, alpha_again)
    torch.testing.assert_close(z_expected, alpha @ annotations[0])  # Σ_i α_ti a_i
    torch.testing.assert_close(z_argmax, annotations[0, alpha.argmax(1)])  # a at argmax α_t
    with pytest.raises(ValueError, match="hard attention decoding 'mode'"):
        set_decode_at(decoder, "mode")


def test_sampled_locations_follow_alpha_and_stop_at_the_end():
    decoder, annotations = tiny_decoder()
    torch.manual_seed(0)
    captions = torch.tensor([[1, 4, 5, 2], [1, 4, 2, 0]])
    logits, alphas, locations = decoder(annotations, captions, torch.tensor([4, 3]), torch.tensor([0, 0]), sample_locations=True)
    assert locations.shape == (2, 3) and locations.dtype == torch.long
    assert locations[1, 2] == 0 and alphas[1, 2].sum() == 0  # past the second caption's end
    counts = torch.bincount(torch.stack([decoder.attention.sample(alphas[0, :1]) for _ in range(4000)]).flatten(), minlength=P)
    torch.testing.assert_close(counts / 4000, alphas[0, 0].detach(), atol=0.03, rtol=0)  # s_1 ~ Multinoulli(α_1)


def test_entropy_term_is_the_mean_entropy_per_word():
    alphas = torch.tensor([[[0.5, 0.5, 0.0], [1.0, 0.0, 0.0]], [[1 / 3, 1 / 3, 1 / 3], [0.0, 0.0, 0.0]]])  # (2, 2, 3)
    logits = torch.zeros(2, 2, V)
    captions, lengths = torch.tensor([[1, 4, 2], [1, 2, 0]]), torch.tensor([3, 2])
    surrogate, entropy = reinforce_terms(logits, captions, lengths, alphas, None, torch.tensor(0.0))
    assert surrogate == 0  # the expected context needs no estimator
    torch.testing.assert_close(entropy, (torch.log(torch.tensor(2.0)) + 0 + torch.log(torch.tensor(3.0))) / 3)
