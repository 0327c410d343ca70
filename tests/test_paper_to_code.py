"""The book's paper-to-code references point at real lines: checked here in a second, not only by a book build."""

from __future__ import annotations

import re
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "book" / "_ext"))
paper_code = pytest.importorskip("paper_code")  # needs sphinx (the book extra)

PAGES = sorted((ROOT / "book").glob("*.md"))
CODE_LINE = re.compile(r"\{code-line\}`([^`]+)`")
CODE_AT = re.compile(r"```\{code-at\} (\S+)\n:pyobject: (\S+)\n\n(.*?)```", re.DOTALL)


def references() -> list[tuple[str, str]]:
    """(page, `path::marker`) for every {code-line} role in the book."""
    return [(page.name, text) for page in PAGES for text in CODE_LINE.findall(page.read_text(encoding="utf-8"))]


def blocks() -> list[tuple[str, str, str, list[str]]]:
    """(page, path, pyobject, markers) for every code-at directive in the book."""
    found = []
    for page in PAGES:
        for path, name, body in CODE_AT.findall(page.read_text(encoding="utf-8")):
            found.append((page.name, path, name, [line.strip() for line in body.splitlines() if line.strip()]))
    return found


def test_every_reference_in_the_book_is_parsed():
    text = "".join(page.read_text(encoding="utf-8") for page in PAGES)
    assert references() and len(references()) == text.count("{code-line}")
    assert blocks() and len(blocks()) == text.count("{code-at}")


@pytest.mark.parametrize(("page", "text"), references(), ids=[text for _, text in references()])
def test_code_line_marker_is_on_exactly_one_line_inside_a_function(page, text):
    path, _, marker = text.partition("::")
    line = paper_code.find_marker(path, marker)
    assert paper_code.enclosing(path, line)


@pytest.mark.parametrize(("page", "path", "name", "markers"), blocks(), ids=[f"{b[1]}:{b[2]}" for b in blocks()])
def test_code_at_markers_lie_in_their_function(page, path, name, markers):
    first, last, marked = paper_code.marked_lines(path, name, markers)
    assert len(marked) == len(markers) and all(first <= n <= last for n in marked)


def test_eq_4_is_marked_in_score_as_written():
    """The map's eq. 4 is SoftAttention.score with torch.tanh, as chapter 03 shows it; the CPU kernel has its own line."""
    path = "captionlib/attention.py"
    line = paper_code.find_marker(path, "eq. 4")
    assert paper_code.enclosing(path, line) == "SoftAttention.score"
    assert "torch.tanh(" in paper_code.source_lines(path)[line - 1]
    assert paper_code.enclosing(path, paper_code.find_marker(path, "2 * weighted - w.sum()")) == "SoftAttention.score_cpu_chunk"
