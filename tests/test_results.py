"""Stored results (captionlib.results): what the chapters read is current, and `make results` retrains only what is stale."""

from __future__ import annotations

import json

import pytest

from captionlib import experiments, results
from captionlib.config import Config

TINY = {"shapes.n_train": 24, "shapes.n_val": 4, "shapes.n_test": 4, "train.epochs": 1, "train.batch_images": 12,
        "model.decoder_dim": 16, "model.encoder_channels": 8}  # fmt: skip


STORED_BUDGETS = ("small", "book")  # both grids are in the repository: results/grid-small.json, results/grid-book.json


@pytest.fixture(scope="module")
def fingerprints_today() -> dict[str, list[float]]:
    return results.current_fingerprints()


@pytest.mark.parametrize("budget", STORED_BUDGETS)
@pytest.mark.parametrize("variant", list(experiments.VARIANTS))
def test_the_stored_grid_describes_the_training_code_of_today(variant, budget, fingerprints_today):
    """Fails when what training does has changed since results/grid-BUDGET.json was stored: run `make results`."""
    grid = results.stored_grid(budget)
    assert variant in grid.data["fingerprints"], f"{variant} is not in the stored {budget} grid: run `make results`"
    stored, now = grid.data["fingerprints"][variant], fingerprints_today[variant]
    assert results.same_fingerprint(stored, now), f"{variant}: training has changed since the grid was stored, run `make results`"


@pytest.mark.parametrize("budget", STORED_BUDGETS)
def test_the_stored_grid_holds_every_variant_at_every_seed_with_its_provenance(budget):
    grid = results.stored_grid(budget)
    assert grid.variants == experiments.VARIANTS and len(grid.seeds) >= 3
    names = {experiments.row_name(v, how) for v in experiments.VARIANTS for how in experiments.decodings(v)}
    assert set(grid.rows) == names and all(len(runs) == len(grid.seeds) for runs in grid.rows.values())
    for record in grid.data["runs"]:
        # A config stored before a field existed reads back with that field's default, as a checkpoint's does.
        assert Config.from_dict(record["config"]) == experiments.variant_config(record["variant"], record["seed"], experiments.BUDGETS[budget])
        assert record["precision"] in ("float32", "bfloat16") and record["threads"] == 1 and record["minutes"] > 0
        assert len(record["history"]) == record["config"]["train"]["epochs"]
    assert grid.data["provenance"]["commit"] and grid.data["provenance"]["torch"]
    for variant in results.STORED_CHECKPOINTS:
        for seed in grid.seeds:
            assert grid.checkpoint(variant, seed).exists()


@pytest.mark.parametrize("budget", STORED_BUDGETS)
def test_both_precisions_adds_each_rows_other_precision_runs_once(budget):
    """The runs a chapter's verdicts must hold on: the grid's, plus the spot check's and (at the default config's
    budget) the default model's seeds in the other precision, soft attention's, without counting a run twice."""
    grid = results.stored_grid(budget)
    both, spot = results.both_precisions(grid), grid.data["spot_check"]
    assert set(both) == set(grid.rows) and all(both[name][: len(runs)] == runs for name, runs in grid.rows.items())
    for name, runs in both.items():
        extra = runs[len(grid.rows[name]):]
        if name == "soft" and budget == "book":  # Config() unchanged: the default model's three float32 seeds
            assert sorted(run["seed"] for run in extra) == [0, 1, 2]
            assert results.timeless(spot["rows"]["soft"][0]) == results.timeless(extra[0])  # retrained apart, the same scores
            default = {(r["precision"], r["seed"]): r["scores"] for r in results.stored_default_model()}
            assert all(run == {**default[spot["precision"], run["seed"]], "seed": run["seed"]} for run in extra)
        else:
            assert extra == spot["rows"].get(name, [])
    assert {r["precision"] for r in grid.data["runs"]} != {spot["precision"]}


def test_a_verdict_stands_only_where_the_runs_of_both_precisions_give_it_too():
    """bfloat16 seeds of soft and of row a, and one float32 run of soft (the spot check's) that widens soft's range."""
    from captionlib.experiments import compare, direction, summarise, verdict

    scores = {"soft": [(0.90, 0.010), (0.91, 0.011), (0.92, 0.012)], "a": [(0.80, 0.002), (0.81, 0.003), (0.82, 0.004)]}
    runs = [{"row": name, "seed": seed, "precision": "bfloat16", "scores": {"bleu4": bleu4, "hallucination": halluc},
             "attention": {"grounding": 0.9} if name == "soft" else None}
            for name, seeds in scores.items() for seed, (bleu4, halluc) in enumerate(seeds)]  # fmt: skip
    spot = {"precision": "float32", "seed": 0, "rows": {"soft": [{"seed": 0, "bleu4": 0.91, "hallucination": 0.001}]}}
    grid = results.StoredGrid("tiny", {"runs": runs, "spot_check": spot, "budget_fields": TINY})  # not Config(): no default-model runs
    table, both = summarise(grid.rows), summarise(results.both_precisions(grid))
    # bfloat16: a hallucinates less (better, though its number is lower) and has a lower BLEU-4 (worse)
    assert compare(table, "a", "soft", "hallucination") == -1 and verdict(table, "a", "soft", "hallucination") == "better"
    assert verdict(table, "soft", "a", "hallucination") == "worse" and verdict(table, "a", "soft", "bleu4") == "worse"
    # soft's float32 run (0.001) widens its range past the gap: with both precisions the hallucination verdict is a tie
    assert verdict(both, "a", "soft", "hallucination") == "tie" and verdict(both, "a", "soft", "bleu4") == "worse"
    settled = results.settled_verdicts(grid, ["a"], ["bleu4", "hallucination", "grounding"])  # a has no grounding
    assert settled == {"a": {"bleu4": "worse", "hallucination": "tie"}}
    settled = results.settled_verdicts(grid, ["a"], ["bleu4", "hallucination"], judge=direction)
    assert settled == {"a": {"bleu4": "lower", "hallucination": "tie"}}
    assert results.settled_verdicts(grid, ["soft"], ["bleu4"], against="a") == {"soft": {"bleu4": "better"}}


def test_timeless_drops_the_training_minutes_alone():
    assert results.timeless({"seed": 0, "bleu4": 0.9, "train_minutes": 7.5}) == {"seed": 0, "bleu4": 0.9}


def test_a_fingerprint_is_the_same_twice_and_tells_variants_apart():
    soft = results.fingerprint("soft")
    assert results.same_fingerprint(soft, results.fingerprint("soft"))
    assert not results.same_fingerprint(soft, results.fingerprint("soft-no-beta"))
    assert not results.same_fingerprint(soft, [value * 1.01 for value in soft])  # a 1% change is a change


def test_store_grid_trains_only_what_is_missing_or_stale(tmp_path, monkeypatch):
    monkeypatch.setenv("CAPTIONLIB_CACHE", str(tmp_path / "cache"))
    monkeypatch.setattr(results, "RESULTS", tmp_path / "results")
    monkeypatch.setattr(results, "BUDGETS", {"tiny": TINY})
    monkeypatch.setattr(experiments, "java_available", lambda: False)
    monkeypatch.setattr("captionlib.coco_metrics.java_available", lambda: False)
    variants = {name: experiments.VARIANTS[name] for name in ("soft", "hard")}
    monkeypatch.setattr(experiments, "VARIANTS", variants)
    monkeypatch.setattr(results, "VARIANTS", variants)
    stores = iter(range(1, 100))  # each store's provenance is numbered, so a kept run shows which store wrote it
    monkeypatch.setattr(results, "provenance", lambda: {"store": next(stores)})
    trained = []
    real_run_grid = results.run_grid
    monkeypatch.setattr(results, "run_grid", lambda names, seeds, *a, **k: trained.append(names) or real_run_grid(names, seeds, *a, **k))

    path = results.store_grid("tiny", (0, 1), log=lambda _: None, workers=1)
    grid = results.stored_grid("tiny")
    assert path == tmp_path / "results" / "grid-tiny.json" and trained == [("soft", "hard")]
    assert set(grid.rows) == {"soft", "hard (expected)", "hard (argmax)"} and len(grid.rows["soft"]) == 2
    assert {"penalty", "effective_cells", "on_objects", "peak", "coverage_maps"} <= set(grid.rows["soft"][0])
    assert grid.checkpoint("hard", 1).exists() and len(grid.history("soft", 0)) == 1

    results.store_grid("tiny", (0, 1), log=lambda _: None, workers=1)  # nothing stale: nothing trains
    assert trained == [("soft", "hard")] and results.stored_grid("tiny").data["runs"] == grid.data["runs"]

    data = json.loads(path.read_text())
    data["fingerprints"]["hard"] = [v + 1 for v in data["fingerprints"]["hard"]]  # as if hard's training had changed
    path.write_text(json.dumps(data))
    assert results.stale_variants(results.stored_grid("tiny")) == ["hard"]
    results.store_grid("tiny", (0, 1), log=lambda _: None, workers=1)
    assert trained == [("soft", "hard"), ("hard",)]  # only the stale variant again
    stored_by = {(run["variant"], run["seed"]): run["provenance"]["store"] for run in results.stored_grid("tiny").data["runs"]}
    first = {(run["variant"], run["seed"]): run["provenance"]["store"] for run in grid.data["runs"]}
    assert all(stored_by[key] == first[key] for key in stored_by if key[0] == "soft")  # kept with their own provenance
    assert all(stored_by[key] > first[key] for key in stored_by if key[0] == "hard")  # stored again, with the new one
    assert results.stale_variants(results.stored_grid("tiny")) == []


def test_a_missing_stored_grid_is_one_clear_error(tmp_path, monkeypatch):
    monkeypatch.setattr(results, "RESULTS", tmp_path)
    with pytest.raises(FileNotFoundError, match="grid-book.json: no stored grid of budget 'book'; `make results`"):
        results.stored_grid("book")


def test_the_book_models_scores_need_the_book_model(tmp_path, monkeypatch):
    """Without the stored checkpoint a chapter would caption with a freshly trained model: its stored scores say so."""
    monkeypatch.setattr(results, "STORED_MODEL", tmp_path / "default-float32-seed0.pt")
    with pytest.raises(FileNotFoundError, match="default-float32-seed0.pt: absent, so the chapters caption with a model trained here"):
        results.stored_book_model()


def test_the_readme_shows_the_stored_default_model_table():
    """The README's table of the default model at three seeds in two precisions is the stored one, digit for digit."""
    runs = results.stored_default_model()
    assert {(run["precision"], run["seed"]) for run in runs} >= {(p, s) for p in ("float32", "bfloat16") for s in (0, 1, 2)}
    readme = (results.RESULTS.parent / "README.md").read_text()
    assert results.default_model_table(runs) in readme, "README.md: paste the table `make results` prints"
