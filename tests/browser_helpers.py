"""Browser helpers shared by the site test and the JupyterLab test (the `browser` fixture is in conftest.py)."""

from __future__ import annotations

from pathlib import Path

CHROMIUM = Path("/usr/lib/chromium/chromium")  # Debian's chromium: `apt-get install -y chromium` (make test does it)
LAUNCH_ARGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--no-first-run",
]

# Hash of the bytes behind an <img src> (blob: URLs change on every render, so compare contents).
IMAGE_DIGEST_JS = """async (img) => {
  const bytes = await (await fetch(img.src)).arrayBuffer();
  const digest = new Uint8Array(await crypto.subtle.digest("SHA-256", bytes));
  return Array.from(digest, (b) => b.toString(16).padStart(2, "0")).join("");
}"""

# True once the heatmap on show is no longer the <img> with this src.
HEATMAP_CHANGED_JS = """src => Array.from(document.querySelectorAll(".captionlib-explorer .captionlib-heatmaps img"))
  .some((img) => img.offsetParent !== null && img.src !== src)"""


def visible_heatmap(page):
    """The heatmap <img> shown right now in the explorer's selected panel."""
    return page.locator(".captionlib-explorer .captionlib-heatmaps img").filter(visible=True).first


def highlighted_word(page) -> str:
    """The caption word marked in the visible heatmap page."""
    return page.locator(".captionlib-explorer .captionlib-heatmaps mark").filter(visible=True).first.inner_text()


def exercise_explorer(page, timeout: float = 30_000) -> None:
    """Render, move the word slider, switch image; fail unless the heatmap follows each time.

    `timeout` (ms) bounds the wait for the widgets to appear: from saved state on the static page, from a
    kernel still running the chapter in JupyterLab.
    """
    # The widgets render: an image chooser, a word slider and a heatmap.
    slider = page.locator(".captionlib-explorer .captionlib-word-slider").filter(visible=True).first
    slider.wait_for(state="visible", timeout=timeout)
    visible_heatmap(page).wait_for(state="visible")
    assert page.locator(".captionlib-explorer .captionlib-image-chooser button").count() >= 2
    readout, handle = slider.locator(".widget-readout"), slider.locator(".noUi-handle")
    caption = page.locator(".captionlib-explorer .captionlib-heatmaps .widget-html").filter(visible=True).first
    positions = int(float(handle.get_attribute("aria-valuemax"))) + 1
    assert positions == len(caption.inner_text().split()), "one slider position per caption word"
    assert highlighted_word(page) == readout.inner_text()
    first_src, first_digest = visible_heatmap(page).get_attribute("src"), visible_heatmap(page).evaluate(IMAGE_DIGEST_JS)

    # Move the word slider with the keyboard: jslink (in the browser) must switch the heatmap.
    handle.focus()
    page.keyboard.press("ArrowRight")
    page.wait_for_function(HEATMAP_CHANGED_JS, arg=first_src)
    second_src, second_digest = visible_heatmap(page).get_attribute("src"), visible_heatmap(page).evaluate(IMAGE_DIGEST_JS)
    assert second_digest != first_digest, "the slider moved but the heatmap's pixels did not change"
    assert highlighted_word(page) == readout.inner_text(), "heatmap page and slider disagree on the word"

    # Choose another image: the outer Stack switches panels, so the heatmap changes again.
    page.locator(".captionlib-explorer .captionlib-image-chooser button").nth(1).click()
    page.wait_for_function(HEATMAP_CHANGED_JS, arg=second_src)
    assert visible_heatmap(page).evaluate(IMAGE_DIGEST_JS) not in (first_digest, second_digest)
