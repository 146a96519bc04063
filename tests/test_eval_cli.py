"""``sam-gym eval`` end to end on small synthetic data (classical backend): outputs, shared episodes, errors."""

from __future__ import annotations

import json
import textwrap
from pathlib import Path

import cv2
import pytest

from sam_gym.cli import main
from sam_gym.data import SyntheticShapes

PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"

# A user policy given as ``module.path:Class``: an oracle that clicks the centre of the patch holding
# the most ground-truth foreground among those not clicked yet (patch mode, labels from the env).
USER_POLICY = '''
from typing import Any, ClassVar

import numpy as np

from agents.base import PromptPolicy


class MostForeground(PromptPolicy):
    name: ClassVar[str] = "most-foreground"
    oracle: ClassVar[bool] = True
    env_kwargs: ClassVar[dict[str, Any]] = {"action_mode": "patch"}

    def act(self, observation, deterministic):
        view = self.view()
        env = self.env
        target = view.sample.target
        h, w = target.shape
        counts = np.array([target[r * h // env.rows:(r + 1) * h // env.rows,
                                  c * w // env.cols:(c + 1) * w // env.cols].sum()
                           for r in range(env.rows) for c in range(env.cols)], dtype=float)
        counts[np.asarray(observation["clicked"]) > 0.5] = -1.0
        return int(np.argmax(counts))
'''


@pytest.fixture
def user_policy(tmp_path, monkeypatch) -> str:
    package = tmp_path / "userpolicies"
    package.mkdir()
    (package / "__init__.py").write_text("")
    (package / "oracle.py").write_text(textwrap.dedent(USER_POLICY))
    monkeypatch.syspath_prepend(str(tmp_path))
    return "userpolicies.oracle:MostForeground"


def _eval(out: Path, *policies: str, extra: tuple[str, ...] = ()) -> int:
    argv = ["eval", *(a for p in policies for a in ("--policy", p)), "--dataset", "synthetic-shapes",
            "--episodes", "3", "--max-clicks", "4", "--seeds", "0,1", "--grid", "6x6", "--out", str(out), *extra]
    return main(argv)


def test_eval_end_to_end(tmp_path, user_policy, capsys) -> None:
    out = tmp_path / "run"
    assert _eval(out, "random", "grid", user_policy, extra=("--save-episodes", "2")) == 0
    results = json.loads((out / "results.json").read_text())
    assert results["backend"] == "classical" and "not SAM" in results["backend_description"]
    assert results["max_clicks"] == 4 and results["grid"] == [6, 6] and results["seeds"] == [0, 1]
    assert results["command"].startswith("sam-gym eval --policy random --policy grid")
    assert set(results["policies"]) == {"random", "grid", user_policy}
    for entry in results["policies"].values():
        assert entry["n_episodes"] == 6 and entry["seeds"] == [0, 1]  # 3 samples x 2 seeds
        assert len(entry["miou_per_click"]) == 4
        assert entry["latency_ms_per_click"] > 0 and entry["peak_mem_mb"] > 0
        assert "mae" not in entry  # synthetic shapes are not a binary folder dataset: task metrics off (auto)
    oracle = results["policies"][user_policy]
    assert oracle["oracle"] is True and oracle["labels"] == "oracle" and oracle["init_prompts"] == "gt_pair"
    assert results["policies"]["random"]["oracle"] is False
    # the oracle clicks on foreground first, so it hits it at least as often as the fixed sweep
    assert oracle["fg_hit_rate"] >= results["policies"]["grid"]["fg_hit_rate"]
    md = (out / "results.md").read_text()
    assert results["command"] in md and results["backend_description"] in md and f"{user_policy}†" in md
    assert (out / "iou_vs_clicks.png").read_bytes()[:8] == PNG_SIGNATURE
    strips = sorted((out / "episodes").glob("*.png"))
    assert len(strips) == 3 * 2 and all(cv2.imread(str(p)) is not None for p in strips)
    assert "| random |" in capsys.readouterr().out


def test_same_episodes_for_every_policy(tmp_path) -> None:
    # random twice under two names would differ if the episodes (sample, seed, initial prompts) differed
    out = tmp_path / "run"
    assert _eval(out, "random", "agents.simple:RandomPolicy") == 0
    policies = json.loads((out / "results.json").read_text())["policies"]
    assert policies["random"]["miou_per_click"] == policies["agents.simple:RandomPolicy"]["miou_per_click"]
    assert policies["random"]["init_iou"] == policies["agents.simple:RandomPolicy"]["init_iou"]


def test_eval_with_the_clicker(tmp_path) -> None:
    pytest.importorskip("agents.clicker")
    out = tmp_path / "run"
    assert _eval(out, "random", "grid", "clicker") == 0
    policies = json.loads((out / "results.json").read_text())["policies"]
    clicker = policies["clicker"]
    assert clicker["oracle"] is True and clicker["init_prompts"] == "none" and clicker["init_iou"] == 0.0
    # its first click is positive, on the ground truth: it hits the foreground far more than random patches
    assert clicker["fg_hit_rate"] > policies["random"]["fg_hit_rate"]
    # the oracle clicker segments the synthetic targets well (IoU need not grow monotonically)
    assert clicker["miou_per_click"][-1] > 0.9 and clicker["noc@90"] <= 2.0


def _write_folder_dataset(root: Path, n: int) -> Path:
    (root / "images").mkdir(parents=True)
    (root / "masks").mkdir()
    shapes = SyntheticShapes(n=n, size=(64, 80))
    for i in range(n):
        sample = shapes[i]
        cv2.imwrite(str(root / "images" / f"{i:03d}.png"), cv2.cvtColor(sample.image, cv2.COLOR_RGB2BGR))
        cv2.imwrite(str(root / "masks" / f"{i:03d}.png"), sample.target.astype("uint8") * 255)
    return root


def test_task_metrics_auto_on_binary_folders(tmp_path) -> None:
    data = _write_folder_dataset(tmp_path / "toy", 2)
    out = tmp_path / "run"
    assert main(["eval", "--policy", "grid", "--dataset", str(data), "--max-clicks", "2", "--out", str(out)]) == 0
    entry = json.loads((out / "results.json").read_text())["policies"]["grid"]
    assert {"mae", "f_beta", "e_measure", "ber"} <= set(entry)
    assert "MAE" in (out / "results.md").read_text()
    assert main(["eval", "--policy", "grid", "--dataset", str(data), "--max-clicks", "2", "--task-metrics", "off",
                 "--out", str(out)]) == 0
    assert "mae" not in json.loads((out / "results.json").read_text())["policies"]["grid"]


@pytest.mark.parametrize(("argv", "message"), [
    (["--policy", "randm", "--dataset", "synthetic-shapes"], "Did you mean 'random'?"),
    (["--policy", "random", "--dataset", "/no/such/folder"], "no such directory"),
    (["--policy", "random", "--dataset", "synthetic-shapes", "--grid", "10by10"], "ROWSxCOLS"),
    (["--policy", "random", "--dataset", "synthetic-shapes", "--seeds", "0,x"], "--seeds"),
    (["--policy", "random", "--policy", "random", "--dataset", "synthetic-shapes"], "each --policy once"),
    (["--policy", "random", "--dataset", "synthetic-shapes", "--backend", "sam_vit_q"], "sam_vit_b"),
])
def test_bad_arguments_exit_2_with_one_line(tmp_path, capsys, argv, message) -> None:
    out = tmp_path / "run"
    assert main(["eval", *argv, "--out", str(out)]) == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith("sam-gym eval: error:") and "\n" not in err and message in err
    assert not out.exists()  # failed before any work


@pytest.mark.slow
def test_demo_quick(tmp_path, capsys) -> None:
    pytest.importorskip("sb3_contrib")
    out = tmp_path / "demo"
    assert main(["demo", "--quick", "--policies", "random", "--out", str(out)]) == 0
    printed = capsys.readouterr().out
    assert printed.startswith("sam-gym demo: backend classical") and "[NOT SAM]" in printed
    results = json.loads((out / "results.json").read_text())
    assert set(results["policies"]) == {"alignsam", "random"}
    assert results["policies"]["alignsam"]["oracle"] is False
    assert results["indices"] == [2]  # the first held-out sample after the 2 training samples of --quick
    assert (out / "alignsam" / "config.json").is_file() and (out / "iou_vs_clicks.png").is_file()
    # a second run reuses the finished agent instead of training again
    assert main(["demo", "--quick", "--policies", "random", "--out", str(out)]) == 0
    assert "reusing the trained agent" in capsys.readouterr().out


def test_demo_rejects_alignsam_as_a_baseline(tmp_path, capsys) -> None:
    assert main(["demo", "--quick", "--policies", "alignsam:x", "--out", str(tmp_path / "d")]) == 2
    assert "--policies" in capsys.readouterr().err
