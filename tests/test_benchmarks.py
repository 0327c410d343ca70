"""benchmarks/run.py: every output line is a JSON metric, every metric is there, batched beam search matches the loop."""

from __future__ import annotations

import importlib.util
import json
import math
import subprocess
import sys
from pathlib import Path

import pytest
import torch

RUN = Path(__file__).resolve().parents[1] / "benchmarks" / "run.py"
TRAIN = {"train_captions_per_s", "train_speedup_vs_inloop_projection"}
BEAM = {"beam_images_per_s_k3", "beam_images_per_s_k5", "beam_speedup_k5", "beam_identical"}
TRANSFORMER = {f"transformer_{n}_layer_train_speedup" for n in (1, 2, 4)} | {
    f"transformer_{what}_k{k}" for what in ("cache_speedup", "vs_lstm_decoding") for k in (1, 3)} | {"transformer_cache_identical"}  # fmt: skip


def run_quick() -> dict[str, dict]:
    """Rows of a --quick --json run (one thread: a shared CPU makes 2-thread OpenMP crawl), keyed by metric; the baseline
    is the committed decoder (HEAD), so the group's git path runs and its check compares equal functions: an uncommitted
    change to what the decoder computes fails here until it is committed."""
    argv = [sys.executable, str(RUN), "--json", "--quick", "--threads", "1", "--baseline", "HEAD"]
    done = subprocess.run(argv, check=False, capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr
    rows = [json.loads(line) for line in done.stdout.splitlines()]  # fails on any line that is not JSON
    names = [row["metric"] for row in rows]
    assert len(names) == len(set(names)), f"a metric is printed twice: {names}"
    return {row["metric"]: row for row in rows}


@pytest.mark.slow
def test_quick_run_prints_every_metric_as_json():
    rows = run_quick()
    assert TRAIN | BEAM | TRANSFORMER | {"book_train_bf16_speedup", "peak_rss_mb", "torch_threads"} <= set(rows)
    assert rows["torch_threads"]["value"] == 1
    assert rows.pop("reference")["value"] == "skipped"  # sgrvinod's tutorial is compared only with --reference PATH
    assert {"paper_train_speedup_vs_HEAD", "book_train_speedup_vs_HEAD"} <= set(rows)
    assert rows["beam_identical"]["value"] is True and rows["transformer_cache_identical"]["value"] is True
    for name, row in rows.items():
        if name not in ("beam_identical", "transformer_cache_identical", "torch_threads", "book_train_bf16_speedup"):
            assert isinstance(row["value"], float) and math.isfinite(row["value"]) and row["value"] > 0, row
    assert rows["train_speedup_vs_inloop_projection"]["target_min"] == 2
    assert rows["beam_speedup_k5"]["target_min"] == 5


def test_only_runs_one_group(capsys, monkeypatch):
    spec = importlib.util.spec_from_file_location("benchmarks_run", RUN)
    run = importlib.util.module_from_spec(spec)
    monkeypatch.setitem(sys.modules, spec.name, run)  # dataclasses look their module up there
    spec.loader.exec_module(run)
    threads = torch.get_num_threads()
    try:
        run.main(["--json", "--quick", "--only", "beam", "--threads", "1"])  # in this process: no second torch import
    finally:
        torch.set_num_threads(threads)  # leave the rest of the session as it was
    rows = [json.loads(line) for line in capsys.readouterr().out.splitlines()]
    assert {row["metric"] for row in rows} == BEAM | {"peak_rss_mb", "torch_threads"}


def test_profile_beam_times_every_matrix_product_of_a_step():
    """--linears must not silently skip a product if the decoder's modules are renamed or added."""
    script = RUN.with_name("profile_beam.py")
    argv = [sys.executable, str(script), "--linears", "--threads", "1"]
    done = subprocess.run(argv, check=False, capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr
    named = [line.split()[0] for line in done.stdout.splitlines()]
    step_products = ["attention.W_h", "attention.w", "f_beta", "lstm.weight_ih", "lstm.weight_hh", "L_h", "L_z", "L_o"]
    assert sorted(named[:-1]) == sorted(step_products), done.stdout
    assert done.stdout.splitlines()[-1].strip().startswith("all of them  batching gains"), done.stdout


def test_reference_group_names_what_it_needs(tmp_path):
    """--reference takes a checkout of sgrvinod's tutorial; a folder without its files is one clear error."""
    spec = importlib.util.spec_from_file_location("benchmarks_reference", RUN.with_name("reference.py"))
    reference = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(reference)
    with pytest.raises(FileNotFoundError, match="models.py: not found; --reference takes a checkout of sgrvinod/"):
        reference.load(tmp_path)
    (tmp_path / "models.py").write_text("")
    (tmp_path / "caption.py").write_text("k = 1\n")
    with pytest.raises(ValueError, match="caption.py: expected the line 'prev_word_inds = top_k_words / vocab_size' once"):
        reference.load(tmp_path)


def test_baseline_group_names_a_revision_git_does_not_know(monkeypatch):
    """--baseline takes a git revision of this repository; one that does not exist is one line naming it."""
    spec = importlib.util.spec_from_file_location("benchmarks_run", RUN)
    run = importlib.util.module_from_spec(spec)
    monkeypatch.setitem(sys.modules, spec.name, run)
    spec.loader.exec_module(run)
    with pytest.raises(SystemExit, match="^benchmarks/run.py: --baseline no-such-revision: fatal: "):
        run.decoder_at("no-such-revision")


def test_baseline_group_without_a_revision_uses_the_issues_and_skips_where_git_lacks_it(monkeypatch):
    """With no --baseline the group times against ISSUE_BASELINE; a clone without that commit gets one skipped row naming it."""
    spec = importlib.util.spec_from_file_location("benchmarks_run", RUN)
    run = importlib.util.module_from_spec(spec)
    monkeypatch.setitem(sys.modules, spec.name, run)
    spec.loader.exec_module(run)
    monkeypatch.setattr(run, "ISSUE_BASELINE", "0" * 40)
    assert not run.known_revision(run.ISSUE_BASELINE)
    rows = list(run.bench_baseline(run.QUICK))
    assert [(r["metric"], r["value"]) for r in rows] == [("baseline", "skipped")]
    assert rows[0]["note"].startswith(f"git does not know {'0' * 40}")
    assert run.known_revision("HEAD")
