"""torchrun + DistributedDataParallel on the CPU (gloo): 2 processes train like 1 with the same global batch."""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys

import pytest
import torch
from conftest import tiny_config

from captionlib.checkpoint import load_checkpoint
from captionlib.train import LAST

# Losses agree to float32 summation-order noise; weights to the same after a few dozen Adam steps.
LOSS_RTOL, WEIGHT_ATOL = 1e-4, 1e-4


def ddp_config():
    """A frozen pretrained encoder and no dropout: the only randomness left is shared by both runs.

    (A trained BatchNorm encoder would differ: each process normalises over its half of the batch, and
    SyncBatchNorm, which would fix that, runs on GPUs only. Dropout masks differ per process by design.)
    """
    cfg = tiny_config(epochs=2, batch_images=16, feature_cache=False, amp=False, device="cpu")  # gloo; float32: bfloat16 rounds each half-batch its own way
    cfg.model.encoder, cfg.model.pretrained, cfg.model.grid_size, cfg.model.dropout = "mobilenet_v2", True, 2, 0.0
    cfg.shapes.n_train = 64
    return cfg


@pytest.mark.slow
def test_two_gloo_processes_match_one_process(tmp_path):
    (tmp_path / "cfg.json").write_text(json.dumps(ddp_config().to_dict()))
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    args = ["-m", "captionlib", "train", "--config", str(tmp_path / "cfg.json"), "--no-progress", "--out"]
    subprocess.run([sys.executable, *args, str(tmp_path / "one")], check=True, env=env, capture_output=True)
    torchrun = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node", "2"]
    two = subprocess.run([*torchrun, *args, str(tmp_path / "two")], env=env, capture_output=True, text=True)
    assert two.returncode == 0, two.stderr[-3000:]
    assert "2 process(es) on cpu" in two.stdout and two.stdout.count("epoch 2/2") == 1  # rank 0 alone logs

    one, two = load_checkpoint(tmp_path / "one" / LAST), load_checkpoint(tmp_path / "two" / LAST)
    for a, b in zip(one["history"], two["history"], strict=True):
        for key in ("loss", "cross_entropy", "attention_penalty"):
            assert b[key] == pytest.approx(a[key], rel=LOSS_RTOL), key
    for name, tensor in one["model"].items():
        torch.testing.assert_close(two["model"][name], tensor, atol=WEIGHT_ATOL, rtol=0, msg=name)
    assert sorted(p.name for p in (tmp_path / "two").iterdir() if p.suffix == ".pt") == ["best.pt", "last.pt"]


def test_feature_cache_equals_the_encoder_to_fp16_rounding(tmp_path, monkeypatch):
    from captionlib.evaluate import split_dataset
    from captionlib.features import feature_cache
    from captionlib.model import CaptionModel
    from captionlib.shapes import generate_split
    from captionlib.vocab import Vocabulary

    cfg = ddp_config()
    split = generate_split("train", 24, cfg.shapes)
    vocab = Vocabulary.build(c for caps in split.captions for c in caps)
    model = CaptionModel(cfg.model, len(vocab)).eval()
    dataset = split_dataset(split, vocab, cfg.model.image_size)
    cache = feature_cache(model.encoder, dataset, tmp_path, cfg.model.image_size, cfg.model.grid_size)
    with torch.no_grad():
        live = model.encoder(torch.stack([dataset[i][0] for i in range(24)]))  # (N, P, D)
    cached = torch.stack([cache[i][0] for i in range(24)])
    assert cached.shape == live.shape and cached.dtype == torch.float32
    torch.testing.assert_close(cached, live.half().float(), rtol=2e-3, atol=1e-3)
    files = sorted(p.name for p in tmp_path.iterdir())
    assert len(files) == 2 and not any(f.endswith(".part") for f in files)
    # A second request with the same key reuses the file; other images make a new one.
    mtime = (tmp_path / files[0]).stat().st_mtime_ns
    feature_cache(model.encoder, dataset, tmp_path, cfg.model.image_size, cfg.model.grid_size)
    assert (tmp_path / files[0]).stat().st_mtime_ns == mtime
    other = split_dataset(generate_split("val", 24, cfg.shapes), vocab, cfg.model.image_size)
    feature_cache(model.encoder, other, tmp_path, cfg.model.image_size, cfg.model.grid_size)
    assert len(list(tmp_path.iterdir())) == 4


def test_feature_cache_refuses_a_trained_encoder(tmp_path):
    from captionlib.features import feature_cache
    from captionlib.model import CaptionModel

    model = CaptionModel(tiny_config().model, 10)
    with pytest.raises(ValueError, match="encoder is being trained"):
        feature_cache(model.encoder, None, tmp_path, 64, 8)


def test_feature_cache_interrupted_or_empty_leaves_no_file(tmp_path):
    """A build that fails half way leaves neither a partial array nor its metadata; no images is a clear error."""
    from captionlib.evaluate import split_dataset
    from captionlib.features import build_feature_cache
    from captionlib.model import CaptionModel
    from captionlib.shapes import generate_split
    from captionlib.vocab import Vocabulary

    cfg = ddp_config()
    split = generate_split("train", 24, cfg.shapes)
    vocab = Vocabulary.build(c for caps in split.captions for c in caps)
    encoder = CaptionModel(cfg.model, len(vocab)).encoder
    batches = []

    def fails_on_the_second_batch(images):
        batches.append(len(images))
        if len(batches) == 2:
            raise KeyboardInterrupt
        return torch.zeros(len(images), 64, encoder.dim)

    dataset = split_dataset(split, vocab, cfg.model.image_size)
    encoder.forward = fails_on_the_second_batch
    with pytest.raises(KeyboardInterrupt):
        build_feature_cache(encoder, dataset, tmp_path / "cache.f16", {}, batch_size=8)
    assert batches == [8, 8] and list(tmp_path.iterdir()) == []
    with pytest.raises(ValueError, match="no images"):
        build_feature_cache(encoder, split_dataset(generate_split("val", 0, cfg.shapes), vocab, 64), tmp_path / "e.f16", {})


@pytest.mark.slow
def test_evaluate_under_torchrun_shares_the_decoding_and_scores_like_one_process(tiny_checkpoint):
    """3 processes decode 6, 5 and 5 of the 16 validation images; rank 0 prints the scores of all 16, in order."""
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    args = ["-m", "captionlib", "evaluate", "--checkpoint", str(tiny_checkpoint), "--split", "val", "--device", "cpu", "--json"]
    one = subprocess.run([sys.executable, *args], check=True, env=env, capture_output=True, text=True)
    torchrun = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node", "3"]
    three = subprocess.run([*torchrun, *args], env=env, capture_output=True, text=True)
    assert three.returncode == 0, three.stderr[-3000:]
    (line,) = three.stdout.splitlines()  # rank 0 alone reports
    # The same captions matched to the same references: a caption gathered into the wrong place would change
    # BLEU and grounding. Batches of other sizes may round the last float bit differently, hence approx.
    expected, result = json.loads(one.stdout), json.loads(line)
    assert expected["images"] == 16 and result.keys() == expected.keys()
    for key, value in expected.items():
        assert result[key] == (pytest.approx(value, rel=1e-9) if isinstance(value, float) else value), key


def test_more_processes_than_gpus_is_one_clear_error(monkeypatch):
    """torchrun --nproc_per_node 2 on a one-GPU machine: process 1 is told why, not CUDA's 'invalid device ordinal'."""
    from captionlib.distributed import resolve_device

    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    monkeypatch.setattr(torch.cuda, "device_count", lambda: 1)
    assert resolve_device("auto", local_rank=0) == torch.device("cuda", 0)
    expected = "train.device: process 1 has no GPU of its own (torch sees 1); start one process per GPU (--nproc_per_node) or choose cpu for train.device"
    with pytest.raises(ValueError, match=re.escape(expected)):
        resolve_device("auto", local_rank=1)
    with pytest.raises(ValueError, match=re.escape("or choose cpu for --device")):  # evaluate under torchrun names its option
        resolve_device("cuda", local_rank=1, setting="--device")
