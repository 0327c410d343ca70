"""Lists the numbers each chapter's prose states that none of its code cells mentions: candidates for an unasserted figure.

    python tools/prose_numbers.py            # a count per chapter, then every candidate with its context
    python tools/prose_numbers.py --counts   # the counts only

A spot check, not a proof: a number counts as covered when its digits (as written, without a % sign, or as a
fraction for a percentage) appear anywhere in the chapter's code, for instance in an assert or a REPORTED entry.
Chapter, equation, section and figure references, years, list numbers and numbers inside code spans are skipped.
"""

from __future__ import annotations

import argparse
import json
import re
import signal
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
NUMBER = re.compile(r"(?<![A-Za-z]-)(?<![\w.\\^_{])(\d+(?:\.\d+)?)(%?)(?![\w.]?\d)")
# References and labels, not measurements: "chapter 09", "eq. 4", "eqs. 1–3", "§4.2", "(8)", "Table 1", "seed 0", years.
SKIP_BEFORE = re.compile(r"(chapters?|eqs?\.|equations?|§|table|figure|section|exercise|solution|seeds?|cell|step|layers?|"
                         r"epoch|threads?|k =|width|top|python|torch|version|arxiv:?|item)\s*[\d.,–\- and]*$", re.IGNORECASE)  # fmt: skip


def strip_markup(text: str) -> str:
    """Markdown without code spans, fenced blocks, links' targets, MyST roles' targets and LaTeX \\text{(N)} labels."""
    text = re.sub(r"```.*?```", " ", text, flags=re.DOTALL)
    text = re.sub(r"`[^`]*`", " ", text)
    text = re.sub(r"\]\([^)]*\)", "]", text)
    text = re.sub(r"\\text\{\(\d+\)\}", " ", text)
    return text


def prose_numbers(text: str) -> list[tuple[str, str]]:
    """(number as written, its context) for every number in the prose that is a candidate measurement."""
    found = []
    for line in strip_markup(text).splitlines():
        if re.match(r"\s*(\d+\.|#+)\s", line):  # a numbered list item's own number, or a heading
            line = re.sub(r"^\s*\d+\.\s", "", line)
        for match in NUMBER.finditer(line):
            number, percent = match.groups()
            before = line[: match.start()]
            if SKIP_BEFORE.search(before) or re.fullmatch(r"(19|20)\d\d", number):
                continue
            if not percent and "." not in number and int(number) <= 10:  # small counts: "two", "3 seeds", grid sizes
                continue
            found.append((number + percent, line.strip()[:110]))
    return found


def covered(number: str, code: str) -> bool:
    """Whether the code mentions the number: as written, or a percentage as its fraction (23% as 0.23 or 23)."""
    digits = number.rstrip("%")
    forms = {digits}
    if number.endswith("%"):
        forms.add(f"{float(digits) / 100:g}")
        forms.add(f"{float(digits) / 100:.3f}".rstrip("0"))
    if "." in digits:
        forms.add(digits.rstrip("0"))
    return any(re.search(rf"(?<![\d.]){re.escape(form)}(?!\d)", code) for form in forms if form)


def chapter_report(path: Path) -> list[tuple[str, str]]:
    """The chapter's prose numbers that its code does not mention."""
    cells = json.loads(path.read_text(encoding="utf-8"))["cells"]
    prose = "\n".join("".join(c["source"]) for c in cells if c["cell_type"] == "markdown")
    code = "\n".join("".join(c["source"]) for c in cells if c["cell_type"] == "code")
    return [(number, context) for number, context in prose_numbers(prose) if not covered(number, code)]


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--counts", action="store_true", help="the count per chapter only")
    args = parser.parse_args(argv)
    signal.signal(signal.SIGPIPE, signal.SIG_DFL)  # piped into head: stop quietly
    reports = {path.name: chapter_report(path) for path in sorted((ROOT / "notebooks").glob("*.ipynb"))}
    for name, found in reports.items():
        print(f"{len(found):4d}  {name}")
    print(f"{sum(len(found) for found in reports.values()):4d}  in all")
    if not args.counts:
        for name, found in reports.items():
            for number, context in found:
                print(f"{name}: {number:>8}  {context}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
