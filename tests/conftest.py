"""Shared fixtures: a tiny shapes config and a tiny trained checkpoint (seconds, not minutes)."""

from __future__ import annotations

import pytest

from captionlib.config import Config


def tiny_config(**train) -> Config:
    """A config that trains in a few seconds on 2 CPU cores; not for quality."""
    cfg = Config()
    cfg.shapes.n_train, cfg.shapes.n_val, cfg.shapes.n_test = 96, 16, 16
    cfg.model.embed_dim, cfg.model.attention_dim, cfg.model.decoder_dim, cfg.model.encoder_channels = 16, 16, 32, 32
    cfg.train.epochs, cfg.train.batch_images = 2, 16
    for key, value in train.items():
        setattr(cfg.train, key, value)
    return cfg


@pytest.fixture(scope="session")
def tiny_checkpoint(tmp_path_factory):
    """best.pt of a tiny model trained once per test session."""
    from captionlib.train import train

    out = tmp_path_factory.mktemp("tiny-run")
    return train(tiny_config(), out, progress=False, log=lambda _: None)
