"""Publishing: the repository's URL, set once (repository.url in _config.yml), and how a Kaggle notebook installs captionlib."""

from __future__ import annotations

from pathlib import Path

BOOK_CONFIG = Path(__file__).resolve().parents[1] / "_config.yml"  # in a clone of the repository; absent beside a wheel
KAGGLE_WHEEL = "/kaggle/input/<dataset>/captionlib-*.whl"  # a wheel uploaded as a Kaggle dataset


def repository_url(config_path: str | Path = BOOK_CONFIG) -> str:
    """repository.url of the book's _config.yml, without a trailing slash; "" when it is empty or the file is absent."""
    path = Path(config_path)
    if not path.is_file():
        return ""
    import yaml  # jupyter-book's dependency, as the file is the book's

    try:
        config = yaml.safe_load(path.read_text(encoding="utf-8")) or {}
    except yaml.YAMLError as e:
        raise ValueError(f"{path}: not valid YAML ({str(e).splitlines()[0]})") from None
    repository = (config.get("repository") or {}) if isinstance(config, dict) else None
    url = (repository.get("url") or "") if isinstance(repository, dict) else None
    if not isinstance(url, str) or (url and not url.startswith("https://")):
        raise ValueError(f"{path}: repository.url must be an https:// URL or empty, not {url!r}")
    return url.strip().rstrip("/")


def install_command(url: str, wheel: str = KAGGLE_WHEEL) -> str:
    """The line a notebook runs to install captionlib: from the repository at `url`, or without one from a wheel file."""
    return f'%pip install "captionlib[coco] @ git+{url}"' if url else f"%pip install {wheel}"


def install_instructions(config_path: str | Path = BOOK_CONFIG) -> str:
    """What chapter 14 prints: the install line for a Kaggle notebook with Internet on, and the way with Internet off."""
    url = repository_url(config_path)
    wheel = (
        "build a wheel in a clone of the repository (`pip install build; python -m build --wheel`),\n"
        f"upload dist/captionlib-*.whl as a Kaggle dataset, add that dataset to the notebook and run\n    {install_command('')}\n"
        "with the dataset's name for <dataset>."
    )
    if not url:
        return f"No repository URL is set yet (repository.url in _config.yml), so install from a wheel:\n{wheel}"
    return f"With Internet on (the notebook's settings), run\n    {install_command(url)}\nWith Internet off, {wheel}"
