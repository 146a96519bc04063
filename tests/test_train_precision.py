"""``--half`` reaches the backend in ``sam-gym train`` and ``sam-gym demo`` (training and evaluation alike).

The CPU cannot run bf16 SAM, so these tests check that the flag arrives where the backend is built:
the tiny random SAM (:data:`sam_gym.testing.TINY_SAM_ENTRY`, registered for each test as
``tiny_sam``) refuses it on the CPU with its own message, and a spy on
:func:`sam_gym.backends.make_backend` records what each build was asked for.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

pytest.importorskip("torch")
pytest.importorskip("segment_anything")
pytest.importorskip("sb3_contrib")

from agents import demo_command  # noqa: E402
from agents.alignsam.config import TrainConfig  # noqa: E402
from agents.alignsam.training import make_train_env, train_or_reuse  # noqa: E402
from sam_gym import backends  # noqa: E402
from sam_gym.cli import build_parser, main  # noqa: E402
from sam_gym.commands.common import backend_from_args  # noqa: E402
from sam_gym.testing import TINY_SAM_ENTRY  # noqa: E402


@pytest.fixture()
def half_requests(monkeypatch: pytest.MonkeyPatch) -> list[Any]:
    """Register ``tiny_sam``; record the ``half`` of every backend build, then build in float32 (CPU)."""
    monkeypatch.setitem(backends.BACKENDS, "tiny_sam", TINY_SAM_ENTRY)
    requests: list[Any] = []
    real = backends.make_backend

    def spy(name: str, **kwargs: Any) -> Any:
        requests.append(kwargs.pop("half", None))
        return real(name, **kwargs)

    monkeypatch.setattr(backends, "make_backend", spy)
    return requests


def test_train_passes_half_to_the_backend(tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
                                          capsys: pytest.CaptureFixture[str]) -> None:
    monkeypatch.setitem(backends.BACKENDS, "tiny_sam", TINY_SAM_ENTRY)
    argv = ["train", "--backend", "tiny_sam", "--device", "cpu", "--timesteps", "8", "--no-progress",
            "--out", str(tmp_path / "run")]
    assert main([*argv, "--half"]) == 2
    assert "Expected half=True only on a CUDA device" in capsys.readouterr().err  # the SAM backend's own check
    assert main(["train", "--backend", "classical", "--half", "--out", str(tmp_path / "other")]) == 2
    assert "half" in capsys.readouterr().err


def test_demo_trains_and_evaluates_at_the_same_precision(tmp_path: Path, half_requests: list[Any]) -> None:
    args = build_parser().parse_args(["demo", "--quick", "--backend", "tiny_sam", "--device", "cpu", "--half",
                                      "--out", str(tmp_path / "demo")])
    config = demo_command._train_config(args, tmp_path / "demo" / "alignsam")
    assert config.half is True
    assert "--half" in config.extra["command"]
    backend_from_args(args)  # the evaluation backend
    make_train_env(config)  # the training backend
    assert half_requests == [True, True]


def test_old_run_config_without_half_is_a_float32_run(tmp_path: Path) -> None:
    saved = TrainConfig(out=str(tmp_path / "run")).to_dict()
    del saved["half"]  # a config.json written before the field existed
    assert TrainConfig.from_dict(saved, require_all=True).half is False
    del saved["seed"]
    with pytest.raises(ValueError, match=r"none for \['seed'\]"):
        TrainConfig.from_dict(saved, require_all=True)


def test_reuse_accepts_a_finished_run_saved_before_half(tmp_path: Path) -> None:
    config = TrainConfig(dataset="synthetic-shapes", dataset_kwargs={"n": 4}, n_train=2, timesteps=8, n_steps=8,
                         batch_size=8, n_epochs=1, n_envs=1, max_clicks=3, srm="none", device="cpu",
                         progress_bar=False, out=str(tmp_path / "run"))
    run_dir, reused = train_or_reuse(config)
    assert not reused
    info_path = run_dir / "config.json"
    info = json.loads(info_path.read_text())
    del info["config"]["half"]
    info_path.write_text(json.dumps(info))
    assert train_or_reuse(config) == (run_dir, True)
