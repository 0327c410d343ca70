"""The model variants of the paper's ablations (model.attention, beta_gate, deep_output), and the experiments grid."""

from __future__ import annotations

import json

import pytest
import torch
from conftest import run_cli, tiny_config

from captionlib import Decoder, ModelConfig
from captionlib.checkpoint import load_checkpoint, load_model
from captionlib.decoding import beam_search, greedy_decode
from captionlib.hard_attention import set_decode_at
from captionlib.train import train

SMALL = dict(embed_dim=8, attention_dim=6, decoder_dim=10, dropout=0.0)


def test_no_attention_sees_the_mean_annotation_with_uniform_alpha():
    torch.manual_seed(0)
    decoder = Decoder(12, 5, ModelConfig(attention="none", **SMALL)).eval()
    annotations = torch.randn(2, 4, 5)  # (B, P, D)
    state, projected = decoder.init_state(annotations), decoder.attention.project(annotations)
    z, alpha = decoder.attention(annotations, projected, state[0])
    torch.testing.assert_close(z, annotations.mean(1))
    torch.testing.assert_close(alpha, torch.full((2, 4), 0.25))
    assert not list(decoder.attention.parameters())  # nothing to learn about where to look


def test_switches_remove_the_gate_and_the_deep_output():
    full = Decoder(12, 5, ModelConfig(**SMALL))
    bare = Decoder(12, 5, ModelConfig(beta_gate=False, deep_output=False, **SMALL))
    assert full.f_beta is not None and bare.f_beta is None
    assert full.L_o.in_features == SMALL["embed_dim"] and bare.L_o.in_features == SMALL["decoder_dim"]  # logits from h_t
    names = {name.split(".")[0] for name, _ in bare.named_parameters()}
    assert not names & {"f_beta", "L_h", "L_z"}


@pytest.mark.parametrize("variant", [{"attention": "none"}, {"attention": "hard"}, {"beta_gate": False, "deep_output": False}])
def test_grouped_teacher_forcing_equals_one_image_copy_per_caption(variant):
    """The decoder runs the captions of an image together; the same captions with a copy of the image each agree."""
    torch.manual_seed(0)
    decoder = Decoder(20, 6, ModelConfig(**{**SMALL, **variant})).eval()
    annotations = torch.randn(2, 4, 6)
    captions = torch.randint(4, 20, (4, 7))
    lengths, owner = torch.tensor([7, 3, 5, 6]), torch.tensor([0, 0, 1, 1])
    grouped = decoder(annotations, captions, lengths, owner)
    copied = decoder(annotations[owner], captions, lengths)
    torch.testing.assert_close(grouped[0], copied[0])
    torch.testing.assert_close(grouped[1], copied[1])


def hard_config():
    cfg = tiny_config(epochs=2)
    cfg.model.attention = "hard"
    return cfg


def test_hard_model_trains_resumes_exactly_and_decodes_both_ways(tmp_path):
    whole = train(hard_config(), tmp_path / "whole", progress=False, log=lambda _: None)
    state = load_checkpoint(tmp_path / "whole" / "last.pt")
    assert 0 < float(state["model"]["decoder.attention.baseline"]) < 10  # a per-word NLL, moved from 0 by sampled minibatches
    steps = []

    def stop_in_epoch_2(losses):
        steps.append(losses)
        if len(steps) == 8:  # 6 steps per epoch: the second epoch's second step
            raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        train(hard_config(), tmp_path / "split", progress=False, log=lambda _: None, on_step=stop_in_epoch_2)
    train(hard_config(), tmp_path / "split", progress=False, log=lambda _: None)  # resumes at epoch 2
    resumed = load_checkpoint(tmp_path / "split" / "last.pt")
    assert all(torch.equal(state["model"][k], resumed["model"][k]) for k in state["model"])  # weights and baseline
    model, _, _ = load_model(whole)
    annotations = model.encoder(torch.randn(3, 3, 64, 64))
    for decode_at in ("expected", "argmax"):
        set_decode_at(model, decode_at)
        assert len(greedy_decode(model.decoder, annotations, 5)) == 3 and len(beam_search(model.decoder, annotations, 2, 5)) == 3


def test_cli_evaluates_a_hard_model_both_ways(tmp_path):
    out = tmp_path / "hard"
    trained = run_cli("train", "--out", out, "--no-progress", "--epochs", "1", "--set", "model.attention=hard",
                      "--set", "shapes.n_train=48", "--set", "shapes.n_val=8", "--set", "shapes.n_test=8",
                      "--set", "model.decoder_dim=32", "--set", "model.encoder_channels=16")  # fmt: skip
    assert trained.returncode == 0, trained.stderr
    results = {}
    for decode_at in ("expected", "argmax"):
        done = run_cli("evaluate", "--checkpoint", out / "best.pt", "--beam-size", "2", "--json", "--decode-at", decode_at)
        assert done.returncode == 0, done.stderr
        results[decode_at] = json.loads(done.stdout)
        assert results[decode_at]["decode_at"] == decode_at and "relation_probe" in results[decode_at]
    bad = run_cli("evaluate", "--checkpoint", out / "best.pt", "--decode-at", "mode")
    assert bad.returncode != 0 and "--decode-at" in bad.stderr


def test_experiments_grid_trains_caches_and_tabulates(tmp_path, monkeypatch):
    from captionlib import experiments

    monkeypatch.setenv("CAPTIONLIB_CACHE", str(tmp_path / "cache"))
    budget = {"shapes.n_train": 32, "shapes.n_val": 8, "shapes.n_test": 8, "train.epochs": 1, "train.batch_images": 16,
              "model.decoder_dim": 16, "model.encoder_channels": 8}  # fmt: skip
    monkeypatch.setattr(experiments, "GRID_BUDGET", budget)
    monkeypatch.setattr(experiments, "java_available", lambda: False)  # METEOR's Java is tested in test_coco_metrics
    rows = experiments.run_grid(("none", "hard"), (0, 1), log=lambda _: None, workers=2)  # two processes
    assert set(rows) == {"none", "hard (expected)", "hard (argmax)"} and all(len(runs) == 2 for runs in rows.values())
    assert "grounding" not in rows["none"][0] and "grounding" in rows["hard (argmax)"][0]  # no α, no grounding
    cached = sorted((tmp_path / "cache").glob("*/scores-*.json"))
    assert len(cached) == 6  # none × 2 seeds, hard × 2 seeds × 2 decodings
    again = experiments.run_grid(("none", "hard"), (0, 1), log=lambda _: None, workers=1)  # all cached: the same numbers
    assert again == rows
    table = experiments.write_table(tmp_path / "out", rows)["summary"]
    assert table["none"]["bleu4"]["n"] == 2 and table["none"]["bleu4"]["min"] <= table["none"]["bleu4"]["mean"] <= table["none"]["bleu4"]["max"]
    assert json.loads((tmp_path / "out" / "experiments.json").read_text())["summary"] == json.loads(json.dumps(table))
    text = experiments.format_table(table)
    assert "hard (argmax)" in text and "±" in text and "over 2 seeds" in text
    with pytest.raises(ValueError, match="unknown variant 'soft-plus'"):
        experiments.variant_config("soft-plus", 0)


def test_compare_calls_a_difference_inside_the_seed_spread_a_tie():
    from captionlib.experiments import compare, summarise

    rows = {
        "a": [{"seed": 0, "bleu4": 0.90}, {"seed": 1, "bleu4": 0.80}],  # range 0.10
        "b": [{"seed": 0, "bleu4": 0.70}, {"seed": 1, "bleu4": 0.68}],  # mean 0.69: 0.16 below a, more than 0.10
        "c": [{"seed": 0, "bleu4": 0.80}, {"seed": 1, "bleu4": 0.78}],  # mean 0.79: 0.06 below a, inside a's range
    }
    table = summarise(rows)
    assert compare(table, "a", "b", "bleu4") == 1 and compare(table, "b", "a", "bleu4") == -1
    assert compare(table, "a", "c", "bleu4") == 0 and compare(table, "c", "a", "bleu4") == 0
    assert compare(table, "b", "c", "bleu4") == -1  # 0.10 apart, ranges 0.02 and 0.02


def test_verdict_reads_compare_the_right_way_round_and_direction_as_it_is():
    from captionlib.experiments import LOWER_IS_BETTER, compare, direction, summarise, verdict

    rows = {
        "a": [{"seed": 0, "bleu4": 0.90, "hallucination": 0.01}, {"seed": 1, "bleu4": 0.88, "hallucination": 0.02}],
        "b": [{"seed": 0, "bleu4": 0.70, "hallucination": 0.20}, {"seed": 1, "bleu4": 0.72, "hallucination": 0.21}],
        "c": [{"seed": 0, "bleu4": 0.91, "hallucination": 0.00}, {"seed": 1, "bleu4": 0.87, "hallucination": 0.03}],
    }
    table = summarise(rows)
    assert compare(table, "a", "b", "hallucination") == -1 and verdict(table, "a", "b", "hallucination") == "better"  # fewer
    assert verdict(table, "b", "a", "hallucination") == "worse" and direction(table, "a", "b", "hallucination") == "lower"
    assert verdict(table, "a", "b", "bleu4") == "better" and direction(table, "a", "b", "bleu4") == "higher"
    assert verdict(table, "a", "c", "bleu4") == verdict(table, "a", "c", "hallucination") == "tie"  # inside the ranges
    assert direction(table, "c", "a", "bleu4") == "tie"
    assert {"hallucination", "greedy_hallucination"} <= LOWER_IS_BETTER and "bleu4" not in LOWER_IS_BETTER


def test_experiments_cli_changes_the_budget_with_set_and_names_a_bad_field(tmp_path):
    cache, out = tmp_path / "cache", tmp_path / "out"
    tiny = ["shapes.n_train=24", "shapes.n_val=8", "shapes.n_test=8", "train.epochs=1", "model.decoder_dim=16", "model.encoder_channels=8"]
    sets = [arg for text in tiny for arg in ("--set", text)]
    done = run_cli("experiments", "--out", out, "--variants", "none", "--seeds", "0", "--workers", "1", "--json", *sets,
                   env={"CAPTIONLIB_CACHE": str(cache)})  # fmt: skip
    assert done.returncode == 0, done.stderr
    written = json.loads((out / "experiments.json").read_text())
    assert written["budget"]["train.epochs"] == 1 and written["budget"]["model.decoder_dim"] == 16
    assert written["budget"]["train.batch_images"] == 12  # the rest of the grid's budget is kept
    assert json.loads(done.stdout) == written["summary"] and set(written["summary"]) == {"none"}
    for bad, named in (("train.epochz=2", "no config field train.epochz"), ("train.epochs=0", "train.epochs")):
        failed = run_cli("experiments", "--out", out, "--set", bad, env={"CAPTIONLIB_CACHE": str(cache)})
        assert failed.returncode != 0 and named in failed.stderr and len(failed.stderr.strip().splitlines()) == 1
