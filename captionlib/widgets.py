"""Attention explorer and CaptionBot: ipywidgets showing where the model looked for each word."""

# The explorer is pre-rendered: every word's heatmap is computed in Python once, and the sliders are
# `jslink`ed to `Stack`s in the browser, so it keeps working on a static web page with no kernel.
# CaptionBot runs the model on an uploaded image, so it needs a live kernel.

from __future__ import annotations

import html
import io
from collections.abc import Sequence

import ipywidgets as widgets
import numpy as np
import torch
from PIL import Image

from .captioner import Captioner
from .images import ImageLoadError, open_image
from .plots import upsample_alpha

DISPLAY_SIDE = 192  # px, longer side: the attention grid is easy to see, and the saved widget state stays small
OVERLAY = 0.6  # weight of the attention map over the image, as in plots.attention_figure


def display_copy(image: Image.Image, side: int = DISPLAY_SIDE) -> Image.Image:
    """The image with its longer side = `side`: enlarged pixel-exact (nearest), or shrunk with antialiasing."""
    scale = side / max(image.size)
    size = (max(1, round(image.width * scale)), max(1, round(image.height * scale)))
    return image.resize(size, Image.NEAREST if scale >= 1 else Image.LANCZOS)


def encode(image: Image.Image, fmt: str) -> bytes:
    """PIL image -> PNG or JPEG bytes, in memory."""
    buffer = io.BytesIO()
    image.save(buffer, format=fmt, **({"quality": 85} if fmt == "jpeg" else {}))
    return buffer.getvalue()


def heatmap(image: Image.Image, alpha: torch.Tensor, grid_size: int) -> Image.Image:
    """One word's α (P,) as a light overlay on the image: bright where the model looked."""
    heat = upsample_alpha(alpha, grid_size, image.size)  # (H, W) in [0, 1]
    pixels = np.asarray(image, dtype=np.float32)  # (H, W, 3)
    blended = (1 - OVERLAY) * pixels + OVERLAY * 255.0 * heat[..., None]  # (H, W, 3)
    return Image.fromarray(blended.round().astype(np.uint8))


def image_widget(data: bytes, fmt: str, size: tuple[int, int]) -> widgets.Image:
    """An Image widget shown at its own pixel size: not stretched to the page width, not squeezed by its neighbours."""
    layout = widgets.Layout(width=f"{size[0]}px", height=f"{size[1]}px", flex="0 0 auto", object_fit="contain")
    return widgets.Image(value=data, format=fmt, layout=layout)


def highlighted(words: Sequence[str], index: int) -> str:
    """The caption as HTML with word `index` marked."""
    marked = [f"<mark><b>{html.escape(w)}</b></mark>" if i == index else html.escape(w) for i, w in enumerate(words)]
    return " ".join(marked)


class AttentionPanel(widgets.VBox):
    """One image: a word slider jslinked to a Stack holding one pre-rendered heatmap per word."""

    def __init__(self, image: Image.Image, words: Sequence[str], alphas: torch.Tensor, grid_size: int):
        shown = display_copy(image)
        # Enlarged images are the flat-coloured shapes world: PNG keeps their edges crisp.
        # Photos were shrunk, and JPEG stores them several times smaller.
        self.format = "png" if max(image.size) <= DISPLAY_SIDE else "jpeg"
        self.words = list(words)
        self.frames = [encode(heatmap(shown, alpha, grid_size), self.format) for alpha in alphas]  # one per word
        original = image_widget(encode(shown, self.format), self.format, shown.size)
        if not self.words:  # possible for an untrained model
            self.stack = self.slider = self.link = None
            super().__init__([widgets.HTML("<i>The model produced an empty caption.</i>"), original])
            return
        pages = [
            widgets.VBox([widgets.HTML(highlighted(self.words, i)), image_widget(frame, self.format, shown.size)])
            for i, frame in enumerate(self.frames)
        ]
        # The heatmap side takes the width the input leaves (its caption wraps there), and no less than the picture.
        self.stack = widgets.Stack(pages, selected_index=0, layout=widgets.Layout(flex="1 1 0", min_width=f"{shown.size[0]}px"))
        self.slider = widgets.SelectionSlider(
            options=[(word, i) for i, word in enumerate(self.words)], description="word", continuous_update=True
        )
        self.link = widgets.jslink((self.slider, "index"), (self.stack, "selected_index"))  # runs in the browser
        self.slider.add_class("captionlib-word-slider")  # CSS classes let the browser test find the parts
        self.stack.add_class("captionlib-heatmaps")
        # Bottom-aligned, so the two pictures line up however many lines the caption above the heatmap takes;
        # on a narrow screen the heatmap wraps below the input instead of squeezing it.
        side_by_side = widgets.Layout(align_items="flex-end", flex_flow="row wrap")
        images = widgets.HBox([widgets.VBox([widgets.HTML("input"), original]), self.stack], layout=side_by_side)
        super().__init__([self.slider, images])


class AttentionExplorer(widgets.VBox):
    """Several AttentionPanels behind an image chooser, itself jslinked to an outer Stack."""

    def __init__(self, panels: Sequence[AttentionPanel], names: Sequence[str]):
        self.panels = list(panels)
        self.chooser = widgets.ToggleButtons(options=[(name, i) for i, name in enumerate(names)], description="image")
        self.stack = widgets.Stack(self.panels, selected_index=0)
        self.link = widgets.jslink((self.chooser, "index"), (self.stack, "selected_index"))
        self.chooser.add_class("captionlib-image-chooser")
        super().__init__([self.chooser, self.stack])
        self.add_class("captionlib-explorer")


def attention_explorer(
    captioner: Captioner, images: Sequence[Image.Image], beam_size: int = 3, names: Sequence[str] | None = None
) -> AttentionExplorer:
    """Caption `images` and build an explorer that needs no kernel once displayed."""
    captions = captioner.caption(list(images), beam_size)
    panels = [AttentionPanel(im, captioner.words(c), c.alphas, captioner.grid_size) for im, c in zip(images, captions)]
    return AttentionExplorer(panels, names or [f"image {i + 1}" for i in range(len(panels))])


NEEDS_KERNEL = (
    "<i>CaptionBot runs the model, so it needs a live Python kernel (Jupyter, Colab or Binder). "
    "On the static web page the upload button and the beam slider do nothing.</i>"
)


class CaptionBot(widgets.VBox):
    """Upload an image (kept in memory, never written to disk), pick a beam width, see caption and attention."""

    def __init__(self, captioner: Captioner, beam_size: int = 3, max_beam_size: int = 5):
        self.captioner = captioner
        self.image: Image.Image | None = None
        self.error: str | None = None  # why the last file was refused, if it was
        self.upload = widgets.FileUpload(accept="image/*", multiple=False, description="Upload image")
        self.beam = widgets.IntSlider(value=beam_size, min=1, max=max_beam_size, description="beam width")
        self.status = widgets.HTML("No image yet.")
        self.result = widgets.Box()
        self.upload.observe(self._on_upload, "value")
        self.beam.observe(lambda _: self.refresh(), "value")
        super().__init__([widgets.HTML(NEEDS_KERNEL), widgets.HBox([self.upload, self.beam]), self.status, self.result])
        self.add_class("captionlib-caption-bot")
        self.status.add_class("captionlib-caption-bot-status")
        self.beam.add_class("captionlib-beam-slider")

    def _on_upload(self, change: dict) -> None:
        if change["new"]:  # a tuple of dicts with name, type, size and content (a memoryview)
            upload = change["new"][0]
            self.show(bytes(upload["content"]), upload["name"])

    def show(self, data: bytes, name: str = "<upload>") -> None:
        """Decode image bytes in memory and caption them; a bad file becomes a one-line message."""
        try:
            self.image, self.error = open_image(data, name=name), None
        except ImageLoadError as error:
            self.image, self.error, self.result.children = None, str(error), ()
            self.status.value = f"<b>Cannot use this file:</b> {html.escape(self.error)}"
            return
        self.refresh()

    def refresh(self) -> None:
        """Caption the current image with the current beam width."""
        if self.image is None:
            return
        (caption,) = self.captioner.caption([self.image], self.beam.value)
        words = self.captioner.words(caption)
        note = "" if caption.finished else " (unfinished: no &lt;end&gt; within the length limit)"
        self.status.value = f"beam width {self.beam.value}: <b>{html.escape(' '.join(words))}</b>{note}"
        self.result.children = (AttentionPanel(self.image, words, caption.alphas, self.captioner.grid_size),)


def caption_bot(captioner: Captioner, beam_size: int = 3) -> CaptionBot:
    """A CaptionBot widget for `captioner` (needs a live kernel)."""
    return CaptionBot(captioner, beam_size)
