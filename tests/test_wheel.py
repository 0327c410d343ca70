"""The wheel builds without a warning, ships the recipes, and its command line runs from its own files alone."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import zipfile
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
# The tree minus what a checkout does not have: the virtual environment, build outputs, caches
NOT_SOURCES = shutil.ignore_patterns(".git", ".venv", "_build", "build", "dist", "node_modules", "__pycache__", "*.egg-info", ".*cache", "runs")


def run(command: list[str], cwd: Path, env: dict[str, str]) -> subprocess.CompletedProcess:
    """The command's exit status and output, as text."""
    return subprocess.run(command, cwd=cwd, env=env, capture_output=True, text=True, timeout=120)


@pytest.mark.slow
def test_wheel_builds_without_warnings_and_runs_from_its_own_files(tmp_path):
    pytest.importorskip("setuptools")  # the build backend, used from this environment: no download
    source, wheels, unpacked, venv, elsewhere = (tmp_path / name for name in ("source", "wheels", "unpacked", "venv", "elsewhere"))
    shutil.copytree(ROOT, source, ignore=NOT_SOURCES)  # setuptools writes build/ and *.egg-info beside what it builds
    elsewhere.mkdir()
    # PYTHONDONTWRITEBYTECODE would make setuptools warn that it cannot byte-compile; PYTHONPATH must not find this tree
    env = {key: value for key, value in os.environ.items() if key not in ("PYTHONDONTWRITEBYTECODE", "PYTHONPATH")}

    pip = [sys.executable, "-m", "pip", "--disable-pip-version-check"]
    built = run([*pip, "wheel", str(source), "-v", "--no-deps", "--no-build-isolation", "--no-index", "-w", str(wheels)], tmp_path, env)
    assert built.returncode == 0, built.stdout + built.stderr
    warnings = [line for line in (built.stdout + built.stderr).splitlines() if "warn" in line.lower()]
    assert not warnings, "the build warns:\n" + "\n".join(warnings)

    (wheel,) = wheels.glob("captionlib-*.whl")
    with zipfile.ZipFile(wheel) as archive:
        assert "captionlib/recipes/flickr8k_kaggle.json" in archive.namelist()
        archive.extractall(unpacked)

    # From elsewhere, on the wheel's files alone: -S leaves out site-packages, and with it this tree's editable install
    # (and torch: --help and the recipes must not need it)
    alone = {**env, "PYTHONPATH": str(unpacked)}
    helped = run([sys.executable, "-S", "-m", "captionlib", "--help"], elsewhere, alone)
    assert helped.returncode == 0 and helped.stdout.startswith("usage: captionlib"), helped.stdout + helped.stderr
    recipes = run([sys.executable, "-S", "-m", "captionlib", "train", "--help"], elsewhere, alone)
    assert recipes.returncode == 0 and "flickr8k_kaggle" in recipes.stdout, recipes.stdout + recipes.stderr
    code = "import captionlib.config as c; print(c.__file__); print(c.load_config('flickr8k_kaggle').data)"
    loaded = run([sys.executable, "-S", "-c", code], elsewhere, alone)
    assert loaded.returncode == 0, loaded.stderr
    module, data = loaded.stdout.splitlines()
    recipe = json.loads((ROOT / "captionlib" / "recipes" / "flickr8k_kaggle.json").read_text(encoding="utf-8"))
    assert Path(module).is_relative_to(unpacked) and data == recipe["data"]  # the wheel's own config.py read its recipe

    # Installed in a clean venv (no dependencies: the command line must start without them), as its console script
    assert run([sys.executable, "-m", "venv", "--without-pip", str(venv)], tmp_path, env).returncode == 0
    installed = run([*pip, "--python", str(venv / "bin" / "python"), "install", "--no-deps", "--no-index", str(wheel)], tmp_path, env)
    assert installed.returncode == 0, installed.stdout + installed.stderr
    script = run([str(venv / "bin" / "captionlib"), "train", "--help"], elsewhere, env)
    assert script.returncode == 0 and "flickr8k_kaggle" in script.stdout, script.stdout + script.stderr
