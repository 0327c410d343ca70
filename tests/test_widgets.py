"""The attention explorer and CaptionBot widgets, without a browser (see test_site.py for the page)."""

from __future__ import annotations

import io

import numpy as np
import torch
from PIL import Image

from captionlib.captioner import Captioner
from captionlib.widgets import DISPLAY_SIDE, AttentionPanel, attention_explorer, caption_bot, heatmap


def png_size(data: bytes) -> tuple[int, int]:
    with Image.open(io.BytesIO(data)) as image:
        return image.size


def test_panel_has_one_position_and_one_distinct_heatmap_per_word():
    words = ["a", "red", "circle"]
    alphas = torch.softmax(torch.randn(len(words), 16, generator=torch.Generator().manual_seed(0)), dim=1)  # (T, P)
    panel = AttentionPanel(Image.new("RGB", (64, 64), "grey"), words, alphas, grid_size=4)
    assert len(panel.slider.options) == len(panel.frames) == len(panel.stack.children) == len(words)
    assert len(set(panel.frames)) == len(words)
    assert panel.link.source == (panel.slider, "index") and panel.link.target == (panel.stack, "selected_index")
    assert panel.format == "png" and all(png_size(f) == (DISPLAY_SIDE, DISPLAY_SIDE) for f in panel.frames)


def test_photo_heatmaps_are_shrunk_to_jpeg():
    panel = AttentionPanel(Image.new("RGB", (600, 300), "grey"), ["a"], torch.full((1, 16), 1 / 16), grid_size=4)
    assert panel.format == "jpeg" and png_size(panel.frames[0]) == (DISPLAY_SIDE, DISPLAY_SIDE // 2)


def test_heatmap_is_brightest_on_the_attended_cell():
    grid, row, col = 4, 1, 2
    alpha = torch.zeros(grid * grid)
    alpha[row * grid + col] = 1.0  # all attention on one cell, row-major like the encoder
    pixels = np.asarray(heatmap(Image.new("RGB", (64, 64), "black"), alpha, grid))[..., 0]  # (H, W)
    y, x = np.unravel_index(pixels.argmax(), pixels.shape)
    assert (y // 16, x // 16) == (row, col)


def test_explorer_and_caption_bot_with_a_trained_model(tiny_checkpoint):
    captioner = Captioner.from_checkpoint(tiny_checkpoint)
    images = [Image.new("RGB", (64, 64), colour) for colour in ("red", "blue")]
    explorer = attention_explorer(captioner, images, beam_size=2, names=["red", "blue"])
    assert len(explorer.panels) == len(explorer.stack.children) == 2
    assert [label for label, _ in explorer.chooser.options] == ["red", "blue"]

    bot = caption_bot(captioner)
    bot.show(b"not an image", "notes.txt")
    assert bot.image is None and "notes.txt" in bot.error and bot.result.children == ()
    upload = io.BytesIO()
    images[0].save(upload, format="PNG")
    data = upload.getvalue()
    # An upload as the browser sends it: the file's bytes arrive as a memoryview and stay in memory.
    sent = {"name": "red.png", "type": "image/png", "size": len(data), "content": memoryview(data), "last_modified": 0}
    bot.upload.set_state({"value": [sent]})
    assert bot.error is None and len(bot.result.children) == 1 and bot.image.size == images[0].size
    bot.beam.value = 1  # moving the slider captions again, greedily
    assert bot.status.value.startswith("beam width 1:")
