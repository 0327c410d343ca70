"""The GPU paths, run where torch sees a CUDA GPU (skipped elsewhere, CI included; see the README's GPU section).

Each test pairs a GPU path with its CPU twin: the score line of eq. 4 as written (the CPU runs `score_cpu`), float16
autocast with gradient scaling, batched beam search, a checkpoint written on the GPU and read on a CPU, the command
line's --device cuda and the feature cache built from pinned batches. Not covered, for want of a second GPU: torchrun
with nccl and SyncBatchNorm (one process forms no process group); tests/test_distributed.py runs the gloo twin on a CPU.
"""

from __future__ import annotations

import json

import pytest
import torch
from conftest import run_cli, square_on_grey, tiny_config

from captionlib import beam_search, beam_search_one_image
from captionlib.captioner import Captioner
from captionlib.checkpoint import load_checkpoint, load_model
from captionlib.loss import caption_loss
from captionlib.train import LAST, train

pytestmark = pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA GPU (torch sees none)")
GPU = torch.device("cuda")


@pytest.fixture(scope="module")
def gpu_run(tmp_path_factory):
    """A tiny model trained on the GPU with train.amp (float16 autocast + GradScaler): its run folder."""
    out = tmp_path_factory.mktemp("gpu-run")
    train(tiny_config(device="cuda", amp=True, epochs=3), out, progress=False, log=lambda _: None)
    return out


def test_float16_training_on_the_gpu_learns_and_its_checkpoint_loads_on_a_cpu(gpu_run):
    last = load_checkpoint(gpu_run / LAST)  # map_location="cpu", weights_only
    losses = [epoch["loss"] for epoch in last["history"]]
    assert len(losses) == 3 and all(map(torch.isfinite, torch.tensor(losses)))
    assert losses[-1] < losses[0]
    assert last["scaler"]["scale"] > 0  # the GradScaler's state is saved, so a resumed run keeps its loss scale
    assert all(t.device.type == "cpu" for t in last["model"].values())
    model, _, _ = load_model(gpu_run / "best.pt")
    assert next(model.parameters()).device.type == "cpu"


def test_a_gpu_run_stopped_mid_epoch_resumes_from_its_last_epoch(gpu_run, tmp_path):
    """Stopped in epoch 3, the same command resumes at epoch 3 from the saved optimiser and loss scale."""
    steps = []

    def stop_in_epoch_3(_losses):
        steps.append(1)
        if len(steps) == 14:  # 6 steps an epoch: the 2nd step of epoch 3
            raise KeyboardInterrupt

    cfg = tiny_config(device="cuda", amp=True, epochs=3)
    with pytest.raises(KeyboardInterrupt):
        train(cfg, tmp_path, progress=False, log=lambda _: None, on_step=stop_in_epoch_3)
    assert len(load_checkpoint(tmp_path / LAST)["history"]) == 2
    logged = []
    train(cfg, tmp_path, progress=False, log=logged.append)
    assert any("resuming" in line and "epoch 3/3" in line for line in logged), logged
    resumed, straight = (load_checkpoint(run / LAST)["history"] for run in (tmp_path, gpu_run))
    # On a GPU, atomic adds in backward make every run differ in the last bits (train's docstring): close, not equal.
    for a, b in zip(resumed, straight, strict=True):
        assert a["epoch"] == b["epoch"] and a["loss"] == pytest.approx(b["loss"], rel=1e-2)


def test_the_gpu_computes_the_cpu_loss_and_gradients(gpu_run):
    """Eq. 4 as written (GPU) and score_cpu's 2 w^T σ(2x) − Σw (CPU), through the whole model, in float32."""
    from captionlib.data import collate_grouped
    from captionlib.evaluate import split_dataset
    from captionlib.shapes import generate_split

    cpu_model, vocab, cfg = load_model(gpu_run / "best.pt")
    cpu_model.eval()  # no dropout: the two devices see the same network
    gpu_model, _, _ = load_model(gpu_run / "best.pt", GPU)
    gpu_model.eval()
    dataset = split_dataset(generate_split("val", 8, cfg.shapes), vocab, cfg.model.image_size)
    images, captions, lengths, image_of_caption, _ = collate_grouped([dataset[i] for i in range(8)])
    results = {}
    for name, model in (("cpu", cpu_model), ("gpu", gpu_model)):
        device = next(model.parameters()).device
        inputs = [t.to(device) for t in (images, captions, lengths, image_of_caption)]
        logits, alphas, _ = model(*inputs)  # (N, T, V), (N, T, P)
        loss = caption_loss(logits, inputs[1], inputs[2], alphas, cfg.train.attention_lambda).total
        model.zero_grad()
        loss.backward()
        results[name] = (loss.item(), {n: p.grad.cpu() for n, p in model.named_parameters() if p.grad is not None})
    assert results["gpu"][0] == pytest.approx(results["cpu"][0], rel=1e-4)
    assert results["gpu"][1].keys() == results["cpu"][1].keys()
    for name, grad in results["cpu"][1].items():
        torch.testing.assert_close(results["gpu"][1][name], grad, rtol=1e-3, atol=1e-5, msg=name)


def test_batched_beam_search_on_the_gpu_gives_the_one_image_captions(gpu_run):
    captioner = Captioner.from_checkpoint(gpu_run / "best.pt", GPU)
    images = [square_on_grey((40 * i % 256, 200 - 20 * i, 90)) for i in range(12)]
    batch = torch.stack([captioner.transform(im) for im in images]).to(GPU)  # (B, 3, S, S)
    with torch.no_grad():
        annotations = captioner.model.encoder(batch)  # (B, P, D)
        batched = beam_search(captioner.model.decoder, annotations, 5, 12)
        single = [beam_search_one_image(captioner.model.decoder, annotations[i], 5, 12) for i in range(12)]
    assert [c.tokens for c in batched] == [c.tokens for c in single]
    for b, s in zip(batched, single):
        assert b.score == pytest.approx(s.score, abs=1e-4)
    # And the same captions as the CPU decodes from the same checkpoint.
    on_cpu = Captioner.from_checkpoint(gpu_run / "best.pt").caption(images, beam_size=5, max_len=12)
    assert [c.tokens for c in on_cpu] == [c.tokens for c in batched]


@pytest.mark.slow
def test_evaluate_and_caption_with_device_cuda_match_the_cpu(gpu_run, tmp_path):
    checkpoint = gpu_run / "best.pt"
    scores = {}
    for device in ("cpu", "cuda"):
        done = run_cli("evaluate", "--checkpoint", checkpoint, "--split", "val", "--device", device, "--json")
        assert done.returncode == 0, done.stderr[-2000:]
        scores[device] = json.loads(done.stdout)
    assert scores["cuda"]["images"] == scores["cpu"]["images"] == 16
    for key, value in scores["cpu"].items():
        assert scores["cuda"][key] == (pytest.approx(value, abs=1e-6) if isinstance(value, float) else value), key
    square_on_grey().save(tmp_path / "square.png")
    captions = {}
    for device in ("cpu", "cuda"):
        done = run_cli("caption", tmp_path / "square.png", "--checkpoint", checkpoint, "--device", device, "--json")
        assert done.returncode == 0, done.stderr[-2000:]
        captions[device] = json.loads(done.stdout)["caption"]
    assert captions["cuda"] == captions["cpu"]


def test_feature_cache_built_on_the_gpu_equals_the_encoder_to_fp16_rounding(tmp_path):
    from captionlib.evaluate import split_dataset
    from captionlib.features import feature_cache
    from captionlib.model import CaptionModel
    from captionlib.shapes import generate_split
    from captionlib.vocab import Vocabulary

    cfg = tiny_config()
    cfg.model.encoder, cfg.model.pretrained, cfg.model.grid_size = "mobilenet_v2", True, 2
    split = generate_split("train", 24, cfg.shapes)
    vocab = Vocabulary.build(c for caps in split.captions for c in caps)
    model = CaptionModel(cfg.model, len(vocab), load_weights=False).eval()  # frozen, random weights: no ImageNet file needed
    dataset = split_dataset(split, vocab, cfg.model.image_size)
    with torch.no_grad():
        on_cpu = model.encoder(torch.stack([dataset[i][0] for i in range(24)]))  # (N, P, D)
    encoder = model.encoder.to(GPU)
    cache = feature_cache(encoder, dataset, tmp_path, cfg.model.image_size, cfg.model.grid_size, num_workers=2)
    cached = torch.stack([cache[i][0] for i in range(24)])  # (N, P, D)
    torch.testing.assert_close(cached, on_cpu.half().float(), rtol=5e-3, atol=2e-3)
