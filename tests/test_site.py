"""The built book in a real browser: the attention explorer works with no kernel, and nothing loads from the internet."""

# The site is slow to build (it executes every notebook), so `make test` builds it once with `make site`
# and passes its folder in $CAPTIONLIB_SITE. Without that variable this test runs `jupyter-book build .`
# itself (quick when jupyter-cache and Sphinx are up to date).

from __future__ import annotations

import functools
import http.server
import os
import subprocess
import sys
import threading
from pathlib import Path
from urllib.parse import urlparse

import pytest

ROOT = Path(__file__).resolve().parents[1]
CHROMIUM = Path("/usr/lib/chromium/chromium")  # Debian's chromium: `apt-get install -y chromium` (make test does it)
EXPLORER_PAGE = "notebooks/09_attention_explorer.html"
LAUNCH_ARGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--no-first-run",
]
LOCAL_HOSTS = {"127.0.0.1", "localhost"}
# A page error of jupyter-book 1.0.4 itself on every page: sphinx-thebe's config script is included twice.
KNOWN_PAGE_ERRORS = {"Identifier 'THEBE_JS_URL' has already been declared"}

# Hash of the bytes behind an <img src> (blob: URLs change on every render, so compare contents).
IMAGE_DIGEST_JS = """async (img) => {
  const bytes = await (await fetch(img.src)).arrayBuffer();
  const digest = new Uint8Array(await crypto.subtle.digest("SHA-256", bytes));
  return Array.from(digest, (b) => b.toString(16).padStart(2, "0")).join("");
}"""

# True once the heatmap on show is no longer the <img> with this src.
HEATMAP_CHANGED_JS = """src => Array.from(document.querySelectorAll(".captionlib-explorer .captionlib-heatmaps img"))
  .some((img) => img.offsetParent !== null && img.src !== src)"""

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def site() -> Path:
    """The built site: $CAPTIONLIB_SITE, or _build/html after building the book here."""
    if os.environ.get("CAPTIONLIB_SITE"):
        html = Path(os.environ["CAPTIONLIB_SITE"])
    else:
        jupyter_book = Path(sys.executable).parent / "jupyter-book"
        subprocess.run([str(jupyter_book), "build", str(ROOT)], check=True, cwd=ROOT)
        html = ROOT / "_build" / "html"
    assert (html / EXPLORER_PAGE).is_file(), f"{html / EXPLORER_PAGE} missing: is the site built?"
    return html


@pytest.fixture(scope="module")
def server(site: Path):
    """Serve the site on 127.0.0.1 at a free port, from a thread; yields the base URL."""

    class QuietHandler(http.server.SimpleHTTPRequestHandler):
        def log_message(self, *args) -> None:
            pass

    httpd = http.server.ThreadingHTTPServer(("127.0.0.1", 0), functools.partial(QuietHandler, directory=str(site)))
    thread = threading.Thread(target=httpd.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{httpd.server_address[1]}"
    httpd.shutdown()
    thread.join()


@pytest.fixture(scope="module")
def browser():
    """Headless Debian chromium driven by playwright."""
    if not CHROMIUM.exists():
        pytest.skip(f"{CHROMIUM} not found: install Debian's chromium (`apt-get install -y chromium`; `make test` does it)")
    sync_api = pytest.importorskip("playwright.sync_api")
    with sync_api.sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=str(CHROMIUM), args=LAUNCH_ARGS)
        yield browser
        browser.close()


def is_local(url: str) -> bool:
    """True for this machine's server and for data:/blob: URLs (made in the page, not fetched)."""
    parsed = urlparse(url)
    return parsed.scheme in ("data", "blob") or parsed.hostname in LOCAL_HOSTS


def visible_heatmap(page):
    """The heatmap <img> shown right now in the explorer's selected panel."""
    return page.locator(".captionlib-explorer .captionlib-heatmaps img").filter(visible=True).first


def highlighted_word(page) -> str:
    """The caption word marked in the visible heatmap page."""
    return page.locator(".captionlib-explorer .captionlib-heatmaps mark").filter(visible=True).first.inner_text()


def exercise_explorer(page) -> None:
    """Render, move the word slider, switch image; fail unless the heatmap follows each time."""
    # The widgets render from the saved state: an image chooser, a word slider and a heatmap.
    slider = page.locator(".captionlib-explorer .captionlib-word-slider").filter(visible=True).first
    slider.wait_for(state="visible", timeout=30_000)
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


def test_explorer_works_without_kernel_or_network(browser, server):
    context = browser.new_context(viewport={"width": 1280, "height": 1000})
    requests, page_errors = [], []
    context.on("request", lambda request: requests.append(request.url))
    page = context.new_page()
    page.on("pageerror", lambda error: page_errors.append(str(error)))
    page.goto(f"{server}/{EXPLORER_PAGE}", wait_until="load")
    try:
        exercise_explorer(page)
        if os.environ.get("CAPTIONLIB_SITE_SCREENSHOT"):  # a full-page picture, for a look by eye
            page.screenshot(path=os.environ["CAPTIONLIB_SITE_SCREENSHOT"], full_page=True)
    except Exception as error:  # say what else went wrong: a missing script often comes from a CDN
        remote = sorted({url for url in requests if not is_local(url)})
        raise AssertionError(f"explorer check failed; remote requests: {remote}; page errors: {page_errors}") from error
    finally:
        context.close()

    remote = sorted({url for url in requests if not is_local(url)})
    assert not remote, f"the page fetched from outside this machine: {remote}"
    assert any(url.endswith(".js") or ".js?" in url for url in requests), "no scripts were requested at all"
    assert not [e for e in page_errors if e not in KNOWN_PAGE_ERRORS], page_errors
