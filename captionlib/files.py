"""Files: where captionlib caches things, and writing a file so that a reader, or a crash, sees the old version or the new one."""

from __future__ import annotations

import os
import secrets
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path


def cache_dir() -> Path:
    """$CAPTIONLIB_CACHE, else ~/.cache/captionlib."""
    return Path(os.environ.get("CAPTIONLIB_CACHE", Path.home() / ".cache" / "captionlib"))


@contextmanager
def atomic_path(path: str | Path) -> Iterator[Path]:
    """Yield a new temporary path beside `path` to write to; on success it is fsynced and renamed over `path`.

    On an exception (a full disk, Ctrl-C) the temporary file is deleted and `path` is left as it was. The name is
    random, so two processes writing the same file (two runs sharing a cache) do not write into each other's.
    """
    path = Path(path)
    tmp = path.with_name(f".{path.name}.{secrets.token_hex(4)}.tmp")
    try:
        yield tmp
        fd = os.open(tmp, os.O_RDWR | getattr(os, "O_BINARY", 0))  # O_BINARY: Windows only
        try:
            os.fsync(fd)  # the bytes reach the disk before the name points at them
        finally:
            os.close(fd)
        os.replace(tmp, path)  # atomic: readers see the old file or the new one
        if os.name == "posix":  # and the rename itself reaches the disk (Windows cannot open a folder)
            folder = os.open(path.parent, os.O_RDONLY)
            try:
                os.fsync(folder)
            finally:
                os.close(folder)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise
