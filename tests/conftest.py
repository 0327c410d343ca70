"""Shared fixtures and helpers: a tiny shapes config, a tiny trained checkpoint, the CLI in a fresh interpreter."""

from __future__ import annotations

import os
import subprocess
import sys

import pytest
from PIL import Image

from captionlib.config import Config


def square_on_grey(colour: tuple[int, int, int] = (200, 40, 40)) -> Image.Image:
    """A small shapes-like picture: a coloured square on grey."""
    image = Image.new("RGB", (64, 64), (128, 128, 128))
    image.paste(colour, (16, 16, 40, 40))
    return image


def run_cli(*args, cwd=None, env: dict[str, str] | None = None, timeout: float = 300) -> subprocess.CompletedProcess:
    """`python -m captionlib ARGS` in a fresh interpreter, as a user would run it; env adds to os.environ."""
    env = {**os.environ, "MPLBACKEND": "Agg", **(env or {})}
    command = [sys.executable, "-m", "captionlib", *map(str, args)]
    return subprocess.run(command, check=False, capture_output=True, text=True, cwd=cwd, env=env, timeout=timeout)


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


@pytest.fixture(scope="module")
def browser():
    """Headless Debian chromium driven by playwright, for tests/test_site.py and tests/test_lab.py."""
    from browser_helpers import CHROMIUM, LAUNCH_ARGS

    if not CHROMIUM.exists():
        pytest.skip(f"{CHROMIUM} not found: install Debian's chromium (`apt-get install -y chromium`; `make test` does it)")
    sync_api = pytest.importorskip("playwright.sync_api")
    with sync_api.sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=str(CHROMIUM), args=LAUNCH_ARGS)
        yield browser
        browser.close()
