"""How long the book takes: every chapter executed in a fresh kernel, and the whole jupyter-book build.

    python benchmarks/book.py --json            # one {"metric", "value", ...} per notebook, then the total
    python benchmarks/book.py --json --build    # also time `jupyter-book build` into a temporary folder

Run it after `make model`: the default shapes model and the experiment grid (chapters 04, 11, 12) are cached, so the
times are the chapters' own.
"""

from __future__ import annotations

import argparse
import json
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import nbformat
from nbclient import NotebookClient

ROOT = Path(__file__).resolve().parent.parent
NOTEBOOK_TARGET_S, BUILD_TARGET_S = 600, 720  # issue targets on the 2-core CPU machine


def execute_seconds(path: Path) -> float:
    """Wall time to run every cell of one notebook in a fresh kernel, from the notebooks folder."""
    notebook = nbformat.read(path, as_version=4)
    began = time.perf_counter()
    NotebookClient(notebook, timeout=600, kernel_name="python3", resources={"metadata": {"path": str(path.parent)}}).execute()
    return time.perf_counter() - began


def build_seconds() -> float:
    """Wall time of a from-scratch `jupyter-book build` (notebooks executed) into a temporary folder."""
    with tempfile.TemporaryDirectory() as out:
        began = time.perf_counter()
        subprocess.run([shutil.which("jupyter-book") or "jupyter-book", "build", str(ROOT), "--path-output", out], check=True, capture_output=True)
        return time.perf_counter() - began


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--json", action="store_true", help="JSON lines instead of a table")
    parser.add_argument("--build", action="store_true", help="also time the book build (executes every notebook again)")
    args = parser.parse_args(argv)
    rows = []
    for path in sorted((ROOT / "notebooks").glob("[0-9][0-9]_*.ipynb")):
        rows.append({"metric": f"notebook_s_{path.stem}", "value": round(execute_seconds(path), 1), "unit": "s"})
    total = round(sum(r["value"] for r in rows), 1)
    rows.append({"metric": "notebooks_total_s", "value": total, "unit": "s", "target_max": NOTEBOOK_TARGET_S})
    if args.build:
        rows.append({"metric": "book_build_s", "value": round(build_seconds(), 1), "unit": "s", "target_max": BUILD_TARGET_S})
    for row in rows:
        print(json.dumps(row) if args.json else f"{row['metric']:<60} {row['value']:>8} {row['unit']}")
    sys.stdout.flush()


if __name__ == "__main__":
    main()
