"""``sam-gym eval`` end to end on small synthetic data (classical backend): outputs, shared episodes, errors."""

from __future__ import annotations

import json
import shlex
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

from sam_gym.policy import PromptPolicy


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
            "--samples", "3", "--max-clicks", "4", "--seeds", "0,1", "--grid", "6x6", "--out", str(out), *extra]
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
    assert "| random† |" in capsys.readouterr().out  # oracle labels and a GT initial pair: privileged


def test_results_keep_every_episode(tmp_path) -> None:
    out = tmp_path / "run"
    assert _eval(out, "random", "grid") == 0
    results = json.loads((out / "results.json").read_text())
    assert results["schema_version"] == 2 and results["dataset_path"] is None  # a built-in dataset
    assert len(results["dataset_sha256"]) == 64 and results["backend_model_id"].startswith("classical")
    keys = {}
    for name, entry in results["policies"].items():
        episodes = entry["episodes"]
        assert len(episodes) == entry["n_episodes"] == 6 and entry["n_images"] == 3
        assert [(e["index"], e["seed"]) for e in episodes] == [(i, s) for s in (0, 1) for i in range(3)]
        for e in episodes:
            assert len(e["ious"]) == 4 and e["final_iou"] == e["ious"][-1]
            assert len(e["image_sha256"]) == len(e["sample_sha256"]) == 64
            assert e["failed@90"] == (e["noc@90"] >= 4)
        keys[name] = [(e["sample_sha256"], e["seed"]) for e in episodes]
        assert entry["ci95"]["noc@90"][0] <= entry["noc@90"] <= entry["ci95"]["noc@90"][1]
        assert len(entry["ci95"]["miou_per_click"]) == 4
    assert keys["random"] == keys["grid"]
    assert len({k for k, _ in keys["random"]}) == 3  # three distinct samples
    assert "## Paired differences with `random`" in (out / "results.md").read_text()


def test_episodes_is_a_deprecated_alias_of_samples(tmp_path, capsys) -> None:
    out = tmp_path / "run"
    argv = ["eval", "--policy", "random", "--dataset", "synthetic-shapes", "--max-clicks", "2", "--out", str(out)]
    assert main([*argv, "--episodes", "2"]) == 0
    assert "--episodes is deprecated" in capsys.readouterr().err
    results = json.loads((out / "results.json").read_text())
    assert results["n_samples"] == 2 and "--samples 2" in results["command"] and "--episodes" not in results["command"]
    assert main([*argv, "--episodes", "2", "--samples", "3"]) == 2
    err = capsys.readouterr().err.strip()
    assert "\n" not in err and "--samples alone" in err


def test_canonical_command_reproduces_the_run(tmp_path, monkeypatch) -> None:
    data = _write_folder_dataset(tmp_path / "toy", 3)
    monkeypatch.chdir(tmp_path)
    assert main(["eval", "--policy", "random", "--policy", "grid:3", "--dataset", "toy", "--void", "128",
                 "--samples", "2", "--max-clicks", "3", "--seeds", "1,2", "--out", "first"]) == 0
    first = json.loads((tmp_path / "first" / "results.json").read_text())
    assert first["dataset_path"] == str(data.resolve())
    argv = shlex.split(first["command"])
    assert argv[:2] == ["sam-gym", "eval"] and argv[-2:] == ["--out", "first"]
    assert {"--void", "--samples", "--seeds", "--task-metrics", "--on-error"} <= set(argv) and "--half" not in argv
    assert main([*argv[1:-2], "--out", "second"]) == 0
    second = json.loads((tmp_path / "second" / "results.json").read_text())
    assert second["command"] == first["command"].replace("--out first", "--out second")
    for name in ("random", "grid:3"):
        assert second["policies"][name]["episodes"] == first["policies"][name]["episodes"]


def test_canonical_command_spells_out_every_kind_of_option() -> None:
    import argparse

    from sam_gym.commands.common import canonical_command

    def add(parser: argparse.ArgumentParser) -> None:
        parser.add_argument("--name", action="append")
        parser.add_argument("--size", "--old-size", type=int, default=3)
        parser.add_argument("--many", nargs="+", type=int)
        parser.add_argument("--fast", action="store_true")
        parser.add_argument("--unset", default=None)
        parser.add_argument("--hidden", default="x", help=argparse.SUPPRESS)

    args = argparse.Namespace(name=["a b", "c"], size=5, many=[1, 2], fast=True, unset=None, hidden="x")
    assert canonical_command("tool run", add, args) == \
        "tool run --name 'a b' --name c --size 5 --many 1 2 --fast"
    args.fast = False
    assert canonical_command("tool run", add, args, skip=("many",)) == "tool run --name 'a b' --name c --size 5"


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
    # the recorded command is the quick run's (not the full-size defaults that --quick overrides) ...
    command = shlex.split(results["command"])
    assert "--quick" in command and not {"--n-train", "--timesteps", "--max-clicks"} & set(command)
    # ... and running it again reproduces the run, reusing the finished agent instead of training again
    assert main(command[1:]) == 0
    assert "reusing the trained agent" in capsys.readouterr().out
    again = json.loads((out / "results.json").read_text())
    assert again["policies"]["random"]["episodes"] == results["policies"]["random"]["episodes"]


def test_demo_rejects_alignsam_as_a_baseline(tmp_path, capsys) -> None:
    assert main(["demo", "--quick", "--policies", "alignsam:x", "--out", str(tmp_path / "d")]) == 2
    assert "--policies" in capsys.readouterr().err


def _write_unusable_files(root: Path) -> dict[str, str]:
    """Add a truncated image, an all-foreground mask and an 8x8 image to a folder dataset; name -> expected reason."""
    import numpy as np

    cv2.imwrite(str(root / "images" / "cut.png"), np.full((64, 80, 3), 90, np.uint8))
    cv2.imwrite(str(root / "masks" / "cut.png"), np.pad(np.full((32, 40), 255, np.uint8), ((16, 16), (20, 20))))
    data = (root / "images" / "cut.png").read_bytes()
    (root / "images" / "cut.png").write_bytes(data[: len(data) // 2])
    cv2.imwrite(str(root / "images" / "full.png"), np.full((64, 80, 3), 90, np.uint8))
    cv2.imwrite(str(root / "masks" / "full.png"), np.full((64, 80), 255, np.uint8))
    tiny = np.zeros((8, 8), np.uint8)
    tiny[2:6, 2:6] = 255
    cv2.imwrite(str(root / "images" / "tiny.png"), np.dstack([tiny] * 3))
    cv2.imwrite(str(root / "masks" / "tiny.png"), tiny)
    return {"cut.png": "truncated", "full.png": "covers the whole image", "tiny.png": "no finer than the image"}


def test_eval_skips_unusable_files_and_lists_them(tmp_path, capsys) -> None:
    data = _write_folder_dataset(tmp_path / "toy", 3)
    expected = _write_unusable_files(data)
    out = tmp_path / "run"
    argv = ["eval", "--policy", "random", "--policy", "grid", "--dataset", str(data), "--grid", "10x10",
            "--max-clicks", "2", "--out", str(out)]
    with pytest.warns(UserWarning) as caught:
        assert main(argv) == 0
    results = json.loads((out / "results.json").read_text())
    skipped = {Path(s["file"]).name: s for s in results["skipped"]}
    assert set(skipped) == set(expected)
    for name, reason in expected.items():
        assert reason in skipped[name]["reason"]
        # one warning per bad file, naming it and the reason (the two found when the dataset is built share one)
        assert sum(name in str(w.message) and reason in str(w.message) for w in caught) == 1
    # the truncated image and the full mask are dropped when the dataset is built; the 8x8 image
    # (sample 3, after 000-002) only fails against the 10x10 grid
    assert skipped["tiny.png"]["index"] == 3 and skipped["cut.png"]["index"] is None
    assert results["indices"] == [0, 1, 2] and results["n_samples"] == 3
    assert all(entry["n_episodes"] == 3 for entry in results["policies"].values())
    assert "tiny.png" in (out / "results.md").read_text()
    assert "skipped 3 unusable file(s)" in capsys.readouterr().out
    # --on-error raise stops at the first bad file, before any episode, with one line
    assert main([*argv, "--on-error", "raise", "--out", str(tmp_path / "strict")]) == 2
    err = capsys.readouterr().err.strip()
    assert "\n" not in err and "cut.png" in err and "truncated" in err
    assert not (tmp_path / "strict").exists()


def test_eval_reads_coco_with_image_dir(tmp_path) -> None:
    pytest.importorskip("pycocotools")
    import numpy as np

    (tmp_path / "img").mkdir()
    cv2.imwrite(str(tmp_path / "img" / "a.png"), np.random.default_rng(0).integers(0, 255, (60, 80, 3), np.uint8))
    ann = {"images": [{"id": 1, "file_name": "a.png", "height": 60, "width": 80}],
           "annotations": [{"id": 7, "image_id": 1, "category_id": 3, "iscrowd": 0, "area": 400.0,
                            "segmentation": [[10, 10, 40, 10, 40, 30, 10, 30]]}]}
    (tmp_path / "ann.json").write_text(json.dumps(ann))
    out = tmp_path / "run"
    assert main(["eval", "--policy", "random", "--dataset", str(tmp_path / "ann.json"), "--image-dir",
                 str(tmp_path / "img"), "--max-clicks", "2", "--out", str(out)]) == 0
    results = json.loads((out / "results.json").read_text())
    assert results["dataset"] == "ann" and results["policies"]["random"]["n_episodes"] == 1
    assert "--image-dir" in results["command"] and results["skipped"] == []


def test_forged_classical_cache_entry_is_recomputed(tmp_path) -> None:
    # A cache entry with a valid checksum but arrays of the wrong shape (forged, or from another
    # version) is treated like a corrupt entry: recomputed with a warning, not a crash in the graph cut.
    import numpy as np

    from sam_gym.cache import _arrays_digest

    cache_dir = tmp_path / "cache"
    first, second = tmp_path / "first", tmp_path / "second"
    argv = ["eval", "--policy", "grid", "--dataset", "synthetic-shapes", "--samples", "1", "--max-clicks", "3",
            "--cache-dir", str(cache_dir)]
    assert main([*argv, "--out", str(first)]) == 0
    (entry,) = cache_dir.rglob("*.npz")
    with np.load(entry) as stored:
        arrays = {name: stored[name] for name in stored.files}
    meta = json.loads(arrays.pop("__meta__").tobytes().decode())
    arrays["extra_edges"] = arrays["extra_edges"][:, :-1]  # one column short
    meta["sha256"] = _arrays_digest(arrays)
    np.savez(entry, __meta__=np.frombuffer(json.dumps(meta).encode(), np.uint8), **arrays)
    with pytest.warns(UserWarning, match="is invalid .*extra_edges|is invalid .*edges"):
        assert main([*argv, "--out", str(second)]) == 0
    ious = [json.loads((run / "results.json").read_text())["policies"]["grid"]["miou_per_click"]
            for run in (first, second)]
    assert ious[0] == ious[1]


@pytest.mark.slow
def test_demo_compares_on_the_agents_footing(tmp_path, capsys) -> None:
    pytest.importorskip("sb3_contrib")
    pytest.importorskip("agents.clicker")
    out = tmp_path / "demo"
    assert main(["demo", "--quick", "--policies", "random,clicker", "--out", str(out)]) == 0
    policies = json.loads((out / "results.json").read_text())["policies"]
    # random clicks with the agent's SRM labels and initial prompts (the paper's "w/o RL" row) ...
    assert policies["random"]["protocol_from"] == "alignsam" and policies["random"]["privileged"] == []
    assert policies["random"]["labels"] == policies["alignsam"]["labels"] != "oracle"
    assert policies["random"]["init_prompts"] == policies["alignsam"]["init_prompts"] != "gt_pair"
    # ... the oracle clicker keeps its own protocol and is marked; the agent is checked on held-out samples only
    assert policies["clicker"]["privileged"] == ["episode_view"] and policies["alignsam"]["train_samples_scored"] == 0
    md = (out / "results.md").read_text()
    assert "| random |" in md and "| clicker† |" in md and "| alignsam |" in md
    assert "random with the agent's SRM labels and initial prompts" in capsys.readouterr().out
