"""The shipped Kaggle recipe: its settings, and its train + evaluate commands on a Flickr8k Kaggle-layout fixture."""

from __future__ import annotations

import json

import pytest
from conftest import run_cli
from fixtures import write_kaggle

from captionlib.checkpoint import load_checkpoint
from captionlib.config import load_config, recipe_names
from captionlib.train import BEST, LAST

# What the recipe must keep from the paper (§4.3, §5): 14 x 14 ResNet grid, 512-wide model, threshold 5. 448 px,
# because ResNet-50 divides by 32: at 224 px its 7 x 7 map would only be copied into 2 x 2 blocks (chapter 02).
PAPER_SIZES = {
    "model.encoder": "resnet50",
    "model.pretrained": True,
    "model.grid_size": 14,
    "model.image_size": 448,
    "model.embed_dim": 512,
    "model.attention_dim": 512,
    "model.decoder_dim": 512,
    "train.vocab_threshold": 5,
}

# The recipe's own command line, shrunk to CPU size: a frozen MobileNetV2 (whose weights the test setup installs)
# keeps the recipe's frozen-encoder + feature-cache path; a 2 x 2 grid at 64 px and a narrow decoder keep it quick.
CPU_SIZE = {
    "model.encoder": "mobilenet_v2",
    "model.image_size": 64,
    "model.grid_size": 2,
    "model.embed_dim": 16,
    "model.attention_dim": 16,
    "model.decoder_dim": 32,
    "train.epochs": 2,
    "train.batch_images": 4,
    "train.vocab_threshold": 1,
    "train.num_workers": 0,
}


def test_recipe_is_shipped_with_the_paper_sizes(tmp_path):
    assert "flickr8k_kaggle" in recipe_names()
    cfg = load_config("flickr8k_kaggle").to_dict()
    for key, value in PAPER_SIZES.items():
        section, name = key.split(".")
        assert cfg[section][name] == value, key
    assert cfg["data"] == "/kaggle/input/flickr8k" and cfg["model"]["fine_tune_blocks"] == 0 and cfg["train"]["feature_cache"]


def test_recipe_grid_is_the_encoders_own_not_pooled_up():
    """The last block's map already has grid_size x grid_size cells, so adaptive pooling copies nothing."""
    import torch

    from captionlib.encoder import Encoder

    model = load_config("flickr8k_kaggle").model
    model.pretrained = False  # shapes only: no weights needed
    size = model.image_size
    with torch.device("meta"):
        last_block = Encoder(model).stages(torch.empty(1, 3, size, size))  # (1, D, H', W')
    assert tuple(last_block.shape[2:]) == (model.grid_size, model.grid_size)


def test_unknown_recipe_or_bad_field_is_a_one_line_error(tmp_path):
    with pytest.raises(FileNotFoundError, match="no-such-recipe: no such config file or recipe .*flickr8k_kaggle"):
        load_config("no-such-recipe")
    bad = tmp_path / "bad.json"
    bad.write_text(json.dumps({"train": {"epoch": 3}}))
    with pytest.raises(ValueError, match=r"bad\.json: config: unknown field train\.epoch"):
        load_config(str(bad))
    bad.write_text("{not json")
    with pytest.raises(ValueError, match=r"bad\.json: not valid JSON"):
        load_config(str(bad))


@pytest.mark.slow
def test_recipe_trains_and_evaluates_a_kaggle_layout_fixture(tmp_path):
    data = tmp_path / "flickr8k"
    write_kaggle(data, n=16)  # Images/ + captions.txt + split lists, as the Kaggle data set (plus lists)
    env = {"CAPTIONLIB_CACHE": str(tmp_path / "cache"), "OMP_NUM_THREADS": "1"}
    sets = [f"--set={key}={value}" for key, value in CPU_SIZE.items()]
    run = tmp_path / "run"
    trained = run_cli("train", "--config", "flickr8k_kaggle", "--data", data, "--out", run, "--no-progress", *sets, env=env, timeout=600)
    assert trained.returncode == 0, trained.stderr[-3000:]
    assert "epoch 2/2" in trained.stdout
    assert any((tmp_path / "cache" / "features").iterdir())  # the frozen encoder's annotations were cached

    config = load_checkpoint(run / LAST)["config"]
    assert config["data"] == str(data) and config["train"]["attention_lambda"] == load_config("flickr8k_kaggle").train.attention_lambda
    assert config["train"]["max_caption_len"] == 40 and config["model"]["dropout"] == 0.5  # the rest is the recipe's

    evaluated = run_cli("evaluate", "--checkpoint", run / BEST, "--beam-size", 3, "--metrics", "coco", "--json", env=env, timeout=600)
    assert evaluated.returncode == 0, evaluated.stderr[-3000:]
    result = json.loads(evaluated.stdout.strip().splitlines()[-1])
    assert all(0.0 <= result[f"bleu{n}"] <= 1.0 for n in range(1, 5)) and "grounding" not in result
    assert {"coco_bleu4", "cider", "rouge_l"} <= set(result)
