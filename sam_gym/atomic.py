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


def load_torch_checkpoint(path: str | Path, filename: str, what: str, command: str, fmt: str) -> tuple[Path, dict]:
    """Read a checkpoint written with :func:`atomic_write` + ``torch.save`` and check its format tag.

    Args:
        path: The checkpoint file, or the folder holding ``filename``.
        filename: The file name inside a run folder.
        what: What the file holds, for messages (e.g. ``"an AoP predictor"``).
        command: The command that writes it, for messages (e.g. ``"sam-gym train-aop"``).
        fmt: The expected ``blob["format"]`` tag.

    Returns:
        ``(file, blob)`` with ``blob`` a dict holding at least ``"format"`` and a dict ``"config"``.

    Raises:
        FileNotFoundError: If there is no such file.
        ValueError: If the file cannot be read or does not hold that format.
    """
    import torch

    file = Path(path).expanduser()
    file = file / filename if file.is_dir() else file
    if not file.is_file():
        raise FileNotFoundError(f"Expected {what} at {file}; train one with {command} --out DIR")
    try:
        blob = torch.load(file, map_location="cpu", weights_only=True)
    except Exception as exc:  # torch raises many types on corrupt files
        raise ValueError(f"Expected {file} to be {what} written by {command}, but it cannot be read: {exc}") from exc
    if not isinstance(blob, dict) or blob.get("format") != fmt or not isinstance(blob.get("config"), dict):
        got = blob.get("format") if isinstance(blob, dict) else type(blob).__name__
        raise ValueError(f"Expected {file} to hold {what} (format {fmt!r}), got {got!r}")
    return file, blob
