"""``sam-gym bench`` writes every required figure (fast settings; no timed assertions)."""

from __future__ import annotations

import json

import pytest

from sam_gym.backends import make_backend
from sam_gym.benchmark import REQUIRED_KEYS, env_and_decoder_rates, rss_bytes, synchronize
from sam_gym.cli import main
from sam_gym.envs import SamPromptEnv


def test_bench_command_writes_all_required_keys(tmp_path, capsys):
    out = tmp_path / "sub" / "bench.json"
    status = main(["bench", "--batch", "1,2", "--steps", "3", "--vector-steps", "2", "--rss-steps", "5",
                   "--encoder-images", "2", "--out", str(out)])
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
    assert "env / decoder" in capsys.readouterr().out
    assert not list(out.parent.glob("*.tmp"))


@pytest.mark.parametrize("argv", [["--batch", "0"], ["--batch", "a,b"], ["--steps", "0"]])
def test_bench_rejects_bad_arguments(tmp_path, argv):
    try:
        status = main(["bench", *argv, "--out", str(tmp_path / "x.json")])
    except SystemExit as exc:  # argparse errors
        status = exc.code
    assert status == 2 and not (tmp_path / "x.json").exists()


def test_env_and_decoder_rates_replay_the_same_requests():
    env = SamPromptEnv(dataset="synthetic-shapes", dataset_kwargs=dict(n=3), max_clicks=3)
    rates = env_and_decoder_rates(env, steps=5, seed=1, warmup=1)
    assert rates["env_over_decoder"] == pytest.approx(rates["env_step_ms"] / rates["decoder_call_ms"])
    assert rates["env_steps_per_s"] == pytest.approx(1e3 / rates["env_step_ms"])


def test_rss_and_synchronize_on_cpu():
    rss, method = rss_bytes()
    assert rss > 10 * 2**20 and method
    synchronize(make_backend("classical"))  # no device: a no-op, must not import or touch CUDA
