"""`captionlib cache list` and `cache prune`: which cached runs the current sources still produce, and removing the rest."""

from __future__ import annotations

import fcntl
import io
import json
import shutil

import pytest
import torch
from conftest import run_cli, tiny_config

from captionlib.cache import entries, precision_here, run_name
from captionlib.cli import main
from captionlib.pretrained import cached_checkpoint, run_dir

STALE = "shapes-0123456789"  # a run of older sources: same files, a hash the current sources do not give
GPU = "torch.float16"  # the precision a GPU trains in, never this CPU's
CPU_ONLY = {"CUDA_VISIBLE_DEVICES": ""}  # the command line, too, lists the cache as a CPU machine does


class Terminal(io.StringIO):
    """Standard input as a terminal, with the reader's answer typed in."""

    def isatty(self) -> bool:
        return True


@pytest.fixture(scope="module")
def trained_cache(tmp_path_factory):
    """A cache folder holding one tiny run, trained once for this module."""
    root = tmp_path_factory.mktemp("trained-cache")
    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(torch.cuda, "is_available", lambda: False)  # this module's machine is a CPU (see no_gpu)
        patch.setenv("CAPTIONLIB_CACHE", str(root))
        cached_checkpoint(tiny_config())
    return root


@pytest.fixture(autouse=True)
def no_gpu(monkeypatch):
    """The listing is read as on a CPU machine, where the GPU's runs are "another precision" (on a GPU, the CPU's are)."""
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)


@pytest.fixture
def cache(trained_cache, tmp_path, monkeypatch):
    """A copy of that cache, set as $CAPTIONLIB_CACHE, with a stale run, the run as a GPU trains it, and a feature cache."""
    root = tmp_path / "cache"
    shutil.copytree(trained_cache, root)
    monkeypatch.setenv("CAPTIONLIB_CACHE", str(root))
    current = run_dir(tiny_config())
    shutil.copytree(current, root / STALE)
    shutil.copytree(current, root / run_name(tiny_config(), GPU))
    (root / "features").mkdir()
    (root / "features" / "shapes_cnn-0123456789abcdef.f16").write_bytes(bytes(2_000_000))
    return root


def statuses(root) -> dict[str, str]:
    return {entry.path.name: entry.status for entry in entries(root)}


@pytest.mark.parametrize("float32", ["0", "1"])
def test_run_name_is_the_folder_run_dir_gives(float32, tmp_path, monkeypatch):
    monkeypatch.setenv("CAPTIONLIB_CACHE", str(tmp_path))
    monkeypatch.setenv("CAPTIONLIB_FLOAT32", float32)
    for cfg in (tiny_config(), tiny_config(amp=False)):
        assert run_name(cfg, precision_here(cfg)) == run_dir(cfg).name


@pytest.mark.slow
def test_list_tells_current_other_precision_stale_and_other(cache):
    current, gpu = run_dir(tiny_config()).name, run_name(tiny_config(), GPU)
    assert statuses(cache) == {current: "current", gpu: "other precision", STALE: "stale", "features": "other"}

    result = run_cli("cache", "list", "--json", env=CPU_ONLY)
    assert result.returncode == 0, result.stderr
    listed = {row["name"]: row for row in json.loads(result.stdout)}
    assert {name: row["status"] for name, row in listed.items()} == statuses(cache)
    assert (listed[current]["epochs_done"], listed[current]["epochs"]) == (2, 2)
    assert listed[current]["changes"]["model.decoder_dim"] == 32 and "train.seed" not in listed[current]["changes"]
    assert listed["features"]["size_mb"] == 2.0 and not listed["features"]["run"]

    result = run_cli("cache", "list", env=CPU_ONLY)
    assert result.returncode == 0, result.stderr
    lines = {line.split()[0]: line for line in result.stdout.splitlines()}
    assert "2/2 epochs" in lines[current] and "current" in lines[current] and "model.decoder_dim=32" in lines[current]
    assert " stale " in lines[STALE] and "other precision" in lines[gpu]
    assert "3 runs and 1 other entry, " in result.stdout and "stale: 1 run (" in result.stdout


@pytest.mark.slow
def test_prune_yes_removes_only_what_the_sources_no_longer_produce(cache, capsys):
    (cache / "shapes-9876543210").mkdir()
    (cache / "shapes-9876543210" / "last.pt").write_bytes(b"not a checkpoint")
    assert statuses(cache)["shapes-9876543210"] == "unreadable"

    assert main(["cache", "prune", "--yes"]) == 0
    assert "removed 2 runs, freed" in capsys.readouterr().out
    assert sorted(statuses(cache).values()) == ["current", "other", "other precision"]


@pytest.mark.slow
def test_prune_asks_and_refuses_without_a_terminal(cache, capsys, monkeypatch):
    before = statuses(cache)
    monkeypatch.setattr("sys.stdin", io.StringIO("y\n"))  # piped: nobody is there to answer
    assert main(["cache", "prune"]) == 1
    assert "not a terminal" in capsys.readouterr().err and statuses(cache) == before

    monkeypatch.setattr("sys.stdin", Terminal("n\n"))
    assert main(["cache", "prune"]) == 0
    assert "Remove 1 run (" in capsys.readouterr().out and statuses(cache) == before

    monkeypatch.setattr("sys.stdin", Terminal("y\n"))
    assert main(["cache", "prune"]) == 0
    assert STALE not in statuses(cache) and len(statuses(cache)) == 3


@pytest.mark.slow
def test_prune_leaves_a_run_that_is_training(cache, capsys):
    with open(cache / STALE / ".lock") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)  # as pretrained.cached_checkpoint holds it while it trains
        assert main(["cache", "prune", "--yes"]) == 1
    assert "a process is training into it" in capsys.readouterr().err
    assert (cache / STALE / "last.pt").is_file()


@pytest.mark.slow
def test_prune_all_yes_empties_the_cache(cache):
    result = run_cli("cache", "prune", "--all", "--yes", env=CPU_ONLY)
    assert result.returncode == 0, result.stderr
    assert "removed 3 runs and 1 other entry" in result.stdout
    assert list(cache.iterdir()) == []


def test_an_empty_cache_lists_and_prunes_nothing(tmp_path, monkeypatch, capsys):
    monkeypatch.setenv("CAPTIONLIB_CACHE", str(tmp_path / "never-made"))
    assert main(["cache", "list"]) == 0
    assert capsys.readouterr().out.startswith("0 runs, 0.0 MB in ")
    assert main(["cache", "prune"]) == 0
    assert "nothing to remove" in capsys.readouterr().out
