"""The Transformer decoder (captionlib.transformer): its attention is the textbook one, its mask is causal, its key/value
cache changes nothing but the speed, and it trains, decodes and loads like the LSTM decoder."""

from __future__ import annotations

import dataclasses

import pytest
import torch
import torch.nn.functional as F
from conftest import tiny_config

from captionlib import CaptionModel
from captionlib.checkpoint import load_model
from captionlib.config import Config, ModelConfig
from captionlib.decoding import beam_search, beam_search_one_image, greedy_decode
from captionlib.train import train
from captionlib.transformer import (
    MATCHED_WIDTHS,
    MultiHeadAttention,
    RecomputingDecoder,
    TransformerDecoder,
    grid_encoding,
    scaled_dot_product_attention,
)

V = 38  # the shapes world's vocabulary


def transformer(**fields) -> TransformerDecoder:
    """A small random Transformer decoder over annotations of D = 10, in eval mode (no dropout)."""
    torch.manual_seed(0)
    cfg = ModelConfig(decoder="transformer", layers=2, heads=4, d_model=16, ff_dim=32, grid_size=3, **fields)
    return TransformerDecoder(V, 10, cfg).eval()


def captions(N: int = 4, L: int = 7) -> tuple[torch.Tensor, torch.Tensor]:
    """N random captions of L ids opening with <start> (id 1), and their lengths."""
    torch.manual_seed(1)
    words = torch.randint(4, V, (N, L))  # (N, L)
    words[:, 0] = 1
    return words, torch.tensor([L, L - 2, L - 1, L][:N])


def test_scaled_dot_product_attention_is_torchs_with_and_without_the_causal_mask():
    torch.manual_seed(0)
    q, k, v = torch.randn(2, 3, 5, 8), torch.randn(2, 3, 5, 8), torch.randn(2, 3, 5, 6)  # (B, h, T, d)
    out, weights = scaled_dot_product_attention(q, k, v)
    torch.testing.assert_close(out, F.scaled_dot_product_attention(q, k, v))
    torch.testing.assert_close(weights.sum(-1), torch.ones(2, 3, 5))
    causal = torch.ones(5, 5, dtype=torch.bool).tril()
    out, weights = scaled_dot_product_attention(q, k, v, causal)
    torch.testing.assert_close(out, F.scaled_dot_product_attention(q, k, v, is_causal=True))
    assert bool((weights[..., ~causal] == 0).all())  # no query looks ahead


def test_multi_head_attention_is_torchs_multihead_attention_with_the_same_weights():
    torch.manual_seed(0)
    ours, theirs = MultiHeadAttention(16, 4), torch.nn.MultiheadAttention(16, 4, batch_first=True)
    with torch.no_grad():
        theirs.in_proj_weight.copy_(torch.cat([ours.W_q.weight, ours.W_k.weight, ours.W_v.weight]))
        theirs.in_proj_bias.copy_(torch.cat([ours.W_q.bias, ours.W_k.bias, ours.W_v.bias]))
        theirs.out_proj.weight.copy_(ours.W_o.weight), theirs.out_proj.bias.copy_(ours.W_o.bias)
    x, source = torch.randn(3, 5, 16), torch.randn(3, 9, 16)  # queries (B, T, d), cells (B, P, d)
    out, weights = ours(x, *ours.keys_values(source))  # (B, T, d), (B, h, T, P)
    expected, expected_weights = theirs(x, source, source, average_attn_weights=False)
    torch.testing.assert_close(out, expected)
    torch.testing.assert_close(weights, expected_weights)


def test_changing_word_t_plus_1_leaves_every_output_up_to_t_unchanged():
    decoder, annotations = transformer(), torch.randn(4, 9, 10)
    words, lengths = captions()
    logits, alphas, _ = decoder(annotations, words, lengths)  # (N, T, K), (N, T, P)
    for t in range(1, words.size(1) - 1):
        changed = words.clone()
        changed[:, t] = (changed[:, t] + 1 - 4) % (V - 4) + 4  # another word at input position t
        new_logits, new_alphas, _ = decoder(annotations, changed, lengths)
        torch.testing.assert_close(new_logits[:, :t], logits[:, :t])  # outputs before position t: unchanged
        torch.testing.assert_close(new_alphas[:, :t], alphas[:, :t])
        assert not torch.allclose(new_logits[:, t], logits[:, t])  # and position t does see it


def test_decoding_with_the_cache_is_teacher_forcing_one_word_at_a_time():
    decoder, annotations = transformer(), torch.randn(2, 9, 10)
    words, lengths = captions()  # 2 captions per image, image by image
    logits, alphas, _ = decoder(annotations, words, lengths, torch.tensor([0, 0, 1, 1]))  # (N, T, K), (N, T, P)
    projected, state = decoder.project(annotations), decoder.init_state(annotations)
    state = tuple(s.repeat_interleave(2, dim=0) for s in state)  # (N, layers, h, 0, d_head)
    for t in range(logits.size(1)):
        step_logits, state, alpha = decoder.step(words[:, t], state, annotations, projected)  # (N, K), _, (N, P)
        live = t < lengths - 1  # (N,) the teacher-forced outputs are zero past each caption's end
        torch.testing.assert_close(step_logits[live], logits[live, t])
        torch.testing.assert_close(alpha[live], alphas[live, t])
    assert state[0].shape == (4, 2, 4, logits.size(1), 4)  # (R, layers, h, t, d_head)


@pytest.mark.parametrize("beam_size", [1, 3])
def test_the_cache_gives_the_captions_and_scores_of_recomputing_the_prefix(beam_size):
    decoder, annotations = transformer(), torch.randn(5, 9, 10)
    search = greedy_decode if beam_size == 1 else (lambda d, a, n: beam_search(d, a, beam_size, n))
    cached, recomputed = search(decoder, annotations, 12), search(RecomputingDecoder(decoder), annotations, 12)
    assert [c.tokens for c in cached] == [c.tokens for c in recomputed]
    for a, b in zip(cached, recomputed):
        assert a.score == pytest.approx(b.score, abs=1e-4) and a.finished == b.finished
        torch.testing.assert_close(a.alphas, b.alphas)


def test_an_images_captions_attending_together_equal_each_caption_with_a_copy_of_its_image():
    """The k captions of an image are k·T queries of that image in cross-attention: the same as copying its cells k times."""
    decoder, annotations = transformer(), torch.randn(2, 9, 10)
    words, lengths = captions()
    owners = torch.tensor([0, 0, 1, 1])
    together, alphas_together, _ = decoder(annotations, words, lengths, owners)  # k = 2 rows per image
    copied, alphas_copied, _ = decoder(annotations[owners], words, lengths)  # one image copy per caption
    torch.testing.assert_close(together, copied)
    torch.testing.assert_close(alphas_together, alphas_copied)


def test_batched_beam_search_is_the_one_image_search_for_the_transformer_too():
    decoder, annotations = transformer(), torch.randn(4, 9, 10)
    batched = beam_search(decoder, annotations, 3, 12)
    for i, caption in enumerate(batched):
        alone = beam_search_one_image(decoder, annotations[i], 3, 12)
        assert caption.tokens == alone.tokens and caption.score == pytest.approx(alone.score, abs=1e-4)


def test_without_grid_positions_cross_attention_cannot_tell_where_a_cell_is():
    """Permuting the cells permutes α and changes nothing else: the order of the cells carries no information."""
    annotations, permutation = torch.randn(2, 9, 10), torch.randperm(9)
    words, lengths = captions(N=2)
    for positions, invariant in ((False, True), (True, False)):
        decoder = transformer(cell_positions=positions)
        logits, alphas, _ = decoder(annotations, words, lengths)
        moved_logits, moved_alphas, _ = decoder(annotations[:, permutation], words, lengths)
        assert torch.allclose(moved_logits, logits, atol=1e-5) == invariant
        assert torch.allclose(moved_alphas, alphas[..., permutation], atol=1e-6) == invariant


def test_grid_encoding_gives_every_cell_its_own_code_and_neighbours_similar_ones():
    codes = grid_encoding(8, 64)  # (P, d)
    assert codes.shape == (64, 64) and len({tuple(c.round(decimals=4).tolist()) for c in codes}) == 64
    similarity = codes @ codes[0]  # (P,) against the top-left cell
    assert similarity[1] > similarity[7] and similarity[8] > similarity[63]  # the next cell is closer than the far one


@pytest.mark.parametrize(("layers", "d_model"), list(MATCHED_WIDTHS.items()))
def test_the_transformer_sizes_match_the_lstm_decoders_parameters_within_three_percent(layers, d_model):
    """transformer.MATCHED_WIDTHS: each layer count at the width whose parameter count is the book's LSTM decoder's."""
    lstm = CaptionModel(Config().model, V).decoder
    cfg = dataclasses.replace(Config().model, decoder="transformer", layers=layers, d_model=d_model, ff_dim=4 * d_model)
    ours = CaptionModel(cfg, V).decoder
    count = lambda module: sum(p.numel() for p in module.parameters())  # noqa: E731
    assert abs(count(ours) / count(lstm) - 1) <= 0.03
    if layers == 2:  # the default
        assert (Config().model.layers, Config().model.d_model, Config().model.ff_dim) == (2, 136, 544)


def test_a_transformer_with_hard_attention_or_a_width_its_heads_do_not_divide_is_one_clear_error():
    with pytest.raises(ValueError, match="model.attention = 'hard': the transformer decoder's cross-attention is soft"):
        ModelConfig(decoder="transformer", attention="hard")
    with pytest.raises(ValueError, match="model.d_model = 100: must be a multiple of 4 and of model.heads = 8"):
        ModelConfig(decoder="transformer", d_model=100, heads=8)
    with pytest.raises(ValueError, match="model.decoder = 'gru': must be one of lstm, transformer"):
        ModelConfig(decoder="gru")


def test_it_overfits_one_batch():
    """Karpathy's first check: one batch, many steps, the loss near zero."""
    decoder, annotations = transformer(dropout=0.0), torch.randn(4, 9, 10)
    decoder.train()
    words, lengths = captions()
    optimizer = torch.optim.Adam(decoder.parameters(), lr=3e-3)
    for _ in range(150):
        logits, _, _ = decoder(annotations, words, lengths)  # (N, T, K)
        live = torch.arange(logits.size(1)) < (lengths - 1).unsqueeze(1)  # (N, T)
        loss = F.cross_entropy(logits[live], words[:, 1:][live])
        optimizer.zero_grad(), loss.backward(), optimizer.step()
    assert loss.item() < 0.05


def test_it_trains_checkpoints_and_loads_like_the_lstm(tmp_path):
    cfg = tiny_config()
    cfg.model.decoder, cfg.model.d_model, cfg.model.ff_dim, cfg.model.layers = "transformer", 16, 32, 1
    best = train(cfg, tmp_path, progress=False, log=lambda _: None)
    model, vocab, loaded = load_model(best, torch.device("cpu"))
    assert isinstance(model.decoder, TransformerDecoder) and loaded.model.decoder == "transformer"
    [caption] = greedy_decode(model.decoder, model.encoder(torch.rand(1, 3, 64, 64)), 10)
    assert caption.alphas.shape == (len(caption.tokens), 64)


def test_the_shapes_transformer_recipe_is_the_books_model_with_the_transformer_decoder():
    """`captionlib train --config shapes_transformer`: the book's config but the decoder and the two rates measured for it."""
    from captionlib.config import changed_fields, load_config

    recipe = load_config("shapes_transformer")
    assert changed_fields(Config().to_dict(), recipe.to_dict()) == [
        ("model.decoder", "lstm", "transformer"), ("model.dropout", 0.3, 0.1), ("train.lr", 6e-3, 3e-3)]  # fmt: skip


@pytest.mark.parametrize("budget", ["small", "book"])
def test_the_grids_transformer_rows_have_the_lstm_rows_parameters(budget):
    """The grid compares decoders of one size: at each budget the Transformer's width matches that budget's LSTM."""
    from captionlib.experiments import BUDGETS, variant_config

    decoders = {v: CaptionModel(variant_config(v, 0, BUDGETS[budget]).model, V).decoder for v in ("soft", "transformer")}
    count = lambda module: sum(p.numel() for p in module.parameters())  # noqa: E731
    assert abs(count(decoders["transformer"]) / count(decoders["soft"]) - 1) <= 0.05
    assert variant_config("transformer-no-positions", 0, BUDGETS[budget]).model.cell_positions is False
