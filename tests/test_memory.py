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


@pytest.mark.parametrize(("hwm_kb", "method"), [(2050, "VmHWM"), (900_000, "ru_maxrss")])
def test_peak_memory_uses_vmhwm_only_when_its_reset_is_seen(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, hwm_kb: int, method: str
) -> None:
    # a kernel that accepts the write to clear_refs but keeps the lifetime peak must not pass
    # that peak off as the block's
    status = tmp_path / "status"
    status.write_text(f"Name:\tpython\nVmHWM:\t  {hwm_kb} kB\nVmRSS:\t  2048 kB\n")
    monkeypatch.setattr(memory, "_STATUS", status)
    monkeypatch.setattr(memory, "_CLEAR_REFS", tmp_path / "clear_refs")
    with memory.PeakMemory() as peak:
        pass
    assert (tmp_path / "clear_refs").read_text() == "5"
    assert peak.method == method
    if method == "VmHWM":
        assert peak.peak_mb == pytest.approx(hwm_kb / 1024)
    else:
        assert peak.peak_mb == pytest.approx(memory._max_rss_bytes() / 2**20, rel=0.05)


def test_peak_memory_without_a_writable_clear_refs_uses_ru_maxrss(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(memory, "_CLEAR_REFS", tmp_path / "no_such_folder" / "clear_refs")
    with memory.PeakMemory() as peak:
        pass
    assert peak.method == "ru_maxrss"
