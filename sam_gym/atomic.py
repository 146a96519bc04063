"""Atomic file writes (caches, checkpoints, results): a temporary file in the same folder, fsync, ``os.replace``.

A reader (or a run resumed after a crash) sees either the previous complete file or the new one,
never a partial write.
"""

from __future__ import annotations

import os
import tempfile
from collections.abc import Callable
from pathlib import Path
from typing import IO

__all__ = ["atomic_write", "atomic_write_bytes"]


def atomic_write(path: str | Path, write: Callable[[IO[bytes]], object]) -> Path:
    """Create or replace ``path`` atomically; ``write(fh)`` writes the content to a binary file handle."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    umask = os.umask(0)
    os.umask(umask)
    try:
        os.chmod(tmp, 0o666 & ~umask)  # mkstemp creates 0600; give the file the usual permissions
        with os.fdopen(fd, "wb") as fh:
            write(fh)
            fh.flush()
            os.fsync(fh.fileno())
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    return path


def atomic_write_bytes(path: str | Path, data: bytes) -> Path:
    """Create or replace ``path`` atomically with ``data``."""
    return atomic_write(path, lambda fh: fh.write(data))
