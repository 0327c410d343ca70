"""Config values are checked where they enter: a JSON file, --set, a checkpoint; each error names the field."""

from __future__ import annotations

import json

import pytest

from captionlib.cli import build_config, build_parser, main
from captionlib.config import Config, load_config, recipe_names


@pytest.mark.parametrize(
    ("values", "message"),
    [
        ([], "config: expected an object of sections, got list"),
        ({"model": [1]}, "config: model: expected an object of fields, got list"),
        ({"train": {"epochs": "1"}}, "config: train.epochs = '1': expected int"),
        ({"train": {"epochs": 2.0}}, "config: train.epochs = 2.0: expected int"),
        ({"train": {"amp": 1}}, "config: train.amp = 1: expected bool"),
        ({"train": {"epochs": 0}}, "config: train.epochs = 0: must be at least 1"),
        ({"shapes": {"min_objects": 0}}, "config: shapes.min_objects = 0: must be between 1 and 3"),  # hung the generator
        ({"shapes": {"max_objects": 4}}, "config: shapes.max_objects = 4: must be between 1 and 3"),
        ({"shapes": {"min_objects": 3, "max_objects": 2}}, "config: shapes.min_objects = 3 is above shapes.max_objects = 2"),
        ({"shapes": {"image_size": 8}}, "config: shapes.image_size = 8: must be at least 16"),
        ({"model": {"dropout": 1.5}}, "config: model.dropout = 1.5: must be at least 0.0 and below 1.0"),
        ({"model": {"dropout": 1.0}}, "config: model.dropout = 1.0: must be at least 0.0 and below 1.0"),  # zeroes all
        ({"train": {"grad_clip": 0.0}}, "config: train.grad_clip = 0.0: must be above 0.0"),  # zeroes every gradient
        ({"train": {"lr": float("nan")}}, "config: train.lr = nan: must be a finite number"),  # passes any bound
        ({"train": {"lr": 10**400}}, "config: train.lr: 401-digit integer, too large for a float"),
        ({"train": {"device": "tpu"}}, "config: train.device = 'tpu': must be one of auto, cpu, cuda"),
        ({"data": 3}, "config: data = 3: expected str"),
    ],
)
def test_a_bad_value_is_refused_naming_its_field(values, message):
    with pytest.raises(ValueError) as raised:
        Config.from_dict(values)
    assert str(raised.value) == message


def test_defaults_and_shipped_recipes_pass_and_an_int_is_a_fine_float():
    for name in recipe_names():
        load_config(name)
    assert Config.from_dict({}) == Config()
    lr = Config.from_dict({"train": {"lr": 1}}).train.lr
    assert lr == 1.0 and isinstance(lr, float)


def set_options(*pairs: str) -> Config:
    return build_config(build_parser().parse_args(["train", *(a for pair in pairs for a in ("--set", pair))]))


def test_set_reads_booleans_strictly_and_names_the_option():
    config = set_options("train.amp=off", "train.feature_cache= Yes ")
    assert (config.train.amp, config.train.feature_cache) == (False, True)
    for text, expected in (
        ("train.amp=maybe", "--set 'train.amp=maybe': expected true or false"),  # was read as False
        ("model.decoder_dim=abc", "--set 'model.decoder_dim=abc': expected int"),
        ("train.epochs=-1", "config: train.epochs = -1: must be at least 1"),
        ("data.upper=x", "--set 'data.upper=x': no config field data.upper"),  # a str method, not a field
        ("shapes.__class__=x", "--set 'shapes.__class__=x': no config field shapes.__class__"),
    ):
        with pytest.raises(ValueError) as raised:
            set_options(text)
        assert str(raised.value) == expected


@pytest.mark.parametrize(
    ("args", "expected"),
    [
        (["train", "--set", "shapes.min_objects=0"], "config: shapes.min_objects = 0: must be between 1 and 3"),
        (["shapes", "export", "OUT", "--image-size", "4"], "config: shapes.image_size = 4: must be at least 16"),
        (["shapes", "export", "OUT", "--n-train", "-3"], "config: shapes.n_train = -3: must be at least 1"),
    ],
)
def test_cli_refuses_bad_values_in_one_line_and_writes_nothing(tmp_path, capsys, args, expected):
    out = tmp_path / "out"
    args = [str(out) if a == "OUT" else a for a in args]
    assert main([*args, *(["--out", str(out)] if args[0] == "train" else [])]) == 1
    assert capsys.readouterr().err.strip().splitlines() == [f"captionlib: error: {expected}"]
    assert not out.exists()


def test_config_file_of_the_wrong_shape_names_the_file(tmp_path, capsys):
    path = tmp_path / "list.json"
    path.write_text(json.dumps([]))
    assert main(["train", "--config", str(path), "--out", str(tmp_path / "out")]) == 1
    assert capsys.readouterr().err.strip().splitlines() == [f"captionlib: error: {path}: config: expected an object of sections, got list"]


def test_sections_built_in_python_are_checked_too():
    from captionlib.config import ShapesConfig, TrainConfig

    with pytest.raises(ValueError, match=r"^config: shapes.min_objects = 0: must be between 1 and 3$"):
        ShapesConfig(min_objects=0)  # generate() would never return
    assert TrainConfig(lr=1).lr == 1.0 and isinstance(TrainConfig(lr=1).lr, float)


def test_config_file_with_a_bom_loads_and_one_that_is_not_utf8_names_the_file(tmp_path):
    path = tmp_path / "bom.json"
    path.write_bytes(b"\xef\xbb\xbf" + json.dumps({"train": {"epochs": 2}}).encode())
    assert load_config(str(path)).train.epochs == 2
    path.write_bytes(b'{"data": "caf\xe9"}')
    with pytest.raises(ValueError) as raised:
        load_config(str(path))
    assert str(raised.value) == f"{path}: not UTF-8 text (byte 0xe9)"
