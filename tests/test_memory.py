"""sam_gym.memory: the one owner of the RSS readings used by sam-gym bench and evaluation."""

from __future__ import annotations

import sys
from pathlib import Path

import pytest

from sam_gym import benchmark, evaluation, memory


def test_benchmark_and_evaluation_use_the_one_owner() -> None:
    assert benchmark.rss_bytes is memory.rss_bytes
    assert evaluation.PeakMemory is memory.PeakMemory


def test_rss_reads_vmrss_then_falls_back_to_the_peak(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setitem(sys.modules, "psutil", None)  # "import psutil" raises ImportError
    status = tmp_path / "status"
    status.write_text("Name:\tpython\nVmHWM:\t  9000 kB\nVmRSS:\t  2048 kB\n")
    monkeypatch.setattr(memory, "_STATUS", status)
    assert memory.rss_bytes() == (2048 * 1024, "/proc/self/status VmRSS")
    monkeypatch.setattr(memory, "_STATUS", tmp_path / "missing")
    rss, method = memory.rss_bytes()
    assert method == "resource ru_maxrss (peak)" and rss == memory._max_rss_bytes() > 0


def test_peak_memory_without_proc_uses_ru_maxrss(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(memory, "_STATUS", tmp_path / "missing")
    with memory.PeakMemory() as peak:
        pass
    assert peak.method == "ru_maxrss"
    assert peak.peak_mb == pytest.approx(memory._max_rss_bytes() / 2**20, rel=0.05)
