"""Every script in ``examples/`` runs, in a tiny configuration, so that none of them rots.

Convention (for whoever adds an example): every ``examples/*.py`` accepts ``--tiny`` and then
finishes in well under a minute on 2 CPU cores, offline, needing no argument and writing nothing
outside a temporary folder (or the working directory, which is a temporary folder here). The
scripts run as a user would run them: ``python examples/NAME.py --tiny``, in a subprocess, with a
timeout, and must exit with status 0.
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

EXAMPLES = Path(__file__).resolve().parents[1] / "examples"
SCRIPTS = sorted(EXAMPLES.glob("*.py"))
TIMEOUT_S = 240


def _run(script: Path, *args: str, cwd: Path) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "MPLBACKEND": "Agg", "PYTHONWARNINGS": "ignore"}
    return subprocess.run([sys.executable, str(script), *args], cwd=cwd, env=env, capture_output=True, text=True,
                          timeout=TIMEOUT_S)


def test_examples_exist() -> None:
    names = {p.name for p in SCRIPTS}
    assert {"evaluate_baselines.py", "custom_policy.py", "real_sam_checkpoint.py"} <= names


@pytest.mark.parametrize("script", SCRIPTS, ids=[p.stem for p in SCRIPTS])
def test_example_runs_tiny(script: Path, tmp_path: Path) -> None:
    if script.name == "real_sam_checkpoint.py":
        pytest.importorskip("torch")
    if script.name == "train_rllib.py":
        pytest.importorskip("ray.rllib")
    result = _run(script, "--tiny", cwd=tmp_path)
    assert result.returncode == 0, f"{script.name} --tiny failed:\n{result.stdout[-3000:]}\n{result.stderr[-3000:]}"
    if script.name in ("evaluate_baselines.py", "custom_policy.py", "real_sam_checkpoint.py"):
        assert "| policy |" in result.stdout and "Backend:" in result.stdout  # a table naming its backend
    if script.name == "custom_policy.py":
        # in the default env its clicks get oracle labels and a ground-truth initial pair: marked privileged
        assert "| mask-centre (custom)† |" in result.stdout and "NOT SAM" in result.stdout
    if script.name == "real_sam_checkpoint.py":
        assert "RANDOM" in result.stdout  # the loud note: random weights, meaningless numbers
    if script.name == "train_rllib.py":
        assert "masked actions chosen 0" in result.stdout and "NOT SAM" in result.stdout


def test_real_sam_example_without_weights_fails_clearly(tmp_path: Path) -> None:
    pytest.importorskip("torch")
    missing = tmp_path / "no_such_sam_vit_b.pth"
    result = _run(EXAMPLES / "real_sam_checkpoint.py", "--checkpoint", str(missing), cwd=tmp_path)
    assert result.returncode != 0
    assert "weights" in result.stderr and str(missing) in result.stderr and "Traceback" not in result.stderr
