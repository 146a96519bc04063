"""AlignSAM agent: features extractor, SRM, CLIP-Surgery, training, loading and evaluation.

Everything runs on the weight-free classical backend (NOT SAM) and the built-in synthetic shapes,
with tiny PPO settings, so that the whole file takes well under a minute on 2 CPU cores.
"""

from __future__ import annotations

import json
import warnings
from pathlib import Path

import numpy as np
import pytest

torch = pytest.importorskip("torch")
pytest.importorskip("sb3_contrib")

from gymnasium import spaces  # noqa: E402

from agents.alignsam.config import TrainConfig  # noqa: E402
from agents.alignsam.features import AlignSAMExtractor  # noqa: E402
from agents.alignsam.srm import Recalibrator, SRMConfig, srm_loss  # noqa: E402
from sam_gym.data import make_dataset  # noqa: E402
from sam_gym.envs import SamPromptEnv  # noqa: E402

TINY = ["--n-steps", "50", "--batch-size", "50", "--n-epochs", "2", "--n-envs", "2", "--n-train", "8",
        "--srm-warmup-steps", "10", "--no-progress", "--device", "cpu"]


@pytest.fixture(scope="module")
def run_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A tiny run trained through the ``sam-gym train`` command line (200 steps)."""
    from sam_gym.cli import main

    out = tmp_path_factory.mktemp("alignsam") / "run"
    assert main(["train", "--timesteps", "200", "--seed", "0", "--out", str(out), *TINY]) == 0
    return out


def _views(n: int = 3) -> list:
    env = SamPromptEnv(dataset=make_dataset("synthetic-shapes", n=n))
    views = []
    for index in range(n):
        env.reset(seed=index, options={"index": index})
        views.append(env.episode_view())
    return views


# ----------------------------------------------------------------------------- config


def test_config_validates_and_defaults_to_paper() -> None:
    config = TrainConfig()
    assert (config.learning_rate, config.gamma, config.clip_range, config.n_epochs, config.max_clicks) == (
        1e-4, 0.99, 0.2, 20, 15)
    assert config.n_envs * config.n_steps == 50 * 15  # E = 50 episodes of T = 15 per update
    assert config.q == 1 and TrainConfig(srm="explicit", text="a cat").q == 5 and TrainConfig(srm="none").q == 0
    with pytest.raises(ValueError, match="Expected srm"):
        TrainConfig(srm="magic")
    with pytest.raises(ValueError, match="text prompt"):
        TrainConfig(srm="explicit")
    with pytest.raises(ValueError, match="n_train"):
        TrainConfig(n_train=0)
    assert TrainConfig.from_dict(config.to_dict()) == config


# ----------------------------------------------------------------------------- features


def test_extractor_handles_classical_observations() -> None:
    env = SamPromptEnv(dataset=make_dataset("synthetic-shapes", n=2))
    extractor = AlignSAMExtractor(env.observation_space, state_shape=env.state_shape)
    obs, _ = env.reset(seed=0)
    batch = {k: torch.as_tensor(np.stack([v, v])) for k, v in obs.items()}
    batch["mask"] = batch["mask"].float() / 255.0
    features = extractor(batch)
    assert features.shape == (2, extractor.features_dim)
    assert torch.isfinite(features).all()


def test_extractor_handles_sam_shaped_state_and_rejects_wrong_shape() -> None:
    space = spaces.Dict({
        "state": spaces.Box(-np.inf, np.inf, shape=(256 * 10 * 10,), dtype=np.float32),
        "mask": spaces.Box(0, 255, shape=(1, 64, 64), dtype=np.uint8),
        "clicks": spaces.Box(-1.0, 1.0, shape=(17 * 3,), dtype=np.float32),
        "clicked": spaces.Box(0.0, 1.0, shape=(100,), dtype=np.float32),
    })
    extractor = AlignSAMExtractor(space, state_shape=(256, 10, 10))
    batch = {k: torch.as_tensor(np.stack([space[k].sample() for _ in range(3)])).float() for k in space.spaces}
    batch["mask"] = batch["mask"] / 255.0
    assert extractor(batch).shape == (3, extractor.features_dim)
    with pytest.raises(ValueError, match="state_shape"):
        AlignSAMExtractor(space, state_shape=(10, 10, 10))


# ----------------------------------------------------------------------------- SRM


def test_srm_loss_decreases_on_tiny_set() -> None:
    threads = torch.get_num_threads()
    torch.set_num_threads(1)  # small convolutions: one thread is faster on a busy 2-core machine
    srm = Recalibrator(SRMConfig(in_channels=10, size=16), seed=0)
    views = _views(3)
    for view in views:
        srm.add(view)
    batch = list(srm._buffer)
    with torch.no_grad():
        before = float(srm_loss(srm.module(torch.from_numpy(np.stack([b[0] for b in batch]))),
                                torch.from_numpy(np.stack([b[2] for b in batch]))))
    for _ in range(30):
        srm.step(batch)
    with torch.no_grad():
        after = float(srm_loss(srm.module(torch.from_numpy(np.stack([b[0] for b in batch]))),
                               torch.from_numpy(np.stack([b[2] for b in batch]))))
    torch.set_num_threads(threads)
    assert after < 0.7 * before


def test_srm_callables_give_labels_and_prompts_inside_image() -> None:
    srm = Recalibrator(SRMConfig(in_channels=10, size=16), seed=0)
    view = _views(1)[0]
    height, width = view.sample.target.shape
    prompts = srm.initial_prompts(view)
    assert [p[2] for p in prompts] == [1, 0]
    assert all(0 <= x <= width and 0 <= y <= height for x, y, _ in prompts)
    assert srm.labeller(view, (width / 2, height / 2)) in (0, 1)
    prob = srm.prob_map(view)
    assert prob.shape == (16, 16) and ((prob >= 0) & (prob <= 1)).all()


def test_srm_context_channels_follow_the_prompts() -> None:
    srm = Recalibrator(SRMConfig(in_channels=10, size=16, context=True), seed=0)
    env = SamPromptEnv(dataset=make_dataset("synthetic-shapes", n=2), init_prompts="gt_pair", label_mode="oracle")
    env.reset(seed=0, options={"index": 0})
    view = env.episode_view()
    implicit, _ = srm.inputs(view)
    assert implicit.shape == (10 + 1 + 4, 16, 16) and np.isfinite(implicit).all()
    height, width = view.sample.target.shape
    (x, y), label = view.points[0], view.labels[0]
    assert label == 1
    cell = (int(y * 16 / height), int(x * 16 / width))
    # Distance to the positive prompts' mean feature: zero at the single positive prompt's cell.
    assert implicit[13][cell] == pytest.approx(0.0, abs=1e-5)
    free, _ = srm.inputs(view, with_mask=False)
    np.testing.assert_allclose(free[11], free[12])  # mask-free: no outside, no prompts -> inside mean


def test_srm_warmup_collects_training_states_and_learns() -> None:
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    srm = Recalibrator(SRMConfig(in_channels=10, size=16, context=True), seed=0)
    env = SamPromptEnv(dataset=make_dataset("synthetic-shapes", n=4), init_prompts="gt_pair", label_mode="oracle")
    samples = srm.collect(env, [0, 1, 2, 3], episodes=1, clicks=3, seed=0)
    assert len(samples) == 4 * (1 + 1 + 3)  # mask-free + initial state + 3 clicks per image
    before = srm.map_metrics(samples)
    losses = srm.pretrain(samples, steps=60, batch_size=8)
    after = srm.map_metrics(samples)
    torch.set_num_threads(threads)
    assert len(losses) == 60 and np.mean(losses[-10:]) < np.mean(losses[:10])
    assert after["balanced_accuracy"] > before["balanced_accuracy"]
    assert set(after) == {"accuracy", "fg_accuracy", "bg_accuracy", "balanced_accuracy"}
    with pytest.raises(ValueError, match="warm-up sample"):
        srm.pretrain([], steps=1)


def test_srm_save_load_round_trip(tmp_path: Path) -> None:
    srm = Recalibrator(SRMConfig(in_channels=10, size=16), seed=3)
    view = _views(1)[0]
    srm.update([view], q=2)
    srm.save(tmp_path)
    loaded = Recalibrator.load(tmp_path)
    np.testing.assert_array_equal(srm.prob_map(view), loaded.prob_map(view))
    (tmp_path / "srm.json").write_text("{not json")
    with pytest.raises(ValueError, match="srm.json"):
        Recalibrator.load(tmp_path)


def test_explicit_srm_with_tiny_clip_updates() -> None:
    from agents.alignsam.clip_surgery import load_clip

    clip = load_clip("tiny", "random")
    srm = Recalibrator(SRMConfig(mode="explicit", in_channels=10, size=16, text="a red shape"), seed=0, clip=clip)
    view = _views(1)[0]
    implicit, explicit = srm.inputs(view)
    assert implicit.shape == explicit.shape == (11, 16, 16)
    assert np.isfinite(srm.update([view], q=2))
    assert srm.prob_map(view).shape == (16, 16)


# ----------------------------------------------------------------------------- CLIP-Surgery


def test_clip_surgery_map_shape_and_text_response() -> None:
    from agents.alignsam.clip_surgery import load_clip

    torch.manual_seed(0)
    clip = load_clip("tiny", "random")
    image = (np.random.default_rng(0).random((48, 80, 3)) * 255).astype(np.uint8)
    cat = clip.similarity_map(image, "a photo of a cat")
    car = clip.similarity_map(image, "a red car on a road")
    assert cat.shape == (48, 80) and cat.dtype == np.float32
    assert cat.min() >= 0.0 and cat.max() <= 1.0
    assert np.abs(cat - car).mean() > 1e-3
    assert clip.similarity_map(image, "a cat", size=(8, 8)).shape == (8, 8)
    with pytest.raises(ValueError, match="text prompt"):
        clip.similarity_map(image, "  ")


def test_clip_missing_checkpoint_says_what_to_do() -> None:
    from agents.alignsam.clip_surgery import load_clip

    with pytest.raises(RuntimeError, match="--srm implicit"):
        load_clip("ViT-B-16", "/nonexistent/clip.pt")


# ----------------------------------------------------------------------------- training and policy


def test_training_writes_a_loadable_run(run_dir: Path) -> None:
    info = json.loads((run_dir / "config.json").read_text())
    assert sorted(p.name for p in run_dir.iterdir()) == [info["checkpoint"], "config.json", "tb"]
    for name in ("model.pt", "srm.pt", "srm.json"):
        assert (run_dir / info["checkpoint"] / name).is_file(), name
    assert info["complete"] and info["num_timesteps"] >= 200
    assert info["backend"]["name"] == "classical" and "not SAM" in info["backend"]["description"]
    from sam_gym.data.hashing import sample_hash

    dataset = make_dataset(info["dataset"]["name"])  # the command's default dataset
    # The default split is the paper's: a random subset, seeded by split_seed (0), recorded by index and content.
    from agents.alignsam.run_format import split_indices

    train, held_out = split_indices(len(dataset), 8, "random", 0)
    assert train != list(range(8))
    assert info["split"] == {"mode": "random", "seed": 0, "train": train, "held_out": held_out,
                             "train_sha256": [sample_hash(dataset[i]) for i in train]}
    assert info["srm_warmup"]["steps"] == 10 and info["srm_warmup"]["samples"] > 8
    assert any((run_dir / "tb").rglob("events.*"))


def test_policy_runs_through_run_episodes(run_dir: Path) -> None:
    from sam_gym.evaluation import run_episodes
    from sam_gym.policies import make_policy

    policy = make_policy(f"alignsam:{run_dir}")
    kwargs = policy.env_kwargs
    assert kwargs["action_mode"] == "patch" and callable(kwargs["label_mode"]) and callable(kwargs["init_prompts"])
    assert policy.oracle is False
    env = SamPromptEnv(dataset="synthetic-shapes", **kwargs)
    records = run_episodes(policy, env, [8, 9], seeds=[0])
    assert len(records) == 2
    for record in records:
        assert len(record.ious) == 15 and len(record.labels) == 15
        cells = {env.episode_view().grid.point_to_cell(x, y) for x, y in record.points}
        assert len(cells) == 15  # masked: never a repeated patch
    with pytest.raises(ValueError, match="label_mode"):
        policy.bind(SamPromptEnv(dataset="synthetic-shapes"))
    longer = SamPromptEnv(dataset="synthetic-shapes", max_clicks=20, **kwargs)  # sam-gym eval's default budget
    with warnings.catch_warnings(record=True) as caught:  # clicks has max_prompts rows at any budget
        warnings.simplefilter("always")
        records = run_episodes(policy, longer, [8], seeds=[0])
    assert not [w for w in caught if "max_clicks" in str(w.message)]
    assert len(records[0].ious) == 20


def test_srm_random_policy_uses_the_agents_srm_and_randoms_clicks(run_dir: Path) -> None:
    from agents.alignsam.policy import AlignSAMPolicy, SRMRandomPolicy
    from agents.simple import RandomPolicy
    from sam_gym.evaluation import run_episodes

    agent = AlignSAMPolicy.load(run_dir, device="cpu")
    policy = SRMRandomPolicy(agent)
    assert policy.env_kwargs == agent.env_kwargs and policy.oracle is False
    env = SamPromptEnv(dataset="synthetic-shapes", max_clicks=4, **policy.env_kwargs)
    ours = run_episodes(policy, env, [8], seeds=[3])[0]
    plain = run_episodes(RandomPolicy(), SamPromptEnv(dataset="synthetic-shapes", max_clicks=4, **agent.env_kwargs),
                         [8], seeds=[3])[0]
    assert ours.points == plain.points and ours.labels == plain.labels  # same draws, same SRM labels
    gt_start = agent.with_env_kwargs(init_prompts="gt_pair")
    assert gt_start.env_kwargs["init_prompts"] == "gt_pair" and callable(agent.env_kwargs["init_prompts"])
    assert gt_start.env_kwargs["label_mode"] is agent.env_kwargs["label_mode"]


def test_save_load_round_trip_gives_identical_actions(run_dir: Path, tmp_path: Path) -> None:
    import shutil

    from agents.alignsam.policy import AlignSAMPolicy
    from agents.alignsam.training import train

    first = AlignSAMPolicy.load(run_dir, device="cpu")
    copy = tmp_path / "copy"
    shutil.copytree(run_dir, copy)
    config = TrainConfig.from_dict({**json.loads((copy / "config.json").read_text())["config"], "out": str(copy)})
    train(config, resume=True)  # nothing left to train: loads and re-saves the model and the SRM
    second = AlignSAMPolicy.load(copy, device="cpu")
    env = SamPromptEnv(dataset="synthetic-shapes", init_prompts="gt_pair")
    for seed in range(4):
        obs, _ = env.reset(seed=seed, options={"index": 8 + seed})
        masks = env.action_masks()
        a1, _ = first.predict(obs, deterministic=True, action_masks=masks)
        a2, _ = second.predict(obs, deterministic=True, action_masks=masks)
        assert int(a1) == int(a2)
        view = env.episode_view()
        np.testing.assert_array_equal(first.srm.prob_map(view), second.srm.prob_map(view))


def test_resume_continues_and_rejects_changed_settings(run_dir: Path, tmp_path: Path) -> None:
    import shutil

    from sam_gym.cli import main

    copy = tmp_path / "run"
    shutil.copytree(run_dir, copy)
    assert main(["train", "--timesteps", "300", "--seed", "0", "--out", str(copy), "--resume", *TINY]) == 0
    assert json.loads((copy / "config.json").read_text())["num_timesteps"] >= 300
    assert main(["train", "--timesteps", "400", "--seed", "1", "--out", str(copy), "--resume", *TINY]) == 2
    assert main(["train", "--timesteps", "400", "--seed", "0", "--out", str(copy), *TINY]) == 2  # exists, no --resume


def test_bad_run_dir_gives_clear_errors(tmp_path: Path, run_dir: Path) -> None:
    from agents.alignsam.policy import AlignSAMPolicy
    from sam_gym.policies import make_policy

    with pytest.raises(ValueError, match="no such folder"):
        make_policy(f"alignsam:{tmp_path / 'missing'}")
    with pytest.raises(ValueError, match="config.json"):
        AlignSAMPolicy.load(tmp_path)
    broken = tmp_path / "broken"
    broken.mkdir()
    info = json.loads((run_dir / "config.json").read_text())
    (broken / "config.json").write_text(json.dumps(info))
    with pytest.raises(ValueError, match="model.pt.*no such file"):
        AlignSAMPolicy.load(broken)
    (broken / info["checkpoint"]).mkdir()
    (broken / info["checkpoint"] / "model.pt").write_bytes(b"not a torch file")
    with pytest.raises(ValueError, match="weights-only.*Unsupported operand"):
        AlignSAMPolicy.load(broken)


def test_experiments_tiny_end_to_end(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    from agents.alignsam.experiments import CONDITIONS, SRM_MAP, main

    out = tmp_path / "exp"
    argv = ["--dataset-n", "12", "--n-train", "8", "--seeds", "0", "--n-steps", "50", "--n-epochs", "1",
            "--max-eval", "2", "--srm-warmup-steps", "10", "--out", str(out)]
    assert main([*argv, "--timesteps", "100"]) == 0
    results = json.loads((out / "results.json").read_text())
    # a finished run with the same settings is reused (not retrained); other settings are refused
    model = out / "seed0" / "config.json"
    stamp = model.stat().st_mtime_ns
    assert main([*argv, "--timesteps", "100"]) == 0
    assert model.stat().st_mtime_ns == stamp
    with pytest.raises(ValueError, match="same settings.*timesteps: saved 100, given 120"):
        main([*argv, "--timesteps", "120"])
    # the command line says it in one line, exit status 2
    from agents.alignsam.experiments import cli

    assert cli([*argv, "--timesteps", "120"]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "error: " in err and "timesteps: saved 100, given 120" in err
    # without --ablate-inputs there is no second agent; the held-out samples are the run's (random) split's
    from agents.alignsam.run_format import split_indices

    conditions = set(CONDITIONS) - {"state only (eq. 4)", "all inputs"}
    assert set(results["summary"]) == conditions | {SRM_MAP}
    assert results["held_out"] == split_indices(12, 8, "random", 0)[1][:2]
    for cond in conditions:
        metrics = results["summary"][cond]
        assert 0.0 <= metrics["hit_rate"][0] <= 1.0 and 0.0 <= metrics["miou_final"][0] <= 1.0
    assert 0.0 <= results["summary"][SRM_MAP]["balanced_accuracy"][0] <= 1.0
    text = (out / "results.md").read_text()
    assert "not SAM" in text and "SRM map on the held-out images" in text


def test_experiments_command_reports_an_interrupted_training_in_one_line(
        monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]) -> None:
    import signal

    from agents.alignsam import experiments
    from agents.alignsam.training import TrainingInterrupted

    def interrupted(argv: object) -> int:
        raise TrainingInterrupted(signal.SIGTERM, "interrupted by SIGTERM; checkpoint of step 510 saved in DIR")

    monkeypatch.setattr(experiments, "main", interrupted)
    assert experiments.cli([]) == 128 + signal.SIGTERM
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "step 510 saved" in err and "run the same command to continue" in err
