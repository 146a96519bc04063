"""AlignSAM against the paper (issue 13): the paper preset, the agent's inputs, the training labels,
the random training split, separate actor and critic, the SRM's per-action updates and the
explicit branch's early fusion, and old run folders loading as they were made.

Classical backend (NOT SAM) and built-in synthetic data with tiny settings only.
"""

from __future__ import annotations

import json
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import numpy as np
import pytest

torch = pytest.importorskip("torch")
pytest.importorskip("sb3_contrib")

from agents.alignsam.config import _ADDED_FIELDS, ALL_INPUTS, TrainConfig  # noqa: E402
from agents.alignsam.run_format import held_out_indices, split_indices  # noqa: E402

#: A training run of a few seconds.
TINY: dict[str, Any] = {"dataset": "synthetic-shapes", "dataset_kwargs": {"n": 6}, "n_train": 4, "timesteps": 30,
                        "n_envs": 1, "n_steps": 15, "batch_size": 15, "n_epochs": 1, "srm_warmup_steps": 2,
                        "srm_warmup_episodes": 1, "srm_warmup_clicks": 2, "progress_bar": False, "device": "cpu",
                        "checkpoint_every": 1000}


# ----------------------------------------------------------------------------- the paper's preset


def test_paper_preset_is_algorithm_1() -> None:
    paper = TrainConfig.preset("paper")
    # one env, one T-click episode per update, E = 50 episodes, Monte-Carlo returns (eq. 6-7)
    assert (paper.n_envs, paper.n_steps, paper.batch_size, paper.timesteps) == (1, 15, 15, 750)
    assert paper.gae_lambda == 1.0 and (paper.gamma, paper.clip_range, paper.n_epochs) == (0.99, 0.2, 20)
    assert paper.inputs == ("state",) and not paper.share_features_extractor
    assert not paper.srm_context and paper.srm_warmup_steps == 0 and paper.srm_q_per_action
    assert paper.train_split == "random" and paper.train_labels == "oracle"
    shorter = TrainConfig.preset("paper", max_clicks=10, seed=3)
    assert (shorter.n_steps, shorter.timesteps, shorter.seed) == (10, 500, 3)
    assert TrainConfig.preset("paper", timesteps=1500).timesteps == 1500
    with pytest.raises(ValueError, match="Expected a preset among"):
        TrainConfig.preset("papers")


def test_train_command_preset_and_overrides() -> None:
    import argparse

    from agents.alignsam.train_command import add_arguments, config_from_args

    parser = argparse.ArgumentParser()
    add_arguments(parser)
    config = config_from_args(parser.parse_args(["--out", "x", "--preset", "paper", "--n-epochs", "3"]))
    assert (config.n_envs, config.n_steps, config.gae_lambda, config.n_epochs, config.inputs) == (
        1, 15, 1.0, 3, ("state",))
    default = config_from_args(parser.parse_args(["--out", "x", "--inputs", "state", "clicks", "--train-labels", "srm",
                                                  "--separate-extractors"]))
    assert default == TrainConfig(out="x", inputs=("state", "clicks"), train_labels="srm",
                                  share_features_extractor=False)


def test_config_checks_new_fields() -> None:
    with pytest.raises(ValueError, match="including 'state'"):
        TrainConfig(inputs=("mask", "clicks"))
    with pytest.raises(ValueError, match="including 'state'"):
        TrainConfig(inputs=("state", "labels"))
    with pytest.raises(ValueError, match="train_labels"):
        TrainConfig(train_labels="gt")  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="train_labels='srm'"):
        TrainConfig(srm="none", train_labels="srm")
    restored = TrainConfig.from_dict(json.loads(json.dumps(TrainConfig(inputs=("state", "mask")).to_dict())),
                                     require_all=True)
    assert restored.inputs == ("state", "mask")


def test_old_config_loads_as_it_was_made() -> None:
    """A config.json saved before the new fields gets the values those runs were trained with."""
    old = {k: v for k, v in TrainConfig().to_dict().items() if k not in _ADDED_FIELDS}
    loaded = TrainConfig.from_dict(old, require_all=True)
    assert loaded.inputs == ALL_INPUTS and loaded.train_split == "first" and loaded.train_labels == "oracle"
    assert loaded.share_features_extractor and not loaded.srm_q_per_action and loaded.srm_fusion == "late"
    assert TrainConfig.from_dict(old).train_split == "random"  # a partial dict (not a run) gets today's defaults


# ----------------------------------------------------------------------------- the split


def test_random_split_is_seeded_and_may_take_everything() -> None:
    train, held_out = split_indices(100, 50, "random", 0)
    assert len(train) == 50 and sorted(train + held_out) == list(range(100)) and train != list(range(50))
    assert split_indices(100, 50, "random", 0) == (train, held_out)
    assert split_indices(100, 50, "random", 1)[0] != train
    assert split_indices(10, 4, "first", 7) == ([0, 1, 2, 3], list(range(4, 10)))
    assert split_indices(50, 50, "random", 0) == (list(range(50)), [])  # a folder of exactly 50 images
    with pytest.raises(ValueError, match=r"Expected n_train in \[1, 50\]"):
        split_indices(50, 51, "random", 0)


def test_training_env_accepts_a_dataset_of_exactly_n_train() -> None:
    from agents.alignsam.training import make_train_env

    vec_env, dataset, train_set = make_train_env(TrainConfig(**{**TINY, "n_train": 6}))
    assert len(dataset) == 6 and sorted(train_set.indices) == list(range(6))
    vec_env.close()


# ----------------------------------------------------------------------------- inputs and networks


def test_extractor_reads_only_its_inputs() -> None:
    from agents.alignsam.features import AlignSAMExtractor
    from sam_gym.data import make_dataset
    from sam_gym.envs import SamPromptEnv

    env = SamPromptEnv(dataset=make_dataset("synthetic-shapes", n=2))
    obs, _ = env.reset(seed=0)
    batch = {k: torch.as_tensor(v)[None].float() for k, v in obs.items()}
    full = AlignSAMExtractor(env.observation_space, env.state_shape)
    state_only = AlignSAMExtractor(env.observation_space, env.state_shape, inputs=("state",))
    assert state_only.mask_net is None and state_only.vector_net is None
    assert state_only(batch).shape == (1, state_only.features_dim) and state_only.features_dim < full.features_dim
    # the state-only features do not change when the other keys do
    changed = {**batch, "mask": torch.rand_like(batch["mask"]), "clicks": torch.rand_like(batch["clicks"])}
    assert torch.equal(state_only(batch), state_only(changed))
    assert not torch.equal(full(batch), full(changed))
    with pytest.raises(ValueError, match="including 'state'"):
        AlignSAMExtractor(env.observation_space, env.state_shape, inputs=("clicks",))


def test_separate_actor_and_critic_extractors() -> None:
    from agents.alignsam.training import build_model, make_train_env

    for share in (True, False):
        config = TrainConfig(**TINY, share_features_extractor=share, inputs=("state",))
        vec_env, _, _ = make_train_env(config)
        policy = build_model(config, vec_env, None).policy
        assert (policy.pi_features_extractor is policy.vf_features_extractor) == share
        vec_env.close()


def test_srm_gets_q_steps_per_action() -> None:
    from agents.alignsam.srm import SRMCallback

    calls: list[int] = []
    srm = SimpleNamespace(update=lambda views, q: calls.append(q) or 0.0)
    logger = SimpleNamespace(record_mean=lambda *a: None)
    for per_action, expected in ((True, 6), (False, 2)):
        callback = SRMCallback(srm, 2, per_action=per_action)  # type: ignore[arg-type]
        callback.model = SimpleNamespace(get_env=lambda: SimpleNamespace(env_method=lambda name: ["v1", "v2", "v3"]),
                                         logger=logger)
        callback._on_step()
        assert calls[-1] == expected


def test_explicit_branch_aggregates_both_states() -> None:
    from agents.alignsam.srm import SemanticRecalibrationModule

    channels, context = 10, 4
    early = SemanticRecalibrationModule(channels, True, 16, context, fusion="early")
    late = SemanticRecalibrationModule(channels, True, 16, context, fusion="late")
    assert early.implicit_branch is None
    assert early.explicit_branch[0][0].in_channels == (channels + 1) + (channels + 1 + context)
    assert late.explicit_branch[0][0].in_channels == channels + 1
    implicit, explicit = torch.rand(2, channels + 1 + context, 8, 8), torch.rand(2, channels + 1, 8, 8)
    assert early(implicit, explicit).shape == late(implicit, explicit).shape == (2, 1, 8, 8)
    # early fusion: the prediction depends on the implicit state through the explicit stack
    assert not torch.allclose(early(implicit, explicit), early(torch.rand_like(implicit), explicit))
    implicit_only = SemanticRecalibrationModule(channels, False, 16, 0, fusion="early")
    assert implicit_only.implicit_branch is not None and implicit_only.explicit_branch is None


# ----------------------------------------------------------------------------- training end to end


def test_train_labels_srm_labels_training_clicks(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from agents.alignsam.srm import recalibrator
    from agents.alignsam.training import train

    calls = {"n": 0}
    original = recalibrator._Labeller.__call__

    def counting(self: Any, view: Any, point: Any) -> int:
        calls["n"] += 1
        return original(self, view, point)

    monkeypatch.setattr(recalibrator._Labeller, "__call__", counting)
    train(TrainConfig(**TINY, out=str(tmp_path / "oracle")))
    assert calls["n"] == 0
    run = train(TrainConfig(**TINY, out=str(tmp_path / "srm"), train_labels="srm"))
    assert calls["n"] >= 30  # every training click (the warm-up keeps oracle labels)
    info = json.loads((run / "config.json").read_text())
    assert info["config"]["train_labels"] == "srm"


def test_run_records_inputs_and_old_runs_load_with_all_inputs(tmp_path: Path) -> None:
    from agents.alignsam.policy import AlignSAMPolicy
    from agents.alignsam.training import train

    run = train(TrainConfig(**TINY, out=str(tmp_path / "state"), inputs=("state",)))
    info = json.loads((run / "config.json").read_text())
    assert info["config"]["inputs"] == ["state"] and info["split"]["mode"] == "random"
    assert AlignSAMPolicy.load(run, device="cpu").model.policy.features_extractor.inputs == ("state",)
    assert sorted(held_out_indices(info) + info["split"]["train"]) == list(range(6))

    old = train(TrainConfig(**TINY, out=str(tmp_path / "old"), train_split="first", srm_q_per_action=False,
                            inputs=ALL_INPUTS))
    path = old / "config.json"
    info = json.loads(path.read_text())
    for name in _ADDED_FIELDS:  # as written before these fields existed
        info["config"].pop(name)
    path.write_text(json.dumps(info))
    agent = AlignSAMPolicy.load(old, device="cpu")
    assert agent.model.policy.features_extractor.inputs == ALL_INPUTS
    assert held_out_indices(agent.run_info) == [4, 5]
    # resuming it with today's defaults continues it as it was made (first split, Q per vector step)
    from agents.alignsam.training import train as train_again

    train_again(TrainConfig(**{**TINY, "timesteps": 45}, out=str(old)), resume=True)
    resumed = json.loads(path.read_text())
    assert resumed["num_timesteps"] >= 45 and resumed["config"]["train_split"] == "first"
    assert resumed["config"]["srm_q_per_action"] is False and resumed["split"]["train"] == [0, 4]


def test_experiment_trains_on_one_dataset_and_evaluates_on_another(tmp_path: Path) -> None:
    from agents.alignsam.experiments import main

    out = tmp_path / "exp"
    assert main(["--train-dataset", "synthetic-shapes", "--eval-dataset", "synthetic-multi", "--dataset-n", "6",
                 "--seeds", "0", "--n-train", "6", "--timesteps", "30", "--n-steps", "15", "--n-epochs", "1",
                 "--srm-warmup-steps", "2", "--max-eval", "1", "--ablate-inputs", "--out", str(out)]) == 0
    results = json.loads((out / "results.json").read_text())
    assert results["train_dataset"] == "synthetic-shapes" and results["held_out"] == [0]
    summary = results["summary"]
    # the runs read the eq. 4 state alone (the default), so the ablation's agent reads every key
    assert {"alignsam", "w/o RL", "all inputs"} <= set(summary) and "state only (eq. 4)" not in summary
    assert tuple(json.loads((out / "seed0-all-inputs" / "config.json").read_text())["config"]["inputs"]) == ALL_INPUTS
    for condition in ("alignsam", "w/o RL"):
        assert {"miou_init", "label_accuracy", "hit_rate", "miou_final"} <= set(summary[condition])
    assert np.isfinite(summary["all inputs"]["miou_final"][0])
    assert "all inputs" in (out / "results.md").read_text()


def test_experiment_preset_paper_keeps_the_papers_training_budget(tmp_path: Path) -> None:
    from agents.alignsam.experiments import DEFAULT_TIMESTEPS, _parse, _train_config

    def timesteps(*argv: str) -> int:
        args = _parse([*argv, "--out", str(tmp_path)])
        return int(_train_config(args, "synthetic-multi", {}, 0, tmp_path / "seed0").timesteps)

    assert timesteps("--preset", "paper") == 50 * 15  # E = 50 episodes of T = 15 clicks
    assert timesteps("--preset", "paper", "--timesteps", "300") == 300
    assert timesteps() == DEFAULT_TIMESTEPS
