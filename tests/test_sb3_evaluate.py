"""Every registered policy through SB3's ``evaluate_policy`` on a VecEnv and through ``sam_gym.evaluation``.

SB3's convention (``BasePolicy.predict``): a batch of observations (leading ``n_envs`` axis) gives
``(n_envs, ...)`` actions, one observation gives one action. Each policy is bound to a
``DummyVecEnv`` of ``Monitor``-wrapped envs (two sub-envs, or one for a policy that is not
``vectorizable``); sub-env ``i`` is reset with seed ``SEED + i`` on sample ``i``, the same episodes
that :func:`sam_gym.evaluation.run_episodes` then runs, and both give the same returns. Trained
policies use tiny files written here; SAM-only ones the tiny random SAM of :mod:`sam_gym.testing`.
Numbers from these models are meaningless.
"""

from __future__ import annotations

import functools
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import pytest

pytest.importorskip("torch")
pytest.importorskip("sb3_contrib")

from stable_baselines3.common.evaluation import evaluate_policy  # noqa: E402
from stable_baselines3.common.monitor import Monitor  # noqa: E402
from stable_baselines3.common.vec_env import DummyVecEnv, VecMonitor  # noqa: E402

from sam_gym.data.scenes import MultiInstanceScenes  # noqa: E402
from sam_gym.envs import SamPromptEnv  # noqa: E402
from sam_gym.evaluation import run_episodes  # noqa: E402
from sam_gym.policies import available_policies, make_policy  # noqa: E402
from sam_gym.policy import PromptPolicy  # noqa: E402

SEED = 11
CLICKS = 3
DATASET = MultiInstanceScenes(n=1, size=(48, 64), seed=5)  # 2+ instances -> at least 2 samples


@functools.cache
def _aop_dir(root: Path) -> str:
    from agents.aop.predictor import PredictorConfig, PromptPredictor, save_predictor
    from sam_gym.backends import make_backend

    config = PredictorConfig.for_backend(make_backend("classical"), image_side=32, map_size=16, width=8)
    save_predictor(PromptPredictor(config), root / "aop")
    return f"aop:{root / 'aop'}"


@functools.cache
def _sapnet_dir(root: Path) -> str:
    from agents.sapnet import fit, save_sapnet
    from sam_gym.backends import make_backend

    model, _ = fit(make_backend("classical"), MultiInstanceScenes(n=1, size=(48, 64), seed=1).scenes(), epochs=1,
                   n_negative=1)
    save_sapnet(model, root / "sapnet")
    return f"sapnet:{root / 'sapnet'}"


@functools.cache
def _alignsam_dir(root: Path) -> str:
    from sam_gym.cli import main

    out = root / "alignsam"
    assert main(["train", "--timesteps", "16", "--seed", "0", "--out", str(out), "--max-clicks", str(CLICKS),
                 "--n-steps", "8", "--batch-size", "8", "--n-epochs", "1", "--n-envs", "2", "--n-train", "4",
                 "--srm-warmup-steps", "4", "--no-progress", "--device", "cpu"]) == 0
    return f"alignsam:{out}"


#: Registered name -> (spec builder from a scratch folder, extra env arguments). A new registration fails
#: ``test_every_registered_policy_is_covered`` until it is added here.
SPECS: dict[str, tuple[Callable[[Path], str], dict[str, Any]]] = {
    "random": (lambda root: "random", {}),
    "grid": (lambda root: "grid:2", {}),
    "clicker": (lambda root: "clicker", {}),
    "clicker-tta": (lambda root: "clicker-tta:R+E+CM", {"backend": "tiny-sam", "target_iou": 0.5}),
    "aop": (_aop_dir, {}),
    "sapnet": (_sapnet_dir, {}),
    "alignsam": (_alignsam_dir, {}),
}


@functools.cache
def _tiny_sam() -> Any:
    pytest.importorskip("segment_anything")
    from sam_gym.testing import tiny_sam_backend

    return tiny_sam_backend(img_size=128, encoder_depth=1, decoder_depth=1)


@pytest.fixture(scope="module")
def scratch(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("policies")


def _policy_and_env_kwargs(name: str, scratch: Path) -> tuple[Any, dict[str, Any]]:
    """The policy ``name`` (trained files in ``scratch``, built once) and the arguments of its env."""
    build, extra = SPECS[name]
    policy = make_policy(build(scratch))
    kwargs: dict[str, Any] = {"dataset": DATASET, "max_clicks": CLICKS, **extra, **policy.env_kwargs}
    if kwargs.get("backend") == "tiny-sam":
        kwargs["backend"] = _tiny_sam()
    return policy, kwargs


def _vec_env(n_envs: int, **kwargs: Any) -> DummyVecEnv:
    """``n_envs`` Monitor-wrapped envs; sub-env ``i`` starts on sample ``i`` with seed ``SEED + i``."""
    venv = DummyVecEnv([lambda: Monitor(SamPromptEnv(**kwargs)) for _ in range(n_envs)])
    venv.seed(SEED)
    venv.set_options([{"index": i} for i in range(n_envs)])
    return venv


def test_every_registered_policy_is_covered() -> None:
    assert set(SPECS) == set(available_policies())


@pytest.mark.parametrize("name", available_policies())
def test_evaluate_policy_and_run_episodes_give_the_same_returns(name: str, scratch: Path) -> None:
    policy, kwargs = _policy_and_env_kwargs(name, scratch)
    assert isinstance(policy, PromptPolicy)
    n_envs = 2 if policy.vectorizable else 1
    venv = _vec_env(n_envs, **kwargs)
    policy.bind(venv)
    assert [type(env) for env in policy.envs] == [SamPromptEnv] * n_envs
    returns, lengths = evaluate_policy(policy, venv, n_eval_episodes=n_envs, deterministic=True,
                                       return_episode_rewards=True, warn=False)
    assert len(returns) == n_envs
    if hasattr(policy, "close"):
        policy.close()  # clicker-tta: the original decoder again, as for a fresh run
    env = SamPromptEnv(**kwargs)
    records = [run_episodes(policy, env, [i], seeds=[SEED + i])[0] for i in range(n_envs)]
    assert sorted(returns) == pytest.approx(sorted(r.total_reward for r in records))
    assert sorted(lengths) == sorted(len(r.rewards) for r in records)
    if hasattr(policy, "close"):
        policy.close()


def test_predict_shapes_follow_sb3() -> None:
    """One observation -> one action; a batch of n -> (n, ...) actions, for patch and point policies."""
    for spec, shape in (("random", ()), ("clicker", (3,))):
        policy = make_policy(spec)
        venv = _vec_env(2, dataset=DATASET, max_clicks=CLICKS, **policy.env_kwargs)
        policy.bind(venv)
        batch = venv.reset()
        actions, state = policy.predict(batch, episode_start=np.ones(2, dtype=bool), deterministic=True)
        assert actions.shape == (2, *shape) and state is None
        assert all(venv.envs[i].action_space.contains(actions[i]) for i in range(2))
        single_env = SamPromptEnv(dataset=DATASET, max_clicks=CLICKS, **policy.env_kwargs)
        policy.bind(single_env)
        obs, _ = single_env.reset(seed=0, options={"index": 0})
        action, _ = policy.predict(obs, episode_start=np.array([True]))
        assert action.shape == shape and single_env.action_space.contains(action)
        one, _ = policy.predict({key: value[None] for key, value in obs.items()})  # a batch of one env
        assert one.shape == (1, *shape)


def test_vector_binding_gives_each_sub_env_its_own_episode_state(scratch: Path) -> None:
    policy, kwargs = _policy_and_env_kwargs("sapnet", scratch)
    venv = _vec_env(2, **kwargs)
    policy.bind(venv)
    batch = venv.reset()
    policy.predict(batch, episode_start=np.ones(2, dtype=bool))
    selected = [worker.selected_mask for worker in policy._copies]
    targets = [env.episode_view().sample.target for env in policy.envs]
    assert not np.array_equal(targets[0], targets[1])  # two samples, two selections
    assert all(mask is not None for mask in selected) and selected[0] is not selected[1]
    assert policy.selected_mask is None  # the bound policy itself holds no episode


def test_sb3_vec_env_adapter_with_vec_monitor() -> None:
    from sam_gym.envs.sb3 import make_sb3_vec_env

    policy = make_policy("grid")
    venv = VecMonitor(make_sb3_vec_env(2, dataset=DATASET, max_clicks=CLICKS))
    policy.bind(venv)
    mean, std = evaluate_policy(policy, venv, n_eval_episodes=2)
    assert np.isfinite(mean) and np.isfinite(std)


def test_alignsam_works_unbound_in_evaluate_policy_on_two_envs(scratch: Path) -> None:
    """The trained agent forwards to its SB3 model, which batches by itself (no masks when unbound)."""
    policy, kwargs = _policy_and_env_kwargs("alignsam", scratch)
    returns, lengths = evaluate_policy(policy, _vec_env(2, **kwargs), n_eval_episodes=2, return_episode_rewards=True)
    assert len(returns) == 2 and lengths == [CLICKS, CLICKS]


def test_refusals_are_one_clear_error(scratch: Path) -> None:
    policy = make_policy("random")
    env = SamPromptEnv(dataset=DATASET, max_clicks=CLICKS)
    obs, _ = env.reset(seed=0, options={"index": 0})
    with pytest.raises(RuntimeError, match=r"not bound to an env; call policy.bind"):
        policy.predict(obs)
    policy.bind(env)
    batch = {key: np.stack([value, value]) for key, value in obs.items()}
    with pytest.raises(ValueError, match="Expected a batch of 1 observations"):
        policy.predict(batch)
    with pytest.raises(ValueError, match=r"Expected observation\['clicked'\] of shape \(100,\)"):
        policy.predict({**obs, "clicked": obs["clicked"][:10]})
    with pytest.raises(ValueError, match="every observation key batched with the same n_envs, or none"):
        policy.predict({**obs, "clicked": obs["clicked"][None]})
    with pytest.raises(ValueError, match="missing \\['mask'\\]"):
        policy.predict({key: value for key, value in obs.items() if key != "mask"})
    with pytest.raises(TypeError, match="Expected a dict observation"):
        policy.predict(obs["state"])
    venv = _vec_env(2, dataset=DATASET, max_clicks=CLICKS)
    policy.bind(venv)
    with pytest.raises(ValueError, match="Expected a batch of 2 observations"):
        policy.predict(obs)
    with pytest.raises(ValueError, match="episode_start with 2 entries"):
        policy.predict(venv.reset(), episode_start=np.ones(3, dtype=bool))
    with pytest.raises(RuntimeError, match="bound to a vector env of 2 sub-envs"):
        _ = policy.env

    class OutOfProcess:  # what SubprocVecEnv / AsyncVectorEnv look like from here: no sub-env objects
        num_envs = 2

    with pytest.raises(ValueError, match="sub-envs run in other processes"):
        policy.bind(OutOfProcess())
    tta, kwargs = _policy_and_env_kwargs("clicker-tta", scratch)
    with pytest.raises(ValueError, match="one episode at a time, got a vector env of 2 sub-envs"):
        tta.bind(_vec_env(2, **kwargs))
    tta.close()
