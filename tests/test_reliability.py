"""A loss, gradient or weight that goes non-finite stops training cleanly; a damaged feature cache is rebuilt, not used."""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import subprocess
import sys

import numpy as np
import pytest
import torch
from conftest import tiny_config
from fixtures import write_image

import captionlib.train as training
from captionlib.checkpoint import load_checkpoint
from captionlib.cli import main
from captionlib.train import BEST, LAST


def digest(path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def assert_finite_checkpoints(out) -> None:
    for name in (LAST, BEST):
        model = load_checkpoint(out / name)["model"]
        assert all(t.isfinite().all() for t in model.values() if t.is_floating_point()), name


def lines(text: str) -> list[str]:
    return text.strip().splitlines()


# ---------- a non-finite loss, gradient or weight, with no feature cache at all ----------


def small_config(epochs: int):
    """tiny_config on 32 training and 8 validation images: two steps of 16 images an epoch."""
    cfg = tiny_config(epochs=epochs, device="cpu")  # a GPU's float16 GradScaler skips non-finite steps by design
    cfg.shapes.n_train, cfg.shapes.n_val = 32, 8
    return cfg


@pytest.fixture
def watched_saves(monkeypatch):
    """Record the bytes of every checkpoint train() writes: {path: [sha256 after each write]}."""
    written = {}
    real = training.save_checkpoint

    def save(payload, path):
        real(payload, path)
        written.setdefault(str(path), []).append(digest(path))

    monkeypatch.setattr(training, "save_checkpoint", save)
    return written


def assert_untouched_since_epoch_1(out, written) -> None:
    """Epoch 1 wrote last.pt and best.pt once each; both still hold those bytes, and finite weights."""
    assert written == {str(out / LAST): [digest(out / LAST)], str(out / BEST): [digest(out / BEST)]}
    assert load_checkpoint(out / LAST)["epoch"] == 0
    assert_finite_checkpoints(out)
    assert not any(p.name.endswith(".tmp") for p in out.iterdir())


def test_a_poisoned_batch_stops_the_cli_at_that_step(tmp_path, monkeypatch, capsys, watched_saves):
    """NaN pixels in batch 2 of epoch 2 (shapes CNN, trained, so no cache): exit 1, one line, epoch 1's checkpoints kept."""
    real, batches = training.collate_grouped, []

    def poisoned(batch):
        images, *rest = real(batch)
        batches.append(len(images))
        if len(batches) == 2 + 2:  # epoch 2, step 2
            images = torch.full_like(images, float("nan"))  # (B, 3, S, S)
        return images, *rest

    monkeypatch.setattr(training, "collate_grouped", poisoned)
    (tmp_path / "cfg.json").write_text(json.dumps(small_config(epochs=2).to_dict()))
    out = tmp_path / "run"
    assert main(["train", "--config", str(tmp_path / "cfg.json"), "--out", str(out), "--no-progress"]) == 1
    captured = capsys.readouterr()
    assert lines(captured.err) == [
        f"captionlib: error: epoch 2, step 2/2: the cross-entropy is nan and the attention penalty is nan; "
        f"stopped before updating the weights, {out / LAST} and {BEST} are left as epoch 1 wrote them"
    ]
    assert "epoch 1/2" in captured.out and "epoch 2/2" not in captured.out
    assert_untouched_since_epoch_1(out, watched_saves)


def test_a_non_finite_attention_penalty_alone_is_named(tmp_path, monkeypatch):
    """Only the penalty goes bad (with λ = 0, which still makes 0 · inf = NaN): it alone is named; nothing is written."""
    real, calls = training.caption_loss, []

    def poisoned(*args, **kwargs):
        terms = real(*args, **kwargs)
        calls.append(1)
        if len(calls) == 2:
            terms.attention_penalty = terms.attention_penalty + float("inf")
        return terms

    monkeypatch.setattr(training, "caption_loss", poisoned)
    out = tmp_path / "run"
    with pytest.raises(training.NonFiniteError) as caught:
        training.train(small_config(epochs=1), out, progress=False, log=lambda _: None)
    assert str(caught.value) == (
        f"epoch 1, step 2/2: the attention penalty is inf; stopped before updating the weights, no checkpoint was written to {out}"
    )
    assert list(out.iterdir()) == []


def test_a_non_finite_gradient_stops_before_the_update(tmp_path, monkeypatch, watched_saves):
    real, calls = torch.nn.utils.clip_grad_norm_, []

    def clip(parameters, max_norm):
        norm = real(parameters, max_norm)
        calls.append(1)
        return torch.tensor(float("nan")) if len(calls) == 2 + 1 else norm

    monkeypatch.setattr(torch.nn.utils, "clip_grad_norm_", clip)
    out = tmp_path / "run"
    with pytest.raises(training.NonFiniteError, match=r"^epoch 2, step 1/2: the gradient is not finite \(norm nan\) though the loss, [0-9.]+, is; stopped before updating the weights"):
        training.train(small_config(epochs=2), out, progress=False, log=lambda _: None)
    assert_untouched_since_epoch_1(out, watched_saves)


def test_non_finite_weights_are_never_written(tmp_path, monkeypatch, watched_saves):
    """The check just before writing: a weight that went bad after the last step (here, in validation) stops the run."""
    real = training.evaluate

    def evaluate(model, *args, **kwargs):
        result = real(model, *args, **kwargs)
        if watched_saves:  # epoch 2: epoch 1 has written its checkpoints
            with torch.no_grad():
                model.decoder.init_h.weight[0, 0] = float("inf")
        return result

    monkeypatch.setattr(training, "evaluate", evaluate)
    out = tmp_path / "run"
    with pytest.raises(training.NonFiniteError) as caught:
        training.train(small_config(epochs=2), out, progress=False, log=lambda _: None)
    assert str(caught.value) == (
        f"epoch 2: decoder.init_h.weight is not finite after training; stopped before writing, "
        f"{out / LAST} and {BEST} are left as epoch 1 wrote them"
    )
    assert_untouched_since_epoch_1(out, watched_saves)


POISON_RANK_1 = """
import os, sys, time
from pathlib import Path
import captionlib.train as training

real, calls = training.caption_loss, []

def poisoned(*args, **kwargs):
    terms = real(*args, **kwargs)
    calls.append(1)
    if len(calls) == 2 and os.environ["RANK"] == "1":  # rank 0's own loss stays finite: it must stop all the same
        terms.cross_entropy = terms.cross_entropy * float("nan")
    return terms

training.caption_loss = poisoned
from captionlib.cli import main
code = main(sys.argv[1:])
Path(os.environ["EXITS"], os.environ["RANK"]).write_text(str(code))  # each rank got here by itself
if os.environ["RANK"] == "0":
    time.sleep(3)  # torchrun ends the others once one process exits: rank 1 must not be cut short by that
sys.exit(code)
"""


@pytest.mark.slow
def test_under_torchrun_every_rank_stops_at_the_same_step(tmp_path):
    """A NaN on rank 1 alone: both processes stop at that step, none hangs in a collective, rank 0 alone says why."""
    (tmp_path / "cfg.json").write_text(json.dumps(small_config(epochs=1).to_dict()))
    (tmp_path / "poison.py").write_text(POISON_RANK_1)
    out = tmp_path / "run"
    torchrun = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node", "2", str(tmp_path / "poison.py")]
    args = ["train", "--config", str(tmp_path / "cfg.json"), "--out", str(out), "--no-progress"]
    env = {**os.environ, "OMP_NUM_THREADS": "1", "EXITS": str(tmp_path)}
    run = subprocess.run([*torchrun, *args], env=env, capture_output=True, text=True, timeout=240)
    assert run.returncode != 0
    assert [(tmp_path / rank).read_text() for rank in "01"] == ["1", "1"], run.stderr[-3000:]  # both stopped on their own
    errors = [line for line in lines(run.stderr) if line.startswith("captionlib: error:")]
    expected = f"epoch 1, step 2/2: the cross-entropy is nan; stopped before updating the weights, no checkpoint was written to {out}"
    assert errors == [f"captionlib: error: {expected}"], run.stderr[-3000:]
    assert not list(out.glob("*.pt"))


# ---------- the feature cache of a frozen pretrained encoder ----------


def cached_config():
    """Frozen pretrained MobileNetV2 (weights installed by `make setup`) on 32 tiny images: a 2x2 grid of 1280 numbers."""
    cfg = tiny_config(epochs=1)
    cfg.model.encoder, cfg.model.pretrained, cfg.model.grid_size = "mobilenet_v2", True, 2
    cfg.shapes.n_train, cfg.shapes.n_val = 32, 8
    return cfg


@pytest.fixture(scope="module")
def built_cache(tmp_path_factory):
    """A CAPTIONLIB_CACHE folder holding the feature cache of cached_config(), built once by a training run."""
    root = tmp_path_factory.mktemp("cache")
    saved = os.environ.get("CAPTIONLIB_CACHE")
    os.environ["CAPTIONLIB_CACHE"] = str(root)
    try:
        training.train(cached_config(), tmp_path_factory.mktemp("first-run"), progress=False, log=lambda _: None)
    finally:
        os.environ.pop("CAPTIONLIB_CACHE") if saved is None else os.environ.update(CAPTIONLIB_CACHE=saved)
    return root


@pytest.fixture
def cache(tmp_path, monkeypatch, built_cache):
    """This test's own copy of the built cache: (the .f16 file, its metadata as a dict)."""
    root = tmp_path / "cache"
    shutil.copytree(built_cache, root)
    monkeypatch.setenv("CAPTIONLIB_CACHE", str(root))
    (path,) = (root / "features").glob("*.f16")
    return path, json.loads(path.with_suffix(".json").read_text())


def train_cli(tmp_path, capsys) -> tuple[int, list[str], list[str]]:
    """`captionlib train` with cached_config() into a new --out: (exit code, stdout lines, stderr lines)."""
    (tmp_path / "cfg.json").write_text(json.dumps(cached_config().to_dict()))
    code = main(["train", "--config", str(tmp_path / "cfg.json"), "--out", str(tmp_path / "run"), "--no-progress"])
    captured = capsys.readouterr()
    return code, lines(captured.out), lines(captured.err)


def cache_lines(out: list[str]) -> list[str]:
    return [line for line in out if line.startswith("feature cache")]


def assert_rebuilt(path, meta) -> None:
    """The file is whole again: its recorded size and checksum, finite, and equal to the first build."""
    rebuilt = json.loads(path.with_suffix(".json").read_text())
    assert rebuilt == meta  # the same encoder and images give the same bytes, hence the same checksum
    assert digest(path) == meta["sha256"]
    assert np.isfinite(np.fromfile(path, dtype=np.float16)).all()


def test_an_intact_cache_is_reused_silently(tmp_path, capsys, cache):
    path, meta = cache
    before = path.stat().st_mtime_ns
    code, out, err = train_cli(tmp_path, capsys)
    assert code == 0 and err == [] and cache_lines(out) == []
    assert path.stat().st_mtime_ns == before


def test_a_cache_overwritten_with_nan_is_caught_by_its_checksum_and_rebuilt(tmp_path, capsys, cache):
    """The same size and the same metadata, every number NaN: the issue's first case."""
    path, meta = cache
    np.full(path.stat().st_size // 2, np.nan, dtype=np.float16).tofile(path)
    code, out, err = train_cli(tmp_path, capsys)
    assert code == 0 and err == []
    assert cache_lines(out) == [f"feature cache {path}: its bytes do not match the SHA-256 recorded in its metadata; rebuilding it"]
    assert_rebuilt(path, meta)
    assert_finite_checkpoints(tmp_path / "run")


def test_a_truncated_cache_is_rebuilt_and_training_goes_on(tmp_path, capsys, cache):
    """Cut to 1000 bytes: the issue's second case, which used to stop with 'mmap length is greater than file size'."""
    path, meta = cache
    size = path.stat().st_size
    with open(path, "r+b") as f:
        f.truncate(1000)
    code, out, err = train_cli(tmp_path, capsys)
    assert code == 0 and err == []
    assert cache_lines(out) == [
        f"feature cache {path}: the file is 1000 bytes but its metadata says {size} (shape {meta['shape']}); rebuilding it"
    ]
    assert any(line.startswith("epoch 1/1") for line in out)
    assert_rebuilt(path, meta)
    assert_finite_checkpoints(tmp_path / "run")


def test_a_single_changed_number_is_a_checksum_mismatch(tmp_path, capsys, cache):
    """One finite float16 changed in place (a bit flip on disk): nothing but the checksum can tell."""
    path, meta = cache
    array = np.memmap(path, dtype=np.float16, mode="r+")
    array[len(array) // 2] = array[len(array) // 2] + np.float16(1)
    array.flush()
    del array
    code, out, err = train_cli(tmp_path, capsys)
    assert code == 0 and err == []
    assert cache_lines(out) == [f"feature cache {path}: its bytes do not match the SHA-256 recorded in its metadata; rebuilding it"]
    assert_rebuilt(path, meta)


@pytest.mark.parametrize(
    "damage, said",
    [
        (lambda meta: {k: v for k, v in meta.items() if k != "sha256"}, "its metadata records no checksum (written by an older captionlib)"),
        (lambda meta: {**meta, "sha256": "0" * 64}, "its bytes do not match the SHA-256 recorded in its metadata"),
        (lambda meta: "{not json", "its metadata {name} cannot be read (JSONDecodeError)"),
    ],
    ids=["no-checksum", "other-checksum", "garbled"],
)
def test_damaged_metadata_is_rebuilt(tmp_path, cache, damage, said):
    from captionlib.features import feature_cache

    path, meta = cache
    cfg = cached_config()
    damaged = damage(meta)
    path.with_suffix(".json").write_text(damaged if isinstance(damaged, str) else json.dumps(damaged))
    model, dataset = model_and_dataset(cfg)
    logged = []
    feature_cache(model.encoder, dataset, path.parent, cfg.model.image_size, cfg.model.grid_size, log=logged.append)
    assert logged == [f"feature cache {path}: {said.format(name=path.with_suffix('.json').name)}; rebuilding it"]
    assert_rebuilt(path, meta)


def model_and_dataset(cfg):
    """The frozen encoder's model and the training set that train() would cache for cfg."""
    from captionlib.evaluate import split_dataset
    from captionlib.model import CaptionModel
    from captionlib.sources import load_splits
    from captionlib.vocab import Vocabulary

    split = load_splits(cfg)["train"]
    vocab = Vocabulary.build(c for caps in split.captions for c in caps)
    return CaptionModel(cfg.model, len(vocab)), split_dataset(split, vocab, cfg.model.image_size)


def test_a_cache_that_cannot_be_mapped_is_rebuilt(tmp_path, monkeypatch, cache):
    import captionlib.features as features

    path, meta = cache
    cfg = cached_config()
    model, dataset = model_and_dataset(cfg)
    real, opened = features.FeatureCache.__init__, []

    def refuses_once(self, *args):
        opened.append(1)
        if len(opened) == 1:
            raise OSError(12, "Cannot allocate memory")
        real(self, *args)

    monkeypatch.setattr(features.FeatureCache, "__init__", refuses_once)
    logged = []
    features.feature_cache(model.encoder, dataset, path.parent, cfg.model.image_size, cfg.model.grid_size, log=logged.append)
    assert logged == [f"feature cache {path}: the file cannot be mapped ([Errno 12] Cannot allocate memory); rebuilding it"]
    assert_rebuilt(path, meta)


@pytest.mark.parametrize("value, said", [(float("nan"), "the encoder gives nan for it"), (1e6, "a feature of 1e+06 is past float16's range")])
def test_features_that_are_not_finite_are_refused_when_the_cache_is_built(tmp_path, value, said):
    """One bad image among files: a one-line error naming it, and no cache left behind (float16 would make 1e6 inf)."""
    from captionlib.data import ImageCaptionsDataset, ImageRecord, image_transform
    from captionlib.features import build_feature_cache
    from captionlib.vocab import Vocabulary

    paths = [write_image(tmp_path / "Images" / f"{i}.png", i) for i in range(6)]
    captions = [["a red square"]] * len(paths)
    records = [ImageRecord(path, caps) for path, caps in zip(paths, captions)]
    dataset = ImageCaptionsDataset(records, captions, Vocabulary.build(["a red square"]), image_transform(64))
    encoder = model_and_dataset(cached_config())[0].encoder
    real = encoder.forward

    def poisons_image_4(images):
        features = real(images)  # (6, P, D): one batch
        features[4, 0, 0] = value
        return features

    encoder.forward = poisons_image_4
    (tmp_path / "cache").mkdir()
    with pytest.raises(ValueError) as caught:
        build_feature_cache(encoder, dataset, tmp_path / "cache" / "x.f16", {}, batch_size=8)
    assert "\n" not in str(caught.value) and str(caught.value).startswith(f"feature cache: {paths[4]}: {said}")
    assert list((tmp_path / "cache").iterdir()) == []
