"""Paper-to-code references whose line numbers are found at build time from marker text in the source."""

# A marker is any text that occurs on exactly one line of the file, usually the equation comment
# (`# (B, k, P)  eq. 4`). Nothing is typed by hand: a marker that is missing or ambiguous stops the build.
#
#   {code-line}`captionlib/attention.py::eq. 4`   ->  attention.py:33 (a link) in SoftAttention.score
#
#   ```{code-at} captionlib/decoder.py
#   :pyobject: Decoder.step
#
#   eqs. 1-3
#   eq. 7 (tanh
#   ```                                           ->  the function with its real line numbers, markers highlighted

from __future__ import annotations

import ast
from pathlib import Path
from typing import ClassVar

from docutils import nodes
from docutils.parsers.rst import directives
from sphinx.errors import ExtensionError
from sphinx.util.docutils import SphinxDirective, SphinxRole

ROOT = Path(__file__).resolve().parents[2]


def source_lines(path: str) -> list[str]:
    """Lines of a repository file, or a build error naming it."""
    file = ROOT / path
    if not file.is_file():
        raise ExtensionError(f"paper-to-code: {path} does not exist")
    return file.read_text(encoding="utf-8").splitlines()


def find_marker(path: str, marker: str) -> int:
    """1-based number of the only line of `path` containing `marker`."""
    hits = [i for i, line in enumerate(source_lines(path), start=1) if marker in line]
    if len(hits) != 1:
        found = "not found" if not hits else f"found on lines {hits}, make it unique"
        raise ExtensionError(f"paper-to-code: marker {marker!r} {found} in {path}")
    return hits[0]


def definitions(path: str) -> list[tuple[str, int, int]]:
    """(qualified name, first line, last line) of every function and class in the file, outermost first."""
    found = []

    def visit(node: ast.AST, prefix: str) -> None:
        for child in ast.iter_child_nodes(node):
            if isinstance(child, (ast.FunctionDef, ast.AsyncFunctionDef, ast.ClassDef)):
                name = prefix + child.name
                first = min([child.lineno] + [d.lineno for d in child.decorator_list])
                found.append((name, first, child.end_lineno))
                visit(child, name + ".")

    visit(ast.parse("\n".join(source_lines(path))), "")
    return found


def enclosing(path: str, line: int) -> str:
    """Qualified name of the innermost function or class containing `line`."""
    names = [name for name, first, last in definitions(path) if first <= line <= last]
    if not names:
        raise ExtensionError(f"paper-to-code: {path}:{line} is not inside a function or class")
    return names[-1]


def marked_lines(path: str, name: str, markers: list[str]) -> tuple[int, int, list[int]]:
    """First and last line of function or class `name` in `path`, and the line of each marker, all inside it."""
    spans = {qualified: (first, last) for qualified, first, last in definitions(path)}
    if name not in spans:
        raise ExtensionError(f"code-at: no function or class {name!r} in {path}")
    first, last = spans[name]
    marked = [find_marker(path, marker) for marker in markers]
    outside = [n for n in marked if not first <= n <= last]
    if outside:
        raise ExtensionError(f"code-at: lines {outside} of {path} are outside {name} (lines {first}-{last})")
    return first, last, marked


def source_url(config, path: str, line: int) -> str:
    """Link to the line in the repository set in _config.yml (repository.url and .branch); "" while no URL is set."""
    options = config.html_theme_options
    base = (options.get("repository_url") or "").strip().rstrip("/")
    return f"{base}/blob/{options.get('repository_branch') or 'main'}/{path}#L{line}" if base else ""


class CodeLineRole(SphinxRole):
    """{code-line}`path::marker` -> a link to file:LINE (plain text while no repository URL is set), then `Qualified.name`."""

    def run(self):
        path, sep, marker = self.text.partition("::")
        if not sep or not marker:
            raise ExtensionError(f"code-line: expected `path::marker`, got {self.text!r}")
        self.env.note_dependency(str(ROOT / path))  # re-read this page when the source changes
        line = find_marker(path, marker)
        label = nodes.literal(text=f"{Path(path).name}:{line}")
        url = source_url(self.config, path, line)
        where = nodes.reference("", "", label, refuri=url) if url else label
        return [where, nodes.Text(" in "), nodes.literal(text=enclosing(path, line))], []


class CodeAtDirective(SphinxDirective):
    """A function or class shown with its real line numbers, the lines holding the markers highlighted."""

    required_arguments = 1
    has_content = True  # one marker per line
    option_spec: ClassVar[dict] = {"pyobject": directives.unchanged_required}

    def run(self):
        path, name = self.arguments[0], self.options["pyobject"]
        self.env.note_dependency(str(ROOT / path))
        first, last, marked = marked_lines(path, name, [marker.strip() for marker in self.content if marker.strip()])
        code = "\n".join(source_lines(path)[first - 1 : last])
        block = nodes.literal_block(code, code, language="python", linenos=True)
        block["highlight_args"] = {"linenostart": first, "hl_lines": [n - first + 1 for n in marked]}
        caption = nodes.caption("", "", nodes.literal(text=f"{path}, {name}"))
        container = nodes.container("", caption, block, literal_block=True)
        return [container]


def setup(app):
    app.add_role("code-line", CodeLineRole())
    app.add_directive("code-at", CodeAtDirective)
    return {"parallel_read_safe": True, "parallel_write_safe": True}
