"""Greedy and beam search: the batched beam search equals the plain one-image version exactly."""

from __future__ import annotations

import pytest
import torch

from captionlib import Decoder, ModelConfig, Vocabulary, beam_search, beam_search_one_image, greedy_decode


def random_decoder(end_bias: float) -> Decoder:
    """Random weights, sharpened so that <end> competes with other words (some beams finish, some don't)."""
    torch.manual_seed(0)
    dec = Decoder(50, 24, ModelConfig(embed_dim=32, attention_dim=32, decoder_dim=48, dropout=0.0)).eval()
    with torch.no_grad():
        dec.L_o.weight.mul_(8)
        dec.L_o.bias[Vocabulary.end_id] = end_bias
    return dec


@pytest.mark.parametrize("end_bias", [1.5, 3.0, 6.0])  # 3.0: images leave the batch one by one; 6.0: all early
@pytest.mark.parametrize("beam_size", [2, 3, 5])
@pytest.mark.parametrize("length_penalty", [0.0, 0.7])
def test_batched_beam_search_equals_one_image_at_a_time(end_bias, beam_size, length_penalty):
    dec = random_decoder(end_bias)
    annotations = torch.randn(40, 16, 24)  # (B, P, D)
    batched = beam_search(dec, annotations, beam_size, 12, length_penalty)
    single = [beam_search_one_image(dec, annotations[i], beam_size, 12, length_penalty) for i in range(40)]
    assert [c.tokens for c in batched] == [c.tokens for c in single]
    assert [c.finished for c in batched] == [c.finished for c in single]
    assert any(c.finished for c in batched), "the case must include beams that end"
    for b, s in zip(batched, single):
        assert b.score == pytest.approx(s.score, abs=1e-4)
        assert b.alphas.shape == (len(b.tokens), 16)
        torch.testing.assert_close(b.alphas, s.alphas)


def test_images_that_are_done_leave_the_batch():
    dec = random_decoder(end_bias=3.0)
    rows_per_step = []
    step = dec.step
    dec.step = lambda words, *rest: (rows_per_step.append(len(words)), step(words, *rest))[1]
    annotations = torch.randn(40, 16, 24)  # (B, P, D)
    captions = beam_search(dec, annotations, 3, 12)
    assert rows_per_step[:2] == [40, 40 * 3]  # one hypothesis per image at t = 0 (<start>), then k
    assert rows_per_step[1:] == sorted(rows_per_step[1:], reverse=True)
    assert rows_per_step[-1] < rows_per_step[1], "no image left the batch"
    assert all(rows % 3 == 0 for rows in rows_per_step[1:])  # whole images leave, with all their beams
    assert sum(c.finished for c in captions) > 30


def test_search_stops_once_every_image_is_done():
    dec = random_decoder(end_bias=6.0)
    steps = []
    step = dec.step
    dec.step = lambda *args: (steps.append(1), step(*args))[1]
    captions = beam_search(dec, torch.randn(40, 16, 24), 3, 12)
    assert all(c.finished for c in captions) and len(steps) < 12


@pytest.mark.parametrize("search", [beam_search, lambda dec, a, k, n: beam_search_one_image(dec, a[0], k, n)])
def test_beam_wider_than_half_the_vocabulary_is_refused(search):
    dec = random_decoder(end_bias=0.0)
    with pytest.raises(ValueError, match=f"beam size {dec.vocab_size}: must be between 1 and {dec.vocab_size // 2}"):
        search(dec, torch.randn(1, 16, 24), dec.vocab_size, 5)


def test_no_end_within_the_limit_returns_the_best_live_hypothesis():
    dec = random_decoder(end_bias=-50.0)  # <end> is never chosen
    (caption,) = beam_search(dec, torch.randn(1, 16, 24), beam_size=3, max_len=7)
    assert not caption.finished and len(caption.tokens) == 7 and caption.alphas.shape == (7, 16)


def test_beam_of_one_is_greedy():
    dec = random_decoder(end_bias=1.5)
    annotations = torch.randn(20, 16, 24)
    greedy, beam = greedy_decode(dec, annotations, 12), beam_search(dec, annotations, 1, 12)
    assert [c.tokens for c in greedy] == [c.tokens for c in beam]
    assert [c.score for c in greedy] == pytest.approx([c.score for c in beam], abs=1e-4)


@pytest.mark.parametrize("search", [greedy_decode, lambda dec, a, n: beam_search(dec, a, 3, n)])
def test_empty_batch_and_zero_length_limit(search):
    """No images give no captions; a limit of 0 words gives each image an empty caption that did not finish."""
    dec = random_decoder(end_bias=1.5)
    assert search(dec, torch.randn(0, 16, 24), 12) == []
    captions = search(dec, torch.randn(2, 16, 24), 0)
    assert [(c.tokens, c.finished, c.alphas.shape) for c in captions] == [([], False, (0, 16))] * 2
