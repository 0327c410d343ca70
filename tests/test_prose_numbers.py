"""tools/prose_numbers.py: finds the numbers a chapter's prose states and tells which its code mentions."""

from __future__ import annotations

import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tools"))
import prose_numbers  # noqa: E402


def test_it_finds_measurements_and_skips_references():
    text = "As chapter 09 shows (eq. 14), BLEU-4 reached 0.994 and 23% of the 660 images; see §4.2 and Table 1 (2015)."
    assert [number for number, _ in prose_numbers.prose_numbers(text)] == ["0.994", "23%", "660"]
    assert prose_numbers.prose_numbers("Inline `0.5` code and ```\n0.7\n``` blocks are not prose.") == []


def test_a_number_counts_as_covered_when_the_code_mentions_it():
    code = "assert round(100 * rate) == 23 and abs(bleu - 0.994) < 1e-3"
    assert prose_numbers.covered("23%", code) and prose_numbers.covered("0.994", code)
    assert not prose_numbers.covered("0.99", code) and not prose_numbers.covered("2.3", code)
