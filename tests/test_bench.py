"""``sam-gym bench`` writes every required figure (fast settings; no timed assertions)."""

from __future__ import annotations

import json

import numpy as np
import pytest

from sam_gym.backends import make_backend
from sam_gym.benchmark import REQUIRED_KEYS, DecoderClock, env_and_decoder_rates, rss_bytes, synchronize
from sam_gym.cli import main
from sam_gym.envs import SamPromptEnv


def test_bench_command_writes_all_required_keys(tmp_path, capsys):
    out = tmp_path / "sub" / "bench.json"
    status = main(["bench", "--batch", "1,2", "--steps", "3", "--vector-steps", "2", "--rss-steps", "5",
                   "--encoder-images", "2", "--train-envs", "2", "--train-n-steps", "4", "--train-rollouts", "1",
                   "--out", str(out)])
    assert status == 0
    results = json.loads(out.read_text())
    assert set(REQUIRED_KEYS) <= set(results)
    assert "not SAM" in results["backend"] and results["device"] == "cpu"
    assert set(results["vector_steps_per_s"]) == {"1", "2"}
    assert all(v > 0 for v in results["vector_steps_per_s"].values())
    assert results["decoder_calls_per_s"] > 0 and results["env_steps_per_s"] > 0 and results["env_over_decoder"] > 0
    # 10 float32 classical channels on the 10x10 grid, the 64x64 uint8 mask, 17 prompt rows, 100 cells
    assert results["obs_bytes"] == 10 * 100 * 4 + 64 * 64 + 22 * 3 * 4 + 100 * 4  # clicks: max_prompts 22 rows
    assert results["cache_hit_reset_ms"] > 0 and results["encoder_images_per_s"] > 0
    assert isinstance(results["rss_growth_pct"], float) and results["rss_method"]
    for key in ("env_over_decoder_per_batch", "overhead_us_per_substep", "obs_copy_us_per_substep"):
        assert set(results[key]) == {"1", "2"} and all(v > 0 for v in results[key].values()), key
    # per-step ratios: each step holds its own decoder calls
    assert results["env_over_decoder"] >= 1.0 and min(results["env_over_decoder_per_batch"].values()) >= 1.0
    assert "NOT a segmenter" in results["overhead_backend"]
    assert results["train_env_steps_per_s"] > 0 and results["train_settings"]["n_envs"] == 2
    assert results["gpu_mem_gb"] is None  # no CUDA here
    assert results["cache_bytes_per_image"] > 0
    assert "env / decoder" in capsys.readouterr().out
    assert not list(out.parent.glob("*.tmp"))


def test_bench_null_backend_reports_the_stub(tmp_path):
    out = tmp_path / "null.json"
    status = main(["bench", "--backend", "null", "--device", "cpu", "--batch", "1,3", "--steps", "2",
                   "--vector-steps", "2", "--rss-steps", "0", "--encoder-images", "2", "--train-rollouts", "0",
                   "--out", str(out)])
    assert status == 0
    results = json.loads(out.read_text())
    assert set(REQUIRED_KEYS) <= set(results)
    assert "NOT a segmenter" in results["backend"] and results["is_sam"] is False
    assert results["overhead_backend"] == results["backend"]  # the stub measured itself
    assert results["train_env_steps_per_s"] is None and results["rss_growth_pct"] is None
    assert set(results["overhead_us_per_substep"]) == {"1", "3"}
    # a step writes its observations at least once, and does more: copying them alone costs less
    assert all(results["obs_copy_us_per_substep"][k] < results["overhead_us_per_substep"][k] for k in ("1", "3"))
    assert results["cache_bytes_per_image"] == 256 * 64 * 64 * 4  # SAM's float32 embedding shape


def test_null_backend_refuses_weights_arguments(tmp_path, capsys):
    assert main(["bench", "--backend", "null", "--device", "cpu", "--half", "--out", str(tmp_path / "x.json")]) == 2
    assert "Expected no --checkpoint or --half with --backend null" in capsys.readouterr().err


def test_decoder_clock_times_outermost_calls_only():
    backend = make_backend("null")
    image = np.zeros((16, 16, 3), np.uint8)
    emb = backend.encode(image)
    pts, lab = np.array([[1.0, 1.0]]), np.array([1])
    with DecoderClock(backend) as clock:
        backend.decode(emb, pts, lab)  # not active: not counted
        clock.active = True
        backend.decode_batch([emb, emb], [pts, pts], [lab, lab])  # loops over decode: counted once
        backend.decode(emb, pts, lab)
    assert clock.calls == 2 and clock.seconds > 0
    assert "decode" not in vars(backend) and "decode_batch" not in vars(backend)  # wrappers removed


@pytest.mark.parametrize("argv", [["--batch", "0"], ["--batch", "a,b"], ["--steps", "0"]])
def test_bench_rejects_bad_arguments(tmp_path, argv):
    try:
        status = main(["bench", *argv, "--out", str(tmp_path / "x.json")])
    except SystemExit as exc:  # argparse errors
        status = exc.code
    assert status == 2 and not (tmp_path / "x.json").exists()


def test_env_and_decoder_rates_take_the_ratio_within_each_step():
    """Each clocked step's time holds its own decoder calls, so the per-step ratio is at least 1."""
    env = SamPromptEnv(dataset="synthetic-shapes", dataset_kwargs=dict(n=3), max_clicks=3)
    rates = env_and_decoder_rates(env, steps=5, seed=1, warmup=1)
    assert rates["env_over_decoder"] >= 1.0
    assert rates["env_steps_per_s"] == pytest.approx(1e3 / rates["env_step_ms"])
    assert rates["decoder_calls_per_s"] == pytest.approx(1e3 / rates["decoder_call_ms"])


def test_env_over_decoder_is_the_median_of_per_step_ratios(monkeypatch):
    import sam_gym.benchmark.timing as timing

    passes = iter([([9.0, 9.0, 9.0], []), ([2.0, 3.0, 2.0], [1.0, 1.0, 4.0])])  # unclocked, then clocked
    monkeypatch.setattr(timing, "_single_pass", lambda *a, **k: next(passes))
    monkeypatch.setattr(timing, "check_decoded", lambda clock, steps: None)
    env = SamPromptEnv(dataset="synthetic-shapes", dataset_kwargs=dict(n=3), max_clicks=3)
    rates = env_and_decoder_rates(env, steps=3, seed=1, warmup=0)
    # per step 2/1, 3/1, 2/4: median 2 (the ratio of the means would be 7/6); rates from the unclocked pass
    assert rates["env_over_decoder"] == 2.0 and rates["env_step_ms"] == 9e3 and rates["decoder_call_ms"] == 2e3


def test_rss_and_synchronize_on_cpu():
    rss, method = rss_bytes()
    assert rss > 10 * 2**20 and method
    synchronize(make_backend("classical"))  # no device: a no-op, must not import or touch CUDA
