"""Resident memory of this process: the current RSS (:func:`rss_bytes`) and the peak over a block (:class:`PeakMemory`).

The one place that reads ``/proc/self/status`` and ``resource.getrusage``: :mod:`sam_gym.benchmark`
measures RSS growth with :func:`rss_bytes`, :mod:`sam_gym.evaluation` each policy's peak with
:class:`PeakMemory`. Both fall back to the process-lifetime peak ``ru_maxrss`` where ``/proc`` is
missing (an upper bound; the returned method says so).
"""

from __future__ import annotations

import sys
from pathlib import Path
from types import TracebackType
from typing import Any

__all__ = ["PeakMemory", "rss_bytes"]

_STATUS = Path("/proc/self/status")
_CLEAR_REFS = Path("/proc/self/clear_refs")
# After a reset, VmHWM equals VmRSS; the kernel's per-thread RSS counters may lag by a little.
_RESET_SLACK_KB = 4096.0


def _status_kbs(*field_names: str) -> dict[str, float]:
    """The ``kB`` fields (``VmRSS``, ``VmHWM``) of one read of ``/proc/self/status``; missing ones are absent."""
    try:
        lines = _STATUS.read_text().splitlines()
    except OSError:
        return {}
    found: dict[str, float] = {}
    for line in lines:
        name, _, rest = line.partition(":")
        values = rest.split()
        if name in field_names and values:
            found[name] = float(values[0])
    return found


def _status_kb(field_name: str) -> float | None:
    """A ``kB`` field (``VmRSS``, ``VmHWM``) of ``/proc/self/status``, or ``None`` (not Linux, no such field)."""
    return _status_kbs(field_name).get(field_name)


def _reset_high_water_mark() -> bool:
    """Reset this process's ``VmHWM`` to its current RSS; ``True`` only when the reset is seen to take effect.

    Some kernels and sandboxes accept the write to ``/proc/self/clear_refs`` and leave ``VmHWM`` at the
    process-lifetime peak; then a later ``VmHWM`` would not be the peak of the block, so this says so.
    """
    try:
        _CLEAR_REFS.write_text("5")
    except OSError:
        return False
    fields = _status_kbs("VmHWM", "VmRSS")
    if "VmHWM" not in fields or "VmRSS" not in fields:
        return False
    return fields["VmHWM"] <= fields["VmRSS"] + _RESET_SLACK_KB


def _max_rss_bytes() -> int:
    """The process-lifetime peak RSS from ``resource.getrusage`` (kB on Linux, bytes on macOS), in bytes."""
    import resource  # Unix only; imported here so that the module imports everywhere

    scale = 1 if sys.platform == "darwin" else 1024
    return int(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss) * scale


def rss_bytes() -> tuple[int, str]:
    """Current resident set size of this process and how it was read.

    Returns:
        ``(bytes, method)``: ``psutil`` when installed, else ``VmRSS`` of ``/proc/self/status``,
        else ``resource.getrusage`` (the *peak* RSS, an upper bound on growth).
    """
    try:
        import psutil
    except ImportError:
        psutil = None
    if psutil is not None:
        return int(psutil.Process().memory_info().rss), "psutil"
    kb = _status_kb("VmRSS")
    if kb is not None:
        return int(kb) * 1024, "/proc/self/status VmRSS"
    return _max_rss_bytes(), "resource ru_maxrss (peak)"


class PeakMemory:
    """Context manager measuring the peak resident memory of this process while its block runs.

    On Linux the kernel's resident-set high-water mark (``VmHWM`` in ``/proc/self/status``) is
    reset on entry by writing ``5`` to ``/proc/self/clear_refs`` and read on exit, so
    :attr:`peak_mb` is the largest RSS reached *during the block* (the interpreter, backend,
    cache and dataset included: compare policies by their difference). Where that reset is not
    possible, or is accepted but not seen to take effect (``VmHWM`` still above ``VmRSS`` right
    after it), the process-lifetime peak ``resource.getrusage(RUSAGE_SELF).ru_maxrss`` is used
    instead (an upper bound; :attr:`method` says which). When torch has CUDA initialised,
    :attr:`gpu_peak_mb` is ``torch.cuda.max_memory_allocated()`` over the block (peak stats reset
    on entry); otherwise ``None``. Nothing is sampled while the block runs, so timings taken inside
    are not slowed down.

    Attributes:
        method: ``"VmHWM"`` or ``"ru_maxrss"``.
        peak_mb: Peak RSS in MiB (set on exit).
        gpu_peak_mb: Peak CUDA memory allocated by torch in MiB, or ``None``.

    >>> with PeakMemory() as memory:
    ...     block = bytearray(1 << 20)
    >>> memory.peak_mb > 0 and memory.method in ("VmHWM", "ru_maxrss")
    True
    """

    def __init__(self) -> None:
        self.method = "ru_maxrss"
        self.peak_mb = 0.0
        self.gpu_peak_mb: float | None = None

    @staticmethod
    def _cuda() -> Any:
        torch = sys.modules.get("torch")
        if torch is not None and torch.cuda.is_available() and torch.cuda.is_initialized():
            return torch.cuda
        return None

    def __enter__(self) -> PeakMemory:
        self.method = "VmHWM" if _reset_high_water_mark() else "ru_maxrss"
        cuda = self._cuda()
        if cuda is not None:
            cuda.reset_peak_memory_stats()
        return self

    def __exit__(self, exc_type: type[BaseException] | None, exc: BaseException | None,
                 tb: TracebackType | None) -> None:
        hwm = _status_kb("VmHWM") if self.method == "VmHWM" else None
        self.peak_mb = hwm / 1024.0 if hwm is not None else _max_rss_bytes() / 2**20
        cuda = self._cuda()
        self.gpu_peak_mb = cuda.max_memory_allocated() / 2**20 if cuda is not None else None
