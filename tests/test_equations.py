"""The paper's equation numbers, as arXiv 1502.03044 prints them, are the ones the book writes: in chapter 11's displays
and in paper_to_code.md's map, each label sits on the equation the paper gives that number."""

from __future__ import annotations

import json
import re
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]

# A piece of LaTeX that each numbered equation of the paper contains, as the book writes it. The paper numbers (1)-(14);
# the initial state, the baseline b_k, the final learning rule of §4.1, β_t and the NWGM displays are unnumbered.
PAPER_EQUATIONS = {
    1: r"\mathbf{i}_t",  # the LSTM's gates (eqs. 1-3 are written together)
    4: r"e_{ti}" "|" r"W_a \mathbf{a}_i",  # e_ti = f_att(a_i, h_{t-1}) = w^T tanh(W_a a_i + W_h h_{t-1})
    5: r"\alpha_{ti} = \exp(e_{ti})",
    6: r"\phi(",  # ẑ_t = φ({a_i}, {α_i})
    7: r"L_o" "|" r"L_h \mathbf{h}_t",  # the deep output: p(y_t | a, y_1^{t-1}) ∝ exp(L_o(E y_{t-1} + L_h h_t + L_z ẑ_t))
    8: r"p(s_{t,i} = 1",
    9: r"s_{t,i}\, \mathbf{a}_i" "|" r"s_{t,i} \mathbf{a}_i",  # ẑ_t = Σ_i s_t,i a_i
    10: r"L_s",  # the lower bound
    11: r"\partial \log p(s \mid \mathbf{a})" "|" r"\log p(\tilde{s} \mid \mathbf{a})",  # its exact gradient; the score
    12: r"\tilde{s}",  # the Monte Carlo estimate with s̃ ~ Multinoulli(α)
    13: r"\alpha_{ti} \mathbf{a}_i",  # E[ẑ_t] = Σ_i α_t,i a_i
    14: r"\big(1 - \sum_t \alpha_{ti}\big)^2" "|" r"-\log P(\mathbf{y} \mid \mathbf{x})" "|" r"\sum_t \alpha_{ti}",  # L_d
}


def contains(text: str, number: int) -> bool:
    """Whether text holds one of the alternatives (separated by |) that identify the paper's equation `number`."""
    return any(piece in text for piece in PAPER_EQUATIONS[number].split("|"))


def map_rows() -> list[tuple[list[int], str]]:
    """(the equation numbers a row of paper_to_code.md's map names, the row's first column) for rows that name any."""
    rows = []
    for line in (ROOT / "book" / "paper_to_code.md").read_text(encoding="utf-8").splitlines():
        if line.startswith("### The Transformer"):  # from here on the equations are Vaswani et al.'s
            break
        first = line.split("|")[1] if line.startswith("| ") else ""
        label = re.match(r"\s*eqs?\. ([\d–, and]+)", first)
        if label:
            numbers = [int(n) for n in re.findall(r"\d+", label.group(1))]
            if "–" in label.group(1):  # a range, e.g. eqs. 1–3
                numbers = list(range(numbers[0], numbers[-1] + 1))
            rows.append((numbers, first))
    return rows


def chapter_11_displays() -> list[tuple[int, str]]:
    """(number, the display's LaTeX before the label) for every \\text{(N)} label in chapter 11's markdown."""
    notebook = json.loads((ROOT / "notebooks" / "11_hard_attention.ipynb").read_text(encoding="utf-8"))
    found = []
    for cell in notebook["cells"]:
        if cell["cell_type"] == "markdown":
            text = "".join(cell["source"])
            for display in re.findall(r"\$\$(.*?)\$\$", text, flags=re.DOTALL):
                pieces = re.split(r"\\text\{\((\d+)\)\}", display)  # [latex, number, latex, number, ...]
                found += [(int(number), latex) for latex, number in zip(pieces[::2], pieces[1::2])]
    return found


@pytest.mark.parametrize(("numbers", "row"), map_rows(), ids=[row.strip()[:40] for _, row in map_rows()])
def test_every_equation_the_map_names_is_the_papers_equation_of_that_number(numbers, row):
    assert all(n in PAPER_EQUATIONS or n in (2, 3) for n in numbers), f"the paper has no equation {numbers}"
    assert any(contains(row, n) for n in numbers if n in PAPER_EQUATIONS), f"{row.strip()}: not the paper's eq. {numbers}"


def test_the_map_has_rows_to_check():
    assert len(map_rows()) >= 15  # a parsing slip that found none would leave the test above with nothing to check


def test_chapter_11_labels_each_display_with_the_papers_number():
    displays = chapter_11_displays()
    assert [number for number, _ in displays] == [8, 9, 10, 11, 12]  # the final learning rule is unnumbered
    for number, latex in displays:
        assert contains(latex, number), f"chapter 11 labels as ({number}): {latex.strip()[-120:]}"


def test_the_check_catches_a_label_off_by_one():
    assert contains(r"L_s = \sum_s p(s \mid \mathbf{a})", 10) and not contains(r"L_s = \sum_s p(s \mid \mathbf{a})", 9)
    assert not contains(r"\hat{\mathbf{z}}_t = \sum_i s_{t,i} \mathbf{a}_i", 8)
