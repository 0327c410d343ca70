"""Checkpoints that must be refused (truncated, mismatched, foreign or malicious) and a clean atomic save."""

from __future__ import annotations

import json
import os
import pickle
import shlex
import shutil
import stat

import pytest
import torch

from captionlib import CheckpointError, load_checkpoint, load_model, save_checkpoint
from captionlib.cli import main


class Point:
    """An ordinary user class: harmless, but not something weights_only=True may construct."""

    def __init__(self):
        self.x = 1


class RunsShell:
    """The classic malicious pickle: unpickling it calls os.system(command)."""

    def __init__(self, command: str):
        self.command = command

    def __reduce__(self):
        return os.system, (self.command,)


class FailsToSave:
    """Raises while torch.save is half way through writing, like a full disk would."""

    def __reduce__(self):
        raise RuntimeError("disk full")


def assert_one_line_naming(error: Exception, path) -> None:
    text = str(error)
    assert "\n" not in text and str(path) in text, text


def stderr_lines(capsys) -> list[str]:
    return capsys.readouterr().err.strip().splitlines()


@pytest.fixture
def payload(tiny_checkpoint) -> dict:
    """A fresh copy of the tiny checkpoint's contents, safe to edit."""
    return load_checkpoint(tiny_checkpoint)


def test_loading_uses_weights_only(tiny_checkpoint, monkeypatch):
    calls = []
    real_load = torch.load
    monkeypatch.setattr(torch, "load", lambda *a, **kw: calls.append(kw) or real_load(*a, **kw))
    load_model(tiny_checkpoint)
    assert calls and all(kw.get("weights_only") is True for kw in calls)


@pytest.mark.parametrize("keep", [0.0, 0.1, 0.5, 0.99])
def test_truncated_checkpoint(tmp_path, tiny_checkpoint, keep):
    data = tiny_checkpoint.read_bytes()
    path = tmp_path / "truncated.pt"
    path.write_bytes(data[: int(len(data) * keep)])
    with pytest.raises(CheckpointError, match="truncated") as info:
        load_model(path)
    assert_one_line_naming(info.value, path)


@pytest.mark.parametrize("garbage", [b".", b"J", b"xyzzy", b"hello, this is not a checkpoint\n", bytes(range(256))])
def test_garbage_bytes_are_one_line_errors(tmp_path, capsys, garbage):
    """The unpickler raises IndexError, struct.error, KeyError... on junk; each still gives the one-line error."""
    path = tmp_path / "junk.pt"
    path.write_bytes(garbage)
    with pytest.raises(CheckpointError, match="truncated or not a torch checkpoint") as info:
        load_model(path)
    assert_one_line_naming(info.value, path)
    assert main(["caption", "--checkpoint", str(path), str(tmp_path / "any.png")]) == 1
    lines = stderr_lines(capsys)
    assert len(lines) == 1 and str(path) in lines[0], lines


@pytest.mark.parametrize("words", [5, None, ["<pad>", 3]])
def test_vocab_entry_that_is_not_a_word_list(tmp_path, payload, words):
    payload["vocab"] = words
    path = tmp_path / "bad-vocab.pt"
    save_checkpoint(payload, path)
    with pytest.raises(CheckpointError) as info:
        load_model(path)
    assert str(info.value) == f"{path}: its 'vocab' entry is not a list of words"


def test_config_value_out_of_its_limits(tmp_path, payload):
    payload["config"]["model"]["grid_size"] = "8"
    path = tmp_path / "bad-config.pt"
    save_checkpoint(payload, path)
    with pytest.raises(CheckpointError) as info:
        load_model(path)
    assert str(info.value) == f"{path}: config: model.grid_size = '8': expected int"


@pytest.mark.parametrize("change", [-1, +2])
def test_vocabulary_that_does_not_fit_the_embedding(tmp_path, payload, change):
    words = payload["vocab"]
    payload["vocab"] = words[:change] if change < 0 else words + [f"extra{i}" for i in range(change)]
    path = tmp_path / "other-vocab.pt"
    save_checkpoint(payload, path)
    with pytest.raises(CheckpointError, match=f"vocabulary has {len(words) + change} words") as info:
        load_model(path)
    assert_one_line_naming(info.value, path)


def test_model_entry_that_is_not_a_state_dict(tmp_path, payload):
    payload["model"] = [1, 2, 3]
    path = tmp_path / "list-model.pt"
    save_checkpoint(payload, path)
    with pytest.raises(CheckpointError, match="not a state dict") as info:
        load_model(path)
    assert_one_line_naming(info.value, path)


def test_other_torch_files_and_directories(tmp_path):
    foreign = tmp_path / "plain.pt"
    torch.save({"weight": torch.zeros(2)}, foreign)
    for path, message in ((foreign, "not a captionlib checkpoint"), (tmp_path, "directory"), (tmp_path / "nope.pt", "no such")):
        with pytest.raises(CheckpointError, match=message) as info:
            load_model(path)
        assert_one_line_naming(info.value, path)


def test_custom_class_is_refused(tmp_path, payload):
    path = tmp_path / "custom.pt"
    torch.save({**payload, "extra": Point()}, path)
    with pytest.raises(CheckpointError, match="refused") as info:
        load_model(path)
    assert_one_line_naming(info.value, path)
    assert "Point" in str(info.value)


@pytest.mark.parametrize("container", ["torch.save", "raw pickle"])
def test_malicious_pickle_runs_no_code(tmp_path, capsys, container):
    marker = tmp_path / "pwned"
    evil = RunsShell(f"touch {shlex.quote(str(marker))}")
    path = tmp_path / "evil.pt"
    if container == "torch.save":
        torch.save({"format": "captionlib-checkpoint-v1", "model": {}, "payload": evil}, path)
        expected = "refused"  # the unpickler reaches the GLOBAL os.system and names it
    else:
        path.write_bytes(pickle.dumps(evil))
        expected = "not a torch checkpoint"  # it stops earlier, at an opcode torch.save never writes
    with pytest.raises(CheckpointError, match=expected) as info:
        load_model(path)
    assert_one_line_naming(info.value, path)
    assert main(["caption", "--checkpoint", str(path), str(tmp_path / "any.png")]) == 1
    lines = stderr_lines(capsys)
    assert len(lines) == 1 and str(path) in lines[0] and expected in lines[0], lines
    assert not marker.exists(), "loading the checkpoint ran its code"
    # The payload is live: an unsafe load does run it, so the assertion above can fail.
    if container == "raw pickle":
        pickle.loads(path.read_bytes())
    else:
        torch.load(path, weights_only=False)
    assert marker.exists()


def test_save_is_atomic_and_readable(tmp_path, payload):
    path = tmp_path / "ckpt.pt"
    save_checkpoint(payload, path)
    before = path.read_bytes()
    with pytest.raises(RuntimeError, match="disk full"):
        save_checkpoint({**payload, "last": FailsToSave()}, path)
    assert path.read_bytes() == before, "a failed save changed the existing checkpoint"
    assert [p.name for p in tmp_path.iterdir()] == ["ckpt.pt"], "a failed save left a temporary file"
    umask = os.umask(0)
    os.umask(umask)
    assert stat.S_IMODE(path.stat().st_mode) == 0o666 & ~umask  # not mkstemp's owner-only 0600


# ---------- `captionlib train` resuming into an --out whose last.pt does not match ----------


@pytest.fixture
def finished_run(tmp_path, tiny_checkpoint):
    """A copy of the tiny run's folder and the config JSON that trained it."""
    out = tmp_path / "run"
    shutil.copytree(tiny_checkpoint.parent, out)
    config = tmp_path / "tiny.json"
    config.write_text(json.dumps(load_checkpoint(out / "last.pt")["config"]))
    return out, config


def test_train_refuses_to_resume_a_different_config(finished_run, capsys):
    out, config = finished_run
    before = (out / "last.pt").read_bytes()
    argv = ["train", "--out", str(out), "--config", str(config), "--set", "model.decoder_dim=48", "--no-progress"]
    assert main(argv) == 1
    lines = stderr_lines(capsys)
    assert len(lines) == 1 and str(out / "last.pt") in lines[0] and "different configuration" in lines[0], lines
    assert "model.decoder_dim = 32 there, 48 here" in lines[0], lines  # names what changed
    assert (out / "last.pt").read_bytes() == before


def test_train_refuses_to_resume_a_different_vocabulary(finished_run, capsys):
    out, config = finished_run
    state = load_checkpoint(out / "last.pt")
    state["vocab"] = state["vocab"][:-1]  # as if the run had been trained on other captions
    save_checkpoint(state, out / "last.pt")
    assert main(["train", "--out", str(out), "--config", str(config), "--no-progress"]) == 1
    lines = stderr_lines(capsys)
    assert len(lines) == 1 and str(out / "last.pt") in lines[0] and "vocabulary" in lines[0], lines


def test_train_refuses_to_resume_from_a_checkpoint_without_training_state(finished_run, capsys):
    out, config = finished_run
    shutil.copy(out / "best.pt", out / "last.pt")  # best.pt holds the model, not the optimiser
    assert main(["train", "--out", str(out), "--config", str(config), "--no-progress"]) == 1
    assert stderr_lines(capsys) == [f"captionlib: error: {out / 'last.pt'}: not a resumable last.pt (no 'optimizer' entry); use another --out"]


def test_train_with_the_same_config_sees_the_run_is_finished(finished_run, capsys):
    """The control for the two refusals above: the unchanged folder is accepted."""
    out, config = finished_run
    assert main(["train", "--out", str(out), "--config", str(config), "--no-progress"]) == 0
    assert "already trained" in capsys.readouterr().out


def test_train_resumes_with_other_runtime_settings(finished_run, capsys):
    """Where a run goes (device, worker processes) is not what it learns: those may change between sessions."""
    out, config = finished_run
    runtime = ["--set", "train.device=cpu", "--set", "train.num_workers=2"]
    assert main(["train", "--out", str(out), "--config", str(config), "--no-progress", *runtime]) == 0
    assert "already trained" in capsys.readouterr().out


def test_pretrained_encoder_loads_from_the_checkpoint_alone(tmp_path, payload):
    """A frozen pretrained backbone comes back frozen, with its config unchanged, and torchvision's weights unread."""
    from captionlib import CaptionModel, Config

    config = Config.from_dict(payload["config"])
    config.model.encoder, config.model.grid_size, config.model.fine_tune_blocks = "resnet18", 2, 0
    config.model.pretrained = False  # random weights stand in for ImageNet's, which are not on this machine
    state = CaptionModel(config.model, len(payload["vocab"])).state_dict()
    config.model.pretrained = True
    path = tmp_path / "resnet18.pt"
    save_checkpoint({**payload, "config": config.to_dict(), "model": state}, path)
    model, _, loaded = load_model(path)
    assert loaded.model.pretrained and model.encoder.frozen
    assert all(torch.equal(model.state_dict()[name], tensor) for name, tensor in state.items())


@pytest.mark.skipif(torch.cuda.is_available(), reason="checks the message on a machine without a GPU")
def test_loading_onto_a_missing_gpu_says_so(tiny_checkpoint):
    with pytest.raises(CheckpointError, match="onto a GPU, but torch sees none; load it with map_location='cpu'") as info:
        load_checkpoint(tiny_checkpoint, map_location="cuda")
    assert_one_line_naming(info.value, tiny_checkpoint)
