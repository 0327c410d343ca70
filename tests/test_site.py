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
from browser_helpers import exercise_explorer

ROOT = Path(__file__).resolve().parents[1]
EXPLORER_PAGE = "notebooks/10_attention_explorer.html"
LOCAL_HOSTS = {"127.0.0.1", "localhost"}
# A page error of jupyter-book 1.0.4 itself on every page: sphinx-thebe's config script is included twice.
KNOWN_PAGE_ERRORS = {"Identifier 'THEBE_JS_URL' has already been declared"}

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


def is_local(url: str) -> bool:
    """True for this machine's server and for data:/blob: URLs (made in the page, not fetched)."""
    parsed = urlparse(url)
    return parsed.scheme in ("data", "blob") or parsed.hostname in LOCAL_HOSTS


def test_explorer_works_without_kernel_or_network(browser, server):
    context = browser.new_context(viewport={"width": 1280, "height": 1000})
    requests, page_errors, console_errors = [], [], []
    context.on("request", lambda request: requests.append(request.url))
    page = context.new_page()
    page.on("pageerror", lambda error: page_errors.append(str(error)))
    page.on("console", lambda message: console_errors.append(message.text) if message.type == "error" else None)
    page.goto(f"{server}/{EXPLORER_PAGE}", wait_until="load")
    try:
        exercise_explorer(page)
        search_fields = page.locator("button.search-button-field >> visible=true").count()
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
    assert not console_errors, console_errors  # a missing file (a 404) or a theme complaint shows up here
    # The sidebar's; pydata-sphinx-theme >= 0.16 also adds a page-wide header with another unless told not to.
    assert search_fields == 1, f"{search_fields} search fields on the page"
