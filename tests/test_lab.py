"""Chapter 10 in JupyterLab, in a real browser: the explorer's widgets render live, and CaptionBot captions an upload.

This is how readers who run `jupyter lab notebooks/` meet the widgets; tests/test_site.py checks the static book.
"""

from __future__ import annotations

import io
import json
import os
import shutil
import socket
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import pytest
from browser_helpers import exercise_explorer
from conftest import square_on_grey

ROOT = Path(__file__).resolve().parents[1]
CHAPTER = "10_attention_explorer.ipynb"
BOT = ".captionlib-caption-bot"
BOT_STATUS = ".captionlib-caption-bot-status"

# The notebook on show has a running kernel that is waiting for work.
KERNEL_IDLE_JS = """() => {
  const widget = window.jupyterapp && window.jupyterapp.shell.currentWidget;
  const kernel = widget && widget.sessionContext && widget.sessionContext.session && widget.sessionContext.session.kernel;
  return Boolean(kernel) && kernel.status === "idle";
}"""

pytestmark = pytest.mark.slow


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture(scope="module")
def lab(tmp_path_factory):
    """JupyterLab serving a copy of chapter 10 (running it autosaves outputs: never into the repository)."""
    root = tmp_path_factory.mktemp("lab")
    shutil.copy(ROOT / "notebooks" / CHAPTER, root / CHAPTER)
    settings = root.parent / "lab-settings"  # outside the served folder
    tracker = settings / "@jupyterlab" / "notebook-extension" / "tracker.jupyterlab-settings"
    tracker.parent.mkdir(parents=True)
    tracker.write_text(json.dumps({"windowingMode": "none"}))  # render every cell, not only those on screen
    news = settings / "@jupyterlab" / "apputils-extension" / "notification.jupyterlab-settings"
    news.parent.mkdir(parents=True)
    news.write_text(json.dumps({"fetchNews": "false"}))  # no "Jupyter news?" prompt, no request for it
    port = free_port()
    command = [
        sys.executable, "-m", "jupyterlab", "--no-browser", "--ServerApp.ip=127.0.0.1", f"--ServerApp.port={port}",
        "--IdentityProvider.token=", "--ServerApp.password=", f"--ServerApp.root_dir={root}", "--allow-root",
        "--LabApp.extension_manager=readonly",  # no PyPI queries
        "--LabApp.expose_app_in_browser=True",  # window.jupyterapp, as JupyterLab's own browser tests use it
    ]  # fmt: skip
    env = {**os.environ, "JUPYTERLAB_SETTINGS_DIR": str(settings), "MPLBACKEND": "Agg"}
    server = subprocess.Popen(command, cwd=root, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    url = f"http://127.0.0.1:{port}"
    try:
        for _ in range(120):
            try:
                urllib.request.urlopen(f"{url}/api/status", timeout=1)
                break
            except OSError:
                if server.poll() is not None:
                    pytest.fail(f"jupyter lab exited: {server.stderr.read()[-2000:]}")
                time.sleep(0.5)
        else:
            pytest.fail("jupyter lab did not answer within 60 s")
        yield url, root
    finally:
        server.terminate()
        server.wait(timeout=30)


def png_bytes(colour: tuple[int, int, int]) -> bytes:
    """square_on_grey as the bytes of a PNG file, for the upload."""
    buffer = io.BytesIO()
    square_on_grey(colour).save(buffer, "PNG")
    return buffer.getvalue()


def test_chapter_10_widgets_work_in_jupyterlab(browser, lab):
    url, root = lab
    context = browser.new_context(viewport={"width": 1400, "height": 1000})
    page = context.new_page()
    page_errors = []
    page.on("pageerror", lambda error: page_errors.append(str(error)))
    try:
        page.goto(f"{url}/lab/tree/{CHAPTER}", wait_until="load")
        page.wait_for_function(KERNEL_IDLE_JS, timeout=120_000)
        page.evaluate("() => { window.jupyterapp.commands.execute('notebook:run-all-cells'); }")  # not awaited: it runs long

        # The explorer renders from the live kernel: same checks as on the static page.
        exercise_explorer(page, timeout=180_000)

        # CaptionBot: the chapter shows a caption of its own upload; a new upload must replace it.
        status = page.locator(f"{BOT} {BOT_STATUS}")
        status.wait_for(state="visible", timeout=180_000)
        page.wait_for_function(f"() => document.querySelector('{BOT_STATUS}').innerText.startsWith('beam width 3:')")
        before = status.inner_text()
        with page.expect_file_chooser() as chooser:  # what the reader's click on "Upload image" opens
            page.locator(f"{BOT} .widget-upload").click()
        chooser.value.set_files({"name": "red_square.png", "mimeType": "image/png", "buffer": png_bytes((220, 30, 30))})
        page.wait_for_function(
            "([selector, before]) => document.querySelector(selector).innerText !== before", arg=[BOT_STATUS, before], timeout=60_000
        )
        caption = status.inner_text()
        assert caption.startswith("beam width 3:") and "red" in caption, caption
        assert page.locator(f"{BOT} .captionlib-heatmaps img").filter(visible=True).count() == 1

        # The beam-width slider re-captions through the kernel.
        page.locator(f"{BOT} .captionlib-beam-slider .noUi-handle").focus()
        page.keyboard.press("ArrowLeft")
        page.wait_for_function(f"() => document.querySelector('{BOT_STATUS}').innerText.startsWith('beam width 2:')", timeout=60_000)
    finally:
        context.close()

    # The upload lived in memory only: the served folder holds the notebook and Jupyter's own files, no image.
    written = {p.name for p in root.rglob("*") if p.is_file()}
    assert not [name for name in written if name.endswith(".png")], written
    assert not page_errors, page_errors
