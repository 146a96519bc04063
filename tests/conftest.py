"""Shared fixtures: the real benchmark data beside the checkout (skipped when absent)."""

from __future__ import annotations

from pathlib import Path

import pytest

SHARED_DATA = Path(__file__).resolve().parents[1].parent / "shared" / "data"


@pytest.fixture(scope="session")
def shared_data() -> Path:
    """``../shared/data``; tests that use it are skipped with a reason when it is absent."""
    if not SHARED_DATA.is_dir():
        pytest.skip(f"real benchmark data not found at {SHARED_DATA} (research data, not in the repo)")
    return SHARED_DATA


@pytest.fixture(scope="session")
def grabcut(shared_data: Path) -> Path:
    path = shared_data / "GrabCut"
    if not path.is_dir():
        pytest.skip(f"GrabCut not found at {path}")
    return path
