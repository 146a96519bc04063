"""Atomic writes (caches, checkpoints, results): a temporary file or folder beside the target, fsync, rename.

A reader (or a run resumed after a crash) sees either the previous complete file or the new one,
never a partial write. Temporaries are named ``.NAME.HOST-PID-RANDOM.tmp`` (``HOST`` a hash of the
host name, ``PID`` the writer's process id): a process killed before its rename leaves one behind,
and the next write into that folder by any process removes it (:func:`remove_stale_temporaries`).
"""

from __future__ import annotations

import contextlib
import hashlib
import os
import re
import shutil
import socket
import tempfile
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import IO

__all__ = ["atomic_folder", "atomic_write", "atomic_write_bytes", "load_torch_checkpoint", "remove_stale_temporaries"]

#: Untagged temporaries (written before the ``HOST-PID`` tag) and other hosts' are stale after this many seconds.
STALE_AFTER_S = 24 * 3600
_TEMPORARY = re.compile(r"^\..+\.(?:(?P<host>[0-9a-f]{8})-(?P<pid>\d+)-)?[a-z0-9_]{8}\.tmp$")
#: Folders already cleaned by this process (one scan per folder and process).
_swept: set[str] = set()


def _host_id() -> str:
    return hashlib.sha1(socket.gethostname().encode()).hexdigest()[:8]


def _prefix(path: Path) -> str:
    return f".{path.name}.{_host_id()}-{os.getpid()}-"


def _pid_alive(pid: int) -> bool:
    if os.name == "nt":  # os.kill would terminate it; leave such temporaries to the age rule
        return True
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # another user's live process
        return True
    return True


def _is_stale(entry: os.DirEntry[str], host: str, now: float) -> bool:
    match = _TEMPORARY.match(entry.name)
    if match is None:
        return False
    if match["pid"] is not None and match["host"] == host:
        return not _pid_alive(int(match["pid"]))
    try:
        return now - entry.stat(follow_symlinks=False).st_mtime > STALE_AFTER_S
    except FileNotFoundError:  # renamed or removed meanwhile
        return False


def remove_stale_temporaries(folder: str | Path) -> list[Path]:
    """Remove the temporaries that killed writers left in ``folder``; return what was removed.

    A temporary is stale when its writer ran on this host and is no longer running, or when it is
    untagged or from another host and older than :data:`STALE_AFTER_S`. Live writers' temporaries stay.
    """
    folder = Path(folder)
    host, now, removed = _host_id(), time.time(), []
    try:
        entries = list(os.scandir(folder))
    except (FileNotFoundError, NotADirectoryError):
        return []
    for entry in entries:
        if not _is_stale(entry, host, now):
            continue
        path = Path(entry.path)
        with contextlib.suppress(FileNotFoundError):
            if entry.is_dir(follow_symlinks=False):
                shutil.rmtree(path)
            else:
                path.unlink()
            removed.append(path)
    return removed


def _sweep_once(folder: Path) -> None:
    key = str(folder.resolve())
    if key not in _swept:
        _swept.add(key)
        with contextlib.suppress(OSError):
            remove_stale_temporaries(folder)


def _umask() -> int:
    umask = os.umask(0)
    os.umask(umask)
    return umask


def _fsync_dir(folder: Path) -> None:
    """Make a rename in ``folder`` durable (no-op where folders cannot be opened, e.g. Windows)."""
    try:
        fd = os.open(folder, os.O_RDONLY)
    except OSError:
        return
    try:
        with contextlib.suppress(OSError):  # some filesystems refuse to fsync a folder: best effort
            os.fsync(fd)
    finally:
        os.close(fd)


def atomic_write(path: str | Path, write: Callable[[IO[bytes]], object]) -> Path:
    """Create or replace ``path`` atomically; ``write(fh)`` writes the content to a binary file handle."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    _sweep_once(path.parent)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=_prefix(path), suffix=".tmp")
    try:
        os.chmod(tmp, 0o666 & ~_umask())  # mkstemp creates 0600; give the file the usual permissions
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


@contextlib.contextmanager
def atomic_folder(path: str | Path) -> Iterator[Path]:
    """Build a new folder ``path`` in a staging folder beside it, renamed into place on success.

    Write the files into the yielded staging folder; when the block ends normally they are
    fsynced and the staging folder is renamed to ``path`` (which must not exist yet), so a reader
    sees the whole folder or nothing. On an exception the staging folder is removed.

    Raises:
        FileExistsError: If ``path`` exists.
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    _sweep_once(path.parent)
    if path.exists():
        raise FileExistsError(f"Expected a new folder, but {path} exists")
    staging = Path(tempfile.mkdtemp(dir=path.parent, prefix=_prefix(path), suffix=".tmp"))
    try:
        os.chmod(staging, 0o777 & ~_umask())
        yield staging
        for file in staging.rglob("*"):
            if file.is_file():
                with open(file, "rb") as fh:
                    os.fsync(fh.fileno())
        _fsync_dir(staging)
        os.rename(staging, path)
        _fsync_dir(path.parent)
    except BaseException:
        shutil.rmtree(staging, ignore_errors=True)
        raise


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
