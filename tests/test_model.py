"""Attention, decoder, loss and encoder: shapes, equations and the pitfalls the seed fell into."""

from __future__ import annotations

import dataclasses

import pytest
import torch

from captionlib import CaptionModel, Decoder, ModelConfig, SoftAttention, caption_loss
from captionlib import attention as attention_module
from captionlib import decoder as decoder_module
from captionlib.decoder import ROWS_MULTIPLE
from captionlib.encoder import Encoder

SMALL = ModelConfig(embed_dim=16, attention_dim=12, decoder_dim=20, encoder_channels=24, dropout=0.5)


def test_attention_matches_the_equations_by_hand():
    torch.manual_seed(0)
    att = SoftAttention(encoder_dim=6, decoder_dim=5, attention_dim=4)
    a, h = torch.randn(2, 9, 6), torch.randn(2, 5)  # (B, P, D), (B, n)
    z, alpha = att(a, att.project(a), h)
    e = torch.stack([torch.stack([att.w(torch.tanh(att.W_a(a[b, i]) + att.W_h(h[b]))).squeeze() for i in range(9)]) for b in range(2)])
    expected_alpha = torch.softmax(e, dim=1)  # (B, P)
    assert alpha.shape == (2, 9) and z.shape == (2, 6)
    torch.testing.assert_close(alpha, expected_alpha)
    torch.testing.assert_close(alpha.sum(1), torch.ones(2))
    torch.testing.assert_close(z, (expected_alpha.unsqueeze(2) * a).sum(1))


def score_as_written(att: SoftAttention, projected: torch.Tensor, query: torch.Tensor) -> torch.Tensor:
    """Eq. 4 with torch.tanh, as the paper writes it: (B, P, A) and (B, k, A) -> (B, k, P)."""
    return att.w(torch.tanh(projected.unsqueeze(1) + query.unsqueeze(2))).squeeze(3)


def chunked(monkeypatch, images: int, k: int, P: int, A: int) -> None:
    """score_cpu takes `images` images per pass (the last pass fewer), so every test crosses chunk boundaries."""
    monkeypatch.setattr(attention_module, "SCORE_CHUNK_ELEMENTS", images * k * P * A)


def test_attention_score_is_eq_4_as_written():
    torch.manual_seed(0)
    att = SoftAttention(encoder_dim=6, decoder_dim=5, attention_dim=4)
    projected, query = torch.randn(2, 9, 4), torch.randn(2, 3, 4)  # (B, P, A), (B, k, A)
    e = att.score(projected, query)  # (B, k, P)
    assert e.shape == (2, 3, 9)
    torch.testing.assert_close(e, score_as_written(att, projected, query))
    torch.testing.assert_close(e[1, 2, 5], att.w.weight[0] @ torch.tanh(projected[1, 5] + query[1, 2]))  # one e_ti by hand


def test_attention_score_cpu_is_eq_4_as_written(monkeypatch):
    """score_cpu computes w^T tanh x as 2 w^T σ(2x) − Σw, in chunks, in place when no gradient is kept: same values."""
    torch.manual_seed(0)
    att = SoftAttention(encoder_dim=6, decoder_dim=5, attention_dim=4)
    projected, query = torch.randn(5, 9, 4), torch.randn(5, 3, 4)  # (B, P, A), (B, k, A)
    chunked(monkeypatch, 2, 3, 9, 4)  # passes of 2, 2 and 1 images
    inputs = projected.clone(), query.clone()
    expected = score_as_written(att, projected, query)  # (B, k, P)
    torch.testing.assert_close(att.score_cpu(projected, query), expected)  # training: autograd through σ
    with torch.no_grad():
        torch.testing.assert_close(att.score_cpu(projected, query), expected)  # decoding: in place
    assert projected.equal(inputs[0]) and query.equal(inputs[1])  # the in-place work stays on its own buffer


def test_attention_score_cpu_gradients_are_those_of_eq_4(monkeypatch):
    """score_cpu works in place (σ(2x), then the sum); autograd must still see the function it computes."""
    torch.manual_seed(0)
    att = SoftAttention(encoder_dim=6, decoder_dim=5, attention_dim=4).double()
    a, h = torch.randn(3, 9, 6, dtype=torch.double), torch.randn(3, 5, dtype=torch.double, requires_grad=True)
    chunked(monkeypatch, 2, 1, 9, 4)  # passes of 2 and 1 images
    assert torch.autograd.gradcheck(lambda h: att(a, att.project(a), h), (h,))
    # and the weights get the gradients of eq. 4 as written
    weights = [att.W_a.weight, att.W_a.bias, att.W_h.weight, att.w.weight]

    def gradients(score) -> tuple[torch.Tensor, ...]:
        projected, query = att.project(a), att.W_h(h).unsqueeze(1)  # (B, P, A), (B, 1, A)
        return torch.autograd.grad(score(projected, query).square().sum(), weights)

    torch.testing.assert_close(gradients(att.score_cpu), gradients(lambda projected, query: score_as_written(att, projected, query)))


def test_attention_forward_uses_score_cpu_on_a_cpu(monkeypatch):
    att = SoftAttention(encoder_dim=6, decoder_dim=5, attention_dim=4)
    a, h = torch.randn(2, 9, 6), torch.randn(2 * 3, 5)  # (B, P, D), (B*k, n)
    calls = []
    monkeypatch.setattr(att, "score_cpu", lambda projected, query: calls.append(query.shape) or att.score(projected, query))
    att(a, att.project(a), h)
    assert calls == [(2, 3, 4)]  # once, for all images and their k = 3 queries


def test_attention_mask_gives_zero_weight():
    att = SoftAttention(6, 5, 4)
    a, h = torch.randn(1, 4, 6), torch.randn(1, 5)
    mask = torch.tensor([[True, False, True, False]])
    _, alpha = att(a, att.project(a), h, mask)
    assert alpha[0, 1] == 0 and alpha[0, 3] == 0
    torch.testing.assert_close(alpha.sum(), torch.tensor(1.0))


def test_decoder_shapes_and_zero_attention_past_the_end():
    torch.manual_seed(0)
    dec = Decoder(vocab_size=30, encoder_dim=24, cfg=SMALL)
    annotations = torch.randn(2, 16, 24)  # (B, P, D)
    captions = torch.randint(4, 30, (5, 7))
    lengths = torch.tensor([7, 3, 5, 7, 4])
    image_of_caption = torch.tensor([0, 0, 1, 1, 1])
    logits, alphas, _ = dec(annotations, captions, lengths, image_of_caption)
    assert logits.shape == (5, 6, 30) and alphas.shape == (5, 6, 16)
    for n, length in enumerate(lengths.tolist()):
        torch.testing.assert_close(alphas[n, : length - 1].sum(1), torch.ones(length - 1))
        assert alphas[n, length - 1 :].abs().sum() == 0 and logits[n, length - 1 :].abs().sum() == 0

    with pytest.raises(ValueError, match="samples hard attention's locations; this decoder's attention is SoftAttention"):
        dec(annotations, captions, lengths, image_of_caption, sample_locations=True)


def test_teacher_forcing_equals_stepping_by_hand():
    torch.manual_seed(0)
    dec = Decoder(30, 24, SMALL).eval()
    annotations = torch.randn(1, 16, 24)
    captions = torch.tensor([[1, 7, 9, 4, 2]])
    logits, alphas, _ = dec(annotations, captions, torch.tensor([5]))
    state, projected = dec.init_state(annotations), dec.attention.project(annotations)
    for t in range(4):
        logit, state, alpha = dec.step(captions[:, t], state, annotations, projected)
        torch.testing.assert_close(logit, logits[:, t])
        torch.testing.assert_close(alpha, alphas[:, t])


def test_teacher_forcing_under_cpu_autocast_pads_the_words_l_o_scores_and_keeps_their_logits(monkeypatch):
    """Under bfloat16 autocast on a CPU, forward gives L_o the real words in a row count rounded up to ROWS_MULTIPLE
    (oneDNN builds a kernel per shape); the logits are those of the unpadded words, and their gradients flow."""
    torch.manual_seed(0)
    dec = Decoder(30, 24, SMALL).eval()
    annotations, captions = torch.randn(2, 16, 24), torch.randint(4, 30, (2, 7))
    lengths = torch.tensor([7, 4])  # 6 + 3 = 9 real words, padded to 128 rows
    seen = []
    dec.L_o.register_forward_hook(lambda module, inputs, output: seen.append(inputs[0].shape[0]))
    with torch.autocast("cpu", dtype=torch.bfloat16):
        logits, _, _ = dec(annotations, captions, lengths)  # (2, 6, V)
        state, projected = dec.init_state(annotations), dec.attention.project(annotations)
        for t in range(6):
            logit, state, _ = dec.step(captions[:, t], state, annotations, projected)  # (2, V), unpadded
            torch.testing.assert_close(logits[0, t], logit[0])
            if t < 3:
                torch.testing.assert_close(logits[1, t], logit[1])
    assert seen[0] == ROWS_MULTIPLE and logits[1, 3:].abs().sum() == 0
    grads = {}
    for rows in (ROWS_MULTIPLE, 1):  # padded, then not: the padding's rows add nothing to any gradient
        monkeypatch.setattr(decoder_module, "ROWS_MULTIPLE", rows)
        dec.zero_grad()
        with torch.autocast("cpu", dtype=torch.bfloat16):
            logits, _, _ = dec(annotations, captions, lengths)
        (logits.float() * torch.linspace(-1, 1, logits.numel()).view_as(logits)).sum().backward()
        grads[rows] = {name: p.grad.clone() for name, p in dec.named_parameters()}
    assert seen[-1] == 9 and grads[1]["L_o.weight"].abs().sum() > 0
    for name, grad in grads[ROWS_MULTIPLE].items():
        torch.testing.assert_close(grad, grads[1][name], msg=name)


def test_teacher_forcing_draws_the_dropout_masks_stepping_draws():
    """forward looks E y up before its loop and applies L_o after it, but draws each step's dropout mask in the loop,
    in step order: in training mode it gives the logits of stepping by hand from the same random state."""
    dec = Decoder(30, 24, SMALL).train()
    annotations, captions = torch.randn(1, 16, 24), torch.tensor([[1, 7, 9, 4, 2]])
    torch.manual_seed(5)
    logits, _, _ = dec(annotations, captions, torch.tensor([5]))
    torch.manual_seed(5)
    state, projected = dec.init_state(annotations), dec.attention.project(annotations)
    for t in range(4):
        logit, state, _ = dec.step(captions[:, t], state, annotations, projected)
        torch.testing.assert_close(logit, logits[:, t])
    assert not torch.equal(dec(annotations, captions, torch.tensor([5]))[0], logits)  # other masks, other logits


def test_teacher_forcing_draws_hard_attentions_locations_and_masks_stepping_draws():
    """The same with hard attention sampling its locations, three captions of one image, ending at different steps."""
    dec = Decoder(30, 24, dataclasses.replace(SMALL, attention="hard")).train()
    annotations = torch.randn(1, 16, 24)  # (1, P, D)
    captions = torch.tensor([[1, 7, 9, 4, 2, 0], [1, 5, 2, 0, 0, 0], [1, 8, 8, 6, 9, 2]])  # (3, L), k = 3
    lengths = torch.tensor([5, 3, 6])
    torch.manual_seed(7)
    logits, alphas, locations = dec(annotations, captions, lengths, torch.zeros(3, dtype=torch.long), sample_locations=True)
    torch.manual_seed(7)
    h, c = dec.init_state(annotations)  # (1, n) each
    state, projected = (h.repeat_interleave(3, 0), c.repeat_interleave(3, 0)), dec.attention.project(annotations)
    for t in range(5):  # the image runs until its longest caption ends: all three rows, every step
        logit, state, alpha, location = dec.step_and_locate(captions[:, t], state, annotations, projected, sample=True)
        live = t < lengths - 1  # (3,)
        torch.testing.assert_close(logits[live, t], logit[live])
        torch.testing.assert_close(alphas[live, t], alpha[live])
        assert torch.equal(locations[live, t], location[live]) and not logits[~live, t].any()


def test_dropout_is_off_in_eval_and_on_in_train():
    torch.manual_seed(0)
    dec = Decoder(30, 24, SMALL)
    args = (torch.randn(2, 16, 24), torch.randint(4, 30, (2, 6)), torch.tensor([6, 6]))
    dec.eval()
    torch.testing.assert_close(dec(*args)[0], dec(*args)[0])
    dec.train()
    assert not torch.allclose(dec(*args)[0], dec(*args)[0])


def test_doubly_stochastic_penalty_is_eq_14():
    logits = torch.randn(2, 3, 10)
    captions = torch.tensor([[1, 5, 6, 2], [1, 7, 2, 0]])
    lengths = torch.tensor([4, 3])
    alphas = torch.softmax(torch.randn(2, 3, 5), dim=2)
    alphas[1, 2] = 0  # the second caption has ended
    terms = caption_loss(logits, captions, lengths, alphas, attention_lambda=0.5)
    expected_penalty = sum(((1 - alphas[n].sum(0)) ** 2).sum() for n in range(2)) / 2
    torch.testing.assert_close(terms.attention_penalty, expected_penalty)
    xent = torch.nn.functional.cross_entropy(torch.cat([logits[0], logits[1, :2]]), torch.tensor([5, 6, 2, 7, 2]))
    torch.testing.assert_close(terms.cross_entropy, xent)
    torch.testing.assert_close(terms.total, xent + 0.5 * expected_penalty)


def test_encoder_grid_shape():
    enc = Encoder(ModelConfig(encoder_channels=24, grid_size=8))
    assert enc(torch.randn(3, 3, 64, 64)).shape == (3, 64, 24)
    resnet = Encoder(ModelConfig(encoder="resnet18", grid_size=14, pretrained=False))
    assert resnet(torch.randn(1, 3, 224, 224)).shape == (1, 196, 512)


def test_cell_positions_append_each_cells_x_and_y():
    plain = Encoder(ModelConfig(encoder_channels=24, grid_size=4))
    placed = Encoder(ModelConfig(encoder_channels=24, grid_size=4, cell_positions=True))
    placed.stages.load_state_dict(plain.stages.state_dict())
    images = torch.randn(2, 3, 64, 64)
    a, b = plain.eval()(images), placed.eval()(images)  # (2, 16, 24), (2, 16, 26)
    assert placed.dim == 26 and b.shape == (2, 16, 26)
    torch.testing.assert_close(b[..., :24], a)  # what each cell holds is unchanged
    xy = b[0, :, 24:].view(4, 4, 2)  # (row, col, (x, y))
    assert torch.equal(xy[0, 0], torch.tensor([-1.0, -1.0])) and torch.equal(xy[3, 3], torch.tensor([1.0, 1.0]))
    assert (xy[:, 1:, 0] > xy[:, :-1, 0]).all() and (xy[1:, :, 1] > xy[:-1, :, 1]).all()  # x grows to the right, y down
    assert "cell_xy" in placed.state_dict()  # so a feature cache built without positions is not reused with them


def test_the_book_model_has_cell_positions_and_the_papers_does_not():
    from captionlib.config import Config, load_config

    assert Config().model.cell_positions and not ModelConfig().cell_positions
    assert not load_config("flickr8k_kaggle").model.cell_positions


def test_frozen_encoder_keeps_batchnorm_statistics_in_train_mode():
    enc = Encoder(ModelConfig(encoder="mobilenet_v2", grid_size=7, pretrained=True, fine_tune_blocks=0))
    assert enc.frozen and not any(p.requires_grad for p in enc.parameters())
    before = {k: v.clone() for k, v in enc.state_dict().items() if "running_mean" in k}
    enc.train()
    with torch.no_grad():
        enc(torch.randn(4, 3, 64, 64) * 3 + 1)
    after = {k: v for k, v in enc.state_dict().items() if "running_mean" in k}
    assert all(torch.equal(before[k], after[k]) for k in before)


def test_fine_tuned_blocks_train_and_the_rest_stay_frozen():
    # Needs the genuine MobileNetV2 ImageNet weights that `make setup` copies into torch's hub cache.
    enc = Encoder(ModelConfig(encoder="mobilenet_v2", pretrained=True, fine_tune_blocks=2))
    trains = [any(p.requires_grad for p in s.parameters()) for s in enc.stages]
    assert trains == [False] * 17 + [True] * 2
    enc.train()
    assert [s.training for s in enc.stages] == [False] * 17 + [True] * 2


def test_missing_pretrained_weights_name_the_file(tmp_path, monkeypatch):
    import pytest

    from captionlib.encoder import WeightsNotFoundError

    monkeypatch.setattr(torch.hub, "get_dir", lambda: str(tmp_path))
    with pytest.raises(WeightsNotFoundError, match=r"resnet50-11ad3fa6\.pth.*" + str(tmp_path)):
        Encoder(ModelConfig(encoder="resnet50", pretrained=True))


def test_model_forward_end_to_end():
    model = CaptionModel(ModelConfig(encoder_channels=24, embed_dim=16, attention_dim=12, decoder_dim=20), vocab_size=40)
    logits, alphas, _ = model(torch.randn(2, 3, 64, 64), torch.randint(4, 40, (4, 9)), torch.tensor([9, 5, 6, 9]), torch.tensor([0, 0, 1, 1]))
    assert logits.shape == (4, 8, 40) and alphas.shape == (4, 8, 64)
