"""One notation in every chapter: the symbols the introduction's notation table gives to one thing are not used for
another (the paper's L, K and N, and its α_{t,i}, have the book's names P, V, M and α_{ti})."""

from __future__ import annotations

import json
import re
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]

# (pattern in a chapter's LaTeX, what the book writes instead). Each catches the paper's symbol where the book's own
# table reserves it for something else.
MISUSES = (
    (r"\\sum_\{i\s*=\s*1\}\^\{?L\b|i = 1, \\dots, L\b|\\frac\{1\}\{L\}", "the number of cells is P (L is a caption's tokens)"),
    (r"\\alpha_\{t,\s*i\}|\\alpha_\{t,\s*\\", "attention weights are written α_{ti}"),
    (r"\\sum_\{n\s*=\s*1\}\^\{?N\b|\\frac\{1\}\{N\}", "Monte Carlo samples are M (N counts captions)"),
    (r"the paper's \$V\$", "the paper's vocabulary size is K; the book's is V"),
)


def math_of(markdown: str) -> list[str]:
    """The LaTeX of a markdown text: its $$ displays and $ inline spans, plus the prose (for 'the paper's $V$')."""
    return re.findall(r"\$\$(.*?)\$\$", markdown, flags=re.DOTALL) + re.findall(r"\$([^$\n]+)\$", markdown) + [markdown]


def chapters() -> list[Path]:
    return sorted((ROOT / "notebooks").glob("*.ipynb")) + [ROOT / "book" / "paper_to_code.md"]


def markdown_of(path: Path) -> str:
    if path.suffix == ".md":
        return path.read_text(encoding="utf-8")
    cells = json.loads(path.read_text(encoding="utf-8"))["cells"]
    return "\n".join("".join(cell["source"]) for cell in cells if cell["cell_type"] == "markdown")


def misuses(markdown: str) -> list[tuple[str, str]]:
    """(the offending text, what the book writes instead) for each misuse in a chapter's markdown."""
    found = []
    for pattern, rule in MISUSES:
        for text in math_of(markdown):
            if "N counts captions" in rule and "BLEU" in text:
                continue  # BLEU-N's N is its largest n-gram order, as Papineni et al. write it (chapter 08)
            found += [(match.group(0), rule) for match in re.finditer(pattern, text)]
    return sorted(set(found))


@pytest.mark.parametrize("path", chapters(), ids=lambda path: path.name)
def test_the_chapter_uses_the_books_notation(path):
    assert misuses(markdown_of(path)) == []


def test_the_check_finds_each_misuse():
    examples = [r"$\sum_{i=1}^{L} \alpha_{ti}$", r"$\alpha_{t,i}$", r"$$\frac{1}{N} \sum_{n=1}^{N} x_n$$", "the paper's $V$"]
    assert [len(misuses(text)) > 0 for text in examples] == [True] * 4
    assert misuses(r"$\sum_{i=1}^{P} \alpha_{ti} \mathbf{a}_i$ over the $(N, L)$ tokens, $L_s$ and $L_o$") == []
