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
TRANSFORMER_PAGE = "notebooks/13_from_attention_to_transformers.html"  # the Transformer's maps, by head
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


@pytest.mark.parametrize("path", [EXPLORER_PAGE, TRANSFORMER_PAGE])
def test_explorer_works_without_kernel_or_network(browser, server, path):
    context = browser.new_context(viewport={"width": 1280, "height": 1000})
    requests, page_errors, console_errors = [], [], []
    context.on("request", lambda request: requests.append(request.url))
    page = context.new_page()
    page.on("pageerror", lambda error: page_errors.append(str(error)))
    page.on("console", lambda message: console_errors.append(message.text) if message.type == "error" else None)
    page.goto(f"{server}/{path}", wait_until="load")
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


# Buttons that link into the repository or launch a notebook from it (sphinx-book-theme and pydata-sphinx-theme classes).
REPOSITORY_BUTTONS = (".dropdown-launch-buttons", ".btn-source-repository-button", ".dropdown-source-buttons",
                      ".btn-source-edit-button", ".btn-source-issues-button", ".btn-source-file-button", ".editthispage")  # fmt: skip


def test_no_repository_buttons_while_its_url_is_unset(browser, server):
    """repository.url empty in _config.yml (the default): no launch, repository or edit button, no header link to nowhere."""
    from captionlib.publish import repository_url

    if repository_url(ROOT / "_config.yml"):
        pytest.skip("repository.url is set in _config.yml: the site links to the repository")
    page = browser.new_page()
    try:
        for path in ("book/intro.html", EXPLORER_PAGE):  # a page, and a notebook: launch buttons go on notebooks only
            page.goto(f"{server}/{path}", wait_until="load")
            buttons = page.locator(", ".join(REPOSITORY_BUTTONS))
            assert buttons.count() == 0, f"{path}: {buttons.count()} repository or launch buttons, but no repository URL"
            hrefs = page.locator(".bd-header-article a[href]").evaluate_all("links => links.map((a) => a.getAttribute('href'))")
            dead = [href for href in hrefs if href.strip() in ("", "#") or "github.com" in href]
            assert not dead, f"{path}: header links to nowhere: {dead}"
    finally:
        page.close()
