"""Serve the book's JavaScript from the site itself: require.js, the ipywidgets HTML manager and MathJax, from npm."""

# Sphinx extension (listed in _config.yml) and script (`python book/_ext/vendored_js.py` stages the files).
# `npm ci` installs the versions pinned in package-lock.json; the files the pages load are copied into
# _build/vendored_static/vendor/, which Sphinx copies to _static/vendor/. _config.yml points myst-nb's
# nb_ipywidgets_js and Sphinx's mathjax_path at them, so a page never asks a CDN for code.
# Pages with widgets also get two small scripts from book/_static/ that adapt the widget manager to this
# setup: where its fonts are (widgets-require-config.js) and MathJax 3 instead of 2 (widgets-mathjax3.js).

from __future__ import annotations

import shutil
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
NODE_MODULES = ROOT / "node_modules"
STAGE = ROOT / "_build" / "vendored_static"  # becomes the site's _static/
OWN_STATIC = ROOT / "book" / "_static"  # the book's own static files, written by hand
HTML_MANAGER = "vendor/html-manager/"  # embed-amd.js and the icon fonts it loads from its own folder

# destination under STAGE -> (package folder under node_modules, files or folders to copy from it)
VENDORED = {
    "vendor/require.js": ("requirejs", ["require.js"]),
    HTML_MANAGER: ("@jupyter-widgets/html-manager/dist", ["embed-amd.js", "*.woff2", "*.woff", "*.ttf", "*.eot", "*.svg"]),
    # tex-mml-chtml.js plus what it loads on demand: fonts, TeX extensions, the menu and accessibility parts.
    "vendor/mathjax/": (
        "mathjax/es5",
        ["tex-mml-chtml.js", "input", "output/chtml", "output/chtml.js", "ui", "a11y", "sre", "adaptors"],
    ),
}


def npm_ci() -> None:
    """Install node_modules from package-lock.json unless it is already up to date."""
    installed = NODE_MODULES / ".package-lock.json"  # written by npm at the end of every install
    lock = ROOT / "package-lock.json"
    if installed.exists() and installed.stat().st_mtime >= lock.stat().st_mtime:
        return
    npm = shutil.which("npm")
    if npm is None:
        raise RuntimeError("npm not found: the book serves require.js, the widget manager and MathJax from npm packages")
    subprocess.run([npm, "ci", "--ignore-scripts", "--no-audit", "--no-fund"], cwd=ROOT, check=True)


def stage() -> Path:
    """Copy the vendored files into STAGE (fresh each build) and return STAGE."""
    npm_ci()
    shutil.rmtree(STAGE, ignore_errors=True)
    for destination, (package, patterns) in VENDORED.items():
        source = NODE_MODULES / package
        for pattern in patterns:
            matches = sorted(source.glob(pattern))
            if not matches:
                raise RuntimeError(f"{source / pattern}: missing; delete node_modules and rebuild")
            for path in matches:
                into_folder = destination.endswith("/")  # keep the file's path inside the package
                target = STAGE / destination / path.relative_to(source) if into_folder else STAGE / destination
                target.parent.mkdir(parents=True, exist_ok=True)
                (shutil.copytree if path.is_dir() else shutil.copy2)(path, target)
    return STAGE


def on_config_inited(app, config) -> None:
    """Stage the files, serve them as static files, and check that every configured script exists."""
    config.html_static_path += [str(stage()), str(OWN_STATIC)]
    scripts = [*config.nb_ipywidgets_js, config.mathjax_path]
    for script in scripts:
        if "://" in script:
            raise RuntimeError(f"{script}: the book loads no script from another site; vendor it in {__file__}")
        if not (STAGE / script).is_file():
            raise RuntimeError(f"{script}: configured in _config.yml but not among the vendored files in {STAGE}")


def on_page_context(app, pagename, templatename, context, doctree) -> None:
    """On pages with widgets, configure require.js before it loads and bridge MathJax 3 after it loads."""
    scripts = [str(getattr(js, "filename", js) or "") for js in context.get("script_files", [])]
    if not any(src.endswith("embed-amd.js") for src in scripts):
        return
    app.add_js_file("widgets-require-config.js", priority=499)  # before require.js (myst-nb adds it at 500)
    app.add_js_file("widgets-mathjax3.js", priority=501, loading_method="defer")  # after the deferred MathJax


def setup(app):
    app.connect("config-inited", on_config_inited)
    app.connect("html-page-context", on_page_context, priority=900)  # after myst-nb has added the widget scripts
    return {"parallel_read_safe": True, "parallel_write_safe": True}


if __name__ == "__main__":
    print(stage(), file=sys.stderr)
