"""COCO caption metrics next to nltk BLEU, with and without a Java runtime."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys

import pytest

from captionlib import coco_metrics
from captionlib.metrics import bleu
from captionlib.vocab import tokenize

REFS = [
    ["a small red circle to the left of a large blue square", "there is a small red circle and a large blue square"],
    ["a large green triangle", "a picture of a large green triangle"],
    ["a small purple diamond above a small yellow circle", "a small yellow circle below a small purple diamond"],
]
HYPS = ["a small red circle to the left of a large blue square", "a large green triangle in the picture", "a small purple diamond"]


@pytest.mark.skipif(shutil.which("java") is None, reason="needs the Java runtime that `make setup` expects")
def test_coco_scores_with_java_match_nltk_bleu_on_unpunctuated_captions():
    scores = coco_metrics.coco_scores(HYPS, REFS, warn=lambda _: None)
    assert set(scores) == {"coco_bleu1", "coco_bleu2", "coco_bleu3", "coco_bleu4", "meteor", "rouge_l", "cider"}
    nltk = bleu([tokenize(h) for h in HYPS], [[tokenize(r) for r in refs] for refs in REFS])
    for n in range(1, 5):
        assert scores[f"coco_bleu{n}"] == pytest.approx(nltk[f"bleu{n}"], abs=1e-6)
    assert 0 < scores["meteor"] < 1 and 0 < scores["rouge_l"] < 1 and scores["cider"] > 0


def test_without_java_meteor_is_skipped_with_a_message(monkeypatch):
    monkeypatch.setattr(coco_metrics, "java_available", lambda: False)
    messages = []
    scores = coco_metrics.coco_scores(HYPS, REFS, warn=messages.append)
    assert "meteor" not in scores and {"coco_bleu4", "rouge_l", "cider"} <= set(scores)
    assert any("no Java runtime: METEOR skipped" in m for m in messages)
    assert any("SPICE skipped" in m for m in messages)


def test_cli_evaluate_metrics_coco(tiny_checkpoint, tmp_path):
    env = dict(os.environ)
    run = [sys.executable, "-m", "captionlib", "evaluate", "--checkpoint", str(tiny_checkpoint), "--metrics", "coco", "--json"]
    out = subprocess.run(run, capture_output=True, text=True, env=env, check=True)
    result = json.loads(out.stdout)
    assert {"bleu1", "bleu4", "coco_bleu4", "rouge_l", "cider"} <= result.keys()
    assert ("meteor" in result) == (shutil.which("java") is not None)
    # No Java on PATH: the command still succeeds, says so, and prints the rest.
    fake_bin = tmp_path / "bin"
    fake_bin.mkdir()
    env["PATH"] = str(fake_bin)
    out = subprocess.run(run, capture_output=True, text=True, env=env, check=True)
    assert "meteor" not in json.loads(out.stdout) and "no Java runtime" in out.stderr
