"""Every row of ``sam-gym eval`` on the same footing, or marked: privileges, ``--protocol``, held-out samples.

Through the command line (:func:`sam_gym.cli.main`) on tiny settings: the classical backend (NOT
SAM), the built-in synthetic shapes, and a seconds-long AlignSAM run trained on samples 0-3.
"""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import cv2
import pytest

from sam_gym.cli import main
from sam_gym.data import make_dataset

TRAIN = ["train", "--dataset", "synthetic-shapes", "--timesteps", "8", "--n-steps", "8", "--batch-size", "8",
         "--n-epochs", "1", "--n-envs", "1", "--n-train", "4", "--max-clicks", "3", "--srm-warmup-steps", "5",
         "--seed", "0", "--no-progress", "--device", "cpu", "--train-split", "first"]
N_TRAIN = 4


@pytest.fixture(scope="module")
def run_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A tiny AlignSAM run trained on samples 0-3 of ``synthetic-shapes``."""
    pytest.importorskip("sb3_contrib")
    out = tmp_path_factory.mktemp("footing") / "run"
    assert main([*TRAIN, "--out", str(out)]) == 0
    return out


def _eval(out: Path, *policies: str, dataset: str = "synthetic-shapes", extra: tuple[str, ...] = ()) -> dict:
    argv = ["eval", *(a for p in policies for a in ("--policy", p)), "--dataset", dataset, "--max-clicks", "3",
            "--out", str(out), *extra]
    assert main(argv) == 0
    return json.loads((out / "results.json").read_text())


# ----------------------------------------------------------------------------- section 0: privileges


def test_rows_that_read_ground_truth_are_marked_privileged(tmp_path, monkeypatch) -> None:
    pytest.importorskip("agents.clicker")
    import matplotlib.pyplot as plt

    figures = []
    close = plt.close
    monkeypatch.setattr(plt, "close", lambda fig=None: figures.append(fig))  # keep the plot to read its legend
    results = _eval(tmp_path / "run", "random", "clicker", extra=("--episodes", "2"))
    monkeypatch.setattr(plt, "close", close)
    random, clicker = results["policies"]["random"], results["policies"]["clicker"]
    # random is no oracle, but its env labels its clicks and places its first prompts from the ground truth
    assert random["oracle"] is False and random["privileged"] == ["oracle_labels", "gt_init_prompts"]
    assert clicker["oracle"] is True and clicker["privileged"] == ["episode_view"]
    assert random["protocol_from"] is None and results["protocol"] is None
    md = (tmp_path / "run" / "results.md").read_text()
    assert "| random† |" in md and "| clicker† |" in md
    assert "- `random`: oracle labels" in md and "GT initial prompts" in md and "- `clicker`: reads the ground" in md
    legend = figures[0].axes[0].get_legend()
    assert [t.get_text().split()[0] for t in legend.get_texts()] == ["random†", "clicker†"]
    assert "privileged" in legend.get_title().get_text()
    close(figures[0])


def test_protocol_refuses_what_it_cannot_wrap(tmp_path, capsys) -> None:
    pytest.importorskip("agents.clicker")
    out = tmp_path / "run"
    argv = ["eval", "--dataset", "synthetic-shapes", "--out", str(out)]
    assert main([*argv, "--policy", "clicker", "--protocol", "random"]) == 2
    assert "location-only --policy" in capsys.readouterr().err
    assert main([*argv, "--policy", "grid", "--protocol", "random"]) == 2  # random sets no labels to borrow
    assert "sets neither" in capsys.readouterr().err
    assert not out.exists()


def test_random_under_an_alignsam_protocol_clicks_with_its_srm_labels(tmp_path, run_dir, capsys) -> None:
    from agents.alignsam.policy import AlignSAMPolicy
    from agents.simple import RandomPolicy
    from sam_gym.envs import SamPromptEnv
    from sam_gym.evaluation import run_episodes

    spec = f"alignsam:{run_dir}"
    results = _eval(tmp_path / "run", spec, "random", "grid", extra=("--protocol", spec, "--episodes", "3"))
    rows = results["policies"]
    assert results["protocol"] == spec
    for name in ("random", "grid"):
        assert rows[name]["protocol_from"] == spec and rows[name]["privileged"] == []
        assert rows[name]["labels"] == rows[spec]["labels"] == "srm.Labeller"
        assert rows[name]["init_prompts"] == rows[spec]["init_prompts"] == "srm.InitialPrompts"
    assert rows[spec]["protocol_from"] is None and rows[spec]["privileged"] == []
    md = (tmp_path / "run" / "results.md").read_text()
    assert "| random |" in md and "†" not in md and f"of `{spec}` (`--protocol`)" in md
    # the same episodes run by hand: random patches in the agent's env, each click labelled by its SRM
    agent = AlignSAMPolicy.load(run_dir, device="cpu")
    env = SamPromptEnv(dataset=make_dataset("synthetic-shapes"), max_clicks=3, **agent.env_kwargs)
    records = run_episodes(RandomPolicy(), env, results["indices"], seeds=[0])
    for record in records:  # replayed click by click: each label is the SRM's at the state it was clicked in
        env.reset(seed=record.seed, options={"index": record.index})
        for point, label in zip(record.points, record.labels, strict=True):
            view = env.episode_view()
            assert label == agent.srm.labeller(view, point)
            env.step(view.grid.point_to_cell(*point))
    by_click = [sum(r.ious[k] for r in records) / len(records) for k in range(3)]
    assert rows["random"]["miou_per_click"] == pytest.approx(by_click)
    # a protocol borrowed from a run also keeps that run's training samples out
    alone = _eval(tmp_path / "alone", "random", extra=("--protocol", spec, "--episodes", "2"))
    assert alone["indices"] == [N_TRAIN, N_TRAIN + 1] and alone["policies"]["random"]["train_samples_scored"] == 0


# ----------------------------------------------------------------------------- section 5: held-out samples


def _copy_as_folder(root: Path, n: int) -> Path:
    """Samples 0..n-1 of synthetic-shapes as a folder dataset under another name (lossless PNG)."""
    dataset = make_dataset("synthetic-shapes")
    (root / "images").mkdir(parents=True)
    (root / "masks").mkdir()
    for i in range(n):
        sample = dataset[i]
        cv2.imwrite(str(root / "images" / f"{i:03d}.png"), cv2.cvtColor(sample.image, cv2.COLOR_RGB2BGR))
        cv2.imwrite(str(root / "masks" / f"{i:03d}.png"), sample.target.astype("uint8") * 255)
    return root


def test_training_samples_are_left_out_by_content(tmp_path, run_dir, capsys) -> None:
    spec = f"alignsam:{run_dir}"
    results = _eval(tmp_path / "run", spec, "random", extra=("--episodes", "3"))
    assert results["indices"] == [N_TRAIN, N_TRAIN + 1, N_TRAIN + 2]  # the first 3 held-out samples
    held_out = results["held_out"]
    assert held_out["include_train"] is False and held_out["excluded_indices"] == list(range(N_TRAIN))
    assert held_out["policies"][spec]["checked"] is True
    assert results["policies"][spec]["train_samples_scored"] == 0
    assert "train_samples_scored" not in results["policies"]["random"]  # trained on nothing
    printed = capsys.readouterr().out
    assert f"left out {N_TRAIN} sample(s) of synthetic-shapes that are training samples of {spec}" in printed
    md = (tmp_path / "run" / "results.md").read_text()
    assert "‡" not in md and f"Held out: {N_TRAIN} sample(s) of the dataset are training samples of `{spec}`" in md
    # the same images under another name and format are recognised; another dataset is scored in full
    copy = _copy_as_folder(tmp_path / "copy", N_TRAIN + 2)
    assert _eval(tmp_path / "copy_run", spec, dataset=str(copy))["indices"] == [N_TRAIN, N_TRAIN + 1]
    other = _eval(tmp_path / "other", spec, dataset="synthetic-multi", extra=("--episodes", "2"))
    assert other["indices"] == [0, 1] and other["held_out"]["excluded_indices"] == []


def test_include_train_scores_them_and_marks_the_row(tmp_path, run_dir, capsys) -> None:
    spec = f"alignsam:{run_dir}"
    results = _eval(tmp_path / "run", spec, extra=("--episodes", "3", "--include-train"))
    assert results["indices"] == [0, 1, 2] and results["held_out"]["include_train"] is True
    assert results["policies"][spec]["train_samples_scored"] == 3
    assert "--include-train" in results["command"]
    assert "scoring 3 of its training samples" in capsys.readouterr().out
    md = (tmp_path / "run" / "results.md").read_text()
    assert f"| {spec}‡ |" in md and "not a held-out score" in md


def test_only_training_samples_is_one_line_error(tmp_path, run_dir, capsys) -> None:
    copy = _copy_as_folder(tmp_path / "copy", N_TRAIN)
    out = tmp_path / "run"
    assert main(["eval", "--policy", f"alignsam:{run_dir}", "--dataset", str(copy), "--out", str(out)]) == 2
    err = capsys.readouterr().err.strip()
    assert "\n" not in err and f"all {N_TRAIN} candidate samples are training samples" in err
    assert "--include-train" in err and not out.exists()


def test_old_run_without_hashes_warns_and_marks(tmp_path, run_dir) -> None:
    old = tmp_path / "old"
    shutil.copytree(run_dir, old)
    info = json.loads((old / "config.json").read_text())
    del info["split"]["train_sha256"]  # as written before sample hashes were recorded
    (old / "config.json").write_text(json.dumps(info))
    spec = f"alignsam:{old}"
    with pytest.warns(UserWarning, match="by index only .*samples 0-3 of synthetic-shapes"):
        results = _eval(tmp_path / "run", spec, extra=("--episodes", "2"))
    assert results["indices"] == [0, 1] and results["policies"][spec]["train_samples_scored"] is None
    assert results["held_out"]["policies"][spec]["checked"] is False
    md = (tmp_path / "run" / "results.md").read_text()
    assert f"| {spec}‡ |" in md and "is unknown" in md
