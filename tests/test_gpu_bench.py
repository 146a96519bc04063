"""``benchmarks/gpu.sh`` runs end to end on the CPU (``--device cpu --tiny``) and writes every figure."""

from __future__ import annotations

import json
import math
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]


@pytest.mark.skipif(shutil.which("bash") is None or shutil.which("timeout") is None, reason="needs bash and timeout")
def test_gpu_script_on_cpu_writes_every_figure(tmp_path):
    pytest.importorskip("torch")
    pytest.importorskip("segment_anything")
    pytest.importorskip("sb3_contrib")
    out = tmp_path / "gpu.json"
    env = {**os.environ, "PYTHON": sys.executable, "SAM_GYM_WHEELS": str(tmp_path / "no-wheels"),
           "OMP_NUM_THREADS": "1", "MPLBACKEND": "Agg"}
    proc = subprocess.run(["bash", str(ROOT / "benchmarks" / "gpu.sh"), "--device", "cpu", "--tiny", "--out", str(out)],
                          env=env, capture_output=True, text=True, timeout=600)
    assert proc.returncode == 0, proc.stderr[-2000:]
    results = json.loads(out.read_text())

    def positive(value):
        return isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value) and value > 0

    batches = [str(b) for b in results["sizes"]["batches"]]
    assert results["device"] == "cpu" and results["tiny"] is True and batches == ["1", "4"]
    assert set(results["decoders"]) == {"tiny"}
    for model in results["decoders"].values():
        assert set(model["per_batch"]) == set(batches) and positive(model["cache_bytes_per_image"])
        for figures in model["per_batch"].values():
            for key in ("env_steps_per_s", "decoder_prompts_per_s", "env_over_decoder", "vector_step_ms"):
                assert positive(figures[key]), key
            assert math.isfinite(figures["env_overhead_pct"])
    assert set(results["overhead_us_per_substep"]) == set(batches)
    assert all(positive(v) for v in results["overhead_us_per_substep"].values())
    assert "NOT a segmenter" in results["overhead_backend"]
    full = results["full_iou"]
    assert full["batch"] == 4 and positive(full["env_over_decoder"]) and positive(full["vector_step_ms"])
    assert full["ious_checked"] == 8 and full["ious_unequal_to_metrics_iou"] == 0
    assert positive(results["train"]["train_env_steps_per_s"]) and results["train"]["train_settings"]["n_envs"] == 4
    memory = results["memory"]
    assert memory["env_steps"] > 0 and positive(memory["rss_start_mb"]) and positive(memory["rss_end_mb"])
    assert positive(results["obs_bytes"]) and results["gpu_mem_gb"] is None  # no CUDA on the CPU
    assert positive(results["seconds"]["total"]) and results["complete"] is True


def test_gpu_script_says_how_to_get_missing_wheels(tmp_path):
    """A package that does not import and no wheel folder: one line naming the --prepare command, status 2."""
    fake = tmp_path / "python"
    fake.write_text("#!/bin/sh\nexit 1\n")  # every import probe fails
    fake.chmod(0o755)
    env = {**os.environ, "PYTHON": str(fake), "SAM_GYM_WHEELS": str(tmp_path / "none")}
    proc = subprocess.run(["bash", str(ROOT / "benchmarks" / "gpu.sh"), "--tiny"], env=env, capture_output=True,
                          text=True, timeout=60)
    assert proc.returncode == 2
    assert "--prepare" in proc.stderr and proc.stderr.strip().count("\n") == 0
