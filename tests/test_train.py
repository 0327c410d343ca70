"""Training: determinism, checkpoints, and resuming after a SIGKILL to exactly the same weights."""

from __future__ import annotations

import io
import json
import os
import signal
import subprocess
import sys
import time

import pytest
import torch
from conftest import tiny_config

from captionlib import CaptionModel, Vocabulary
from captionlib.checkpoint import load_checkpoint, load_model, save_checkpoint
from captionlib.train import BEST, LAST, _resume, autocast_dtype, build_optimizer, train


def states_equal(a: dict, b: dict) -> bool:
    """Two state dicts with identical keys and bit-identical tensors."""
    return a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)


def test_same_seed_same_weights_other_seed_other_weights(tmp_path):
    quiet = {"progress": False, "log": lambda _: None}
    a = load_checkpoint(train(tiny_config(epochs=1), tmp_path / "a", **quiet))["model"]
    b = load_checkpoint(train(tiny_config(epochs=1), tmp_path / "b", **quiet))["model"]
    c = load_checkpoint(train(tiny_config(epochs=1, seed=1), tmp_path / "c", **quiet))["model"]
    assert states_equal(a, b)
    assert not states_equal(a, c)


@pytest.mark.parametrize(("amp", "native_bf16", "device", "expected"), [
    (True, True, "cpu", torch.bfloat16),
    (True, False, "cpu", None),  # emulated bfloat16 would be slower than float32
    (False, True, "cpu", None),
    (True, False, "cuda", torch.float16),
    (False, False, "cuda", None),
])  # fmt: skip
def test_autocast_dtype_follows_train_amp_and_the_hardware(monkeypatch, amp, native_bf16, device, expected):
    monkeypatch.delenv("CAPTIONLIB_FLOAT32", raising=False)
    monkeypatch.setattr(torch.cpu, "_is_avx512_bf16_supported", lambda: native_bf16)
    assert autocast_dtype(tiny_config(amp=amp), torch.device(device)) is expected


@pytest.mark.parametrize(("value", "expected"), [("1", None), ("0", torch.bfloat16), ("", torch.bfloat16)])
def test_captionlib_float32_forces_float32_on_a_cpu_with_bfloat16(monkeypatch, value, expected):
    monkeypatch.setattr(torch.cpu, "_is_avx512_bf16_supported", lambda: True)
    monkeypatch.setenv("CAPTIONLIB_FLOAT32", value)
    assert autocast_dtype(tiny_config(amp=True), torch.device("cpu")) is expected
    assert autocast_dtype(tiny_config(amp=True), torch.device("cuda")) is torch.float16  # a GPU keeps float16


def test_captionlib_float32_with_another_value_is_one_clear_error(monkeypatch):
    monkeypatch.setenv("CAPTIONLIB_FLOAT32", "yes")
    with pytest.raises(ValueError, match="CAPTIONLIB_FLOAT32 = 'yes'"):
        autocast_dtype(tiny_config(amp=True), torch.device("cpu"))


def test_a_torch_without_the_bfloat16_check_trains_in_float32(monkeypatch):
    monkeypatch.delattr(torch.cpu, "_is_avx512_bf16_supported", raising=False)  # a private helper, not in every torch
    assert autocast_dtype(tiny_config(amp=True), torch.device("cpu")) is None


@pytest.mark.parametrize("amp", [True, False])
def test_training_runs_the_forward_in_bfloat16_on_a_cpu_that_has_it(tmp_path, monkeypatch, amp):
    monkeypatch.delenv("CAPTIONLIB_FLOAT32", raising=False)
    monkeypatch.setattr(torch.cpu, "_is_avx512_bf16_supported", lambda: True)
    seen = set()  # dtypes of the output layer's results while training
    original = CaptionModel.__init__

    def init(self, *args, **kwargs):
        original(self, *args, **kwargs)
        self.decoder.L_o.register_forward_hook(lambda layer, _, out: seen.add(out.dtype) if layer.training else None)

    monkeypatch.setattr(CaptionModel, "__init__", init)
    train(tiny_config(epochs=1, amp=amp, device="cpu"), tmp_path, progress=False, log=lambda _: None)
    assert seen == {torch.bfloat16 if amp else torch.float32}


def test_checkpoint_holds_everything_and_loads_with_weights_only(tiny_checkpoint):
    last = load_checkpoint(tiny_checkpoint.parent / LAST)
    assert {"config", "vocab", "model", "optimizer", "scheduler", "scaler", "epoch", "best_bleu4", "history"} <= last.keys()
    assert last["epoch"] == 1 and len(last["history"]) == 2
    assert all("val_bleu4" in h and "cross_entropy" in h and "attention_penalty" in h for h in last["history"])
    model, vocab, cfg = load_model(tiny_checkpoint)
    assert not model.training and len(vocab) == model.decoder.vocab_size
    assert not any(p.name.endswith(".tmp") for p in tiny_checkpoint.parent.iterdir())  # atomic writes left nothing


def test_resuming_restores_the_mixed_precision_loss_scale(tiny_checkpoint, tmp_path):
    """A GPU run's GradScaler state goes into last.pt and comes back, so AMP does not restart at scale 65536."""
    last = load_checkpoint(tiny_checkpoint.parent / LAST)
    assert last["scaler"] == {}  # this run was on a CPU: no GradScaler (bfloat16 needs none)
    reached = {**torch.amp.GradScaler("cpu").state_dict(), "scale": 1024.0, "_growth_tracker": 7}
    save_checkpoint({**last, "scaler": reached}, tmp_path / LAST)
    cfg = tiny_config()
    model = CaptionModel(cfg.model, len(last["vocab"]))
    optimizer, scheduler = build_optimizer(model, cfg, steps_per_epoch=6)
    scaler = torch.amp.GradScaler("cpu", enabled=True)  # stands in for a GPU's: the state is the same
    start, _, _ = _resume(tmp_path, cfg, Vocabulary(last["vocab"]), model, optimizer, scheduler, scaler)
    assert start == last["epoch"] + 1 and scaler.state_dict() == reached


@pytest.mark.parametrize("select_on, kept", [("bleu4", 2), ("last", 3)])
def test_best_pt_keeps_the_epoch_select_on_picks(tmp_path, monkeypatch, select_on, kept):
    """Validation BLEU-4 scripted to peak at epoch 2 of 3: "bleu4" keeps epoch 2 (the paper's early stopping), "last" 3."""
    scripted = iter([0.5, 0.9, 0.7])
    monkeypatch.setattr("captionlib.train.evaluate", lambda *args, **kwargs: {"bleu4": next(scripted)})
    best = train(tiny_config(epochs=3, select_on=select_on), tmp_path, progress=False, log=lambda _: None)
    assert load_checkpoint(best)["epoch"] + 1 == kept and load_checkpoint(best)["best_bleu4"] == [0.5, 0.9, 0.7][kept - 1]
    assert load_checkpoint(tmp_path / LAST)["best_bleu4"] == 0.9  # last.pt keeps the best score seen, either way


def test_rerunning_a_finished_run_changes_nothing(tiny_checkpoint, capsys):
    before = (tiny_checkpoint.parent / LAST).stat().st_mtime_ns
    train(tiny_config(), tiny_checkpoint.parent, progress=False)
    assert "already trained" in capsys.readouterr().out
    assert (tiny_checkpoint.parent / LAST).stat().st_mtime_ns == before


@pytest.mark.slow
def test_sigkill_mid_epoch_then_rerun_gives_identical_weights(tmp_path):
    cfg = tiny_config(epochs=3)
    cfg.shapes.n_train = 320  # long enough epochs (a couple of seconds) to be killed inside one
    (tmp_path / "cfg.json").write_text(json.dumps(cfg.to_dict()))
    env = {**os.environ, "PYTHONUNBUFFERED": "1"}

    def command(out: str) -> list[str]:
        return [sys.executable, "-m", "captionlib", "train", "--config", str(tmp_path / "cfg.json"), "--out", str(tmp_path / out), "--no-progress"]

    subprocess.run(command("whole"), check=True, env=env, capture_output=True)

    proc = subprocess.Popen(command("killed"), env=env, stdout=subprocess.PIPE, text=True)
    for line in proc.stdout:  # time the first epoch from its first line to its last, then kill a quarter into the second
        if "training images" in line:  # logged just before epoch 1 starts
            began = time.perf_counter()
        if line.startswith("epoch 1/3"):
            time.sleep((time.perf_counter() - began) / 4)  # a quarter: the second epoch may run faster than the first
            proc.send_signal(signal.SIGKILL)
            break
    proc.wait()
    assert proc.returncode == -signal.SIGKILL
    assert load_checkpoint(tmp_path / "killed" / LAST)["epoch"] == 0, "the kill must land inside epoch 2"

    resumed = subprocess.run(command("killed"), check=True, env=env, capture_output=True, text=True)
    assert "resuming" in resumed.stdout and "at epoch 2/3" in resumed.stdout
    for name in (LAST, BEST):
        whole, killed = load_checkpoint(tmp_path / "whole" / name), load_checkpoint(tmp_path / "killed" / name)
        assert states_equal(whole["model"], killed["model"])
        assert whole["epoch"] == killed["epoch"] and whole["history"][-1]["loss"] == killed["history"][-1]["loss"]


def test_cached_model_key_covers_every_module_training_imports():
    """pretrained.MODEL_SOURCES hashes the files that train the book's model; one left out would let a stale one be reused."""
    from captionlib.pretrained import MODEL_SOURCES

    code = "import sys, captionlib.train; print(*(m for m in sys.modules if m.startswith('captionlib.')))"
    modules = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout.split()
    assert {m.removeprefix("captionlib.") + ".py" for m in modules} == set(MODEL_SOURCES)


def test_cached_model_key_covers_the_precision_it_trains_in(monkeypatch):
    """A float32 run and a bfloat16 run of one config learn different weights, so they are cached apart."""
    from captionlib.pretrained import run_dir

    def keys(amp: bool) -> set:
        cfg = tiny_config(amp=amp)
        cfg.train.device = "cpu"
        found = set()
        for native_bf16 in (True, False):
            monkeypatch.setattr(torch.cpu, "_is_avx512_bf16_supported", lambda: native_bf16)
            found.add(run_dir(cfg))
        return found

    assert len(keys(amp=True)) == 2  # bfloat16 on one CPU, float32 on the other
    assert len(keys(amp=False)) == 1  # float32 on both


class _Terminal(io.StringIO):
    """A stderr that says it is a terminal."""

    def isatty(self) -> bool:
        return True


@pytest.mark.parametrize("terminal", [True, False])
def test_the_progress_bar_is_drawn_on_a_terminal_only(tmp_path, monkeypatch, terminal):
    stderr = _Terminal() if terminal else io.StringIO()
    monkeypatch.setattr(sys, "stderr", stderr)
    lines = []
    train(tiny_config(epochs=2), tmp_path, progress=True, log=lines.append)
    assert ("train:" in stderr.getvalue()) is terminal  # tqdm's bar, "train: 100%|...", repainted with \r
    if not terminal:
        assert stderr.getvalue() == ""  # a log file gets no bar at all
    assert sum(line.startswith("epoch ") for line in lines) == 2  # one line per epoch either way, with the losses
