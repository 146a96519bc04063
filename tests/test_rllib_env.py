"""The env side of RLlib training: the creator, its observation and its one backend per process (no Ray needed)."""

import sys

import numpy as np
import pytest

from sam_gym.rllib_env import make_env, register
from sam_gym.wrappers import RLlibActionMask

SMALL = {"max_clicks": 3, "dataset_kwargs": {"n": 2}}


def test_observation_is_rllibs_action_masking_convention():
    env = make_env(SMALL)
    space = env.observation_space
    assert sorted(space.spaces) == ["action_mask", "observations"]
    assert space["action_mask"].dtype == np.float32 and space["action_mask"].shape == (env.action_space.n,)
    obs, _ = env.reset(seed=0)
    assert space.contains(obs) and (obs["action_mask"] == 1.0).all()
    obs, *_ = env.step(42)
    assert space.contains(obs)
    assert obs["action_mask"][42] == 0.0 and obs["action_mask"].sum() == env.action_space.n - 1
    assert np.array_equal(obs["action_mask"], np.asarray(env.get_wrapper_attr("action_masks")(), np.float32))


def test_observations_are_the_envs_flattened():
    import gymnasium as gym
    from gymnasium import spaces

    plain = gym.make("SamPrompt-v0", **SMALL)
    wrapped = make_env(SMALL)
    raw, _ = plain.reset(seed=3)
    obs, _ = wrapped.reset(seed=3)
    assert np.array_equal(obs["observations"], spaces.flatten(plain.observation_space, raw).astype(np.float32))


def test_one_backend_and_cache_per_process_and_configuration():
    first, second = make_env(SMALL), make_env({**SMALL, "max_clicks": 5})
    assert first.unwrapped.backend is second.unwrapped.backend
    assert first.unwrapped.cache is second.unwrapped.cache
    other = make_env({**SMALL, "backend_kwargs": {"bins": 8}})
    assert other.unwrapped.backend is not first.unwrapped.backend


def test_multi_discrete_label_mode_is_masked_per_component():
    env = make_env({"env_id": "SamPromptLabel-v0", **SMALL})
    obs, _ = env.reset(seed=0)
    assert obs["action_mask"].shape == (102,)  # sb3-contrib's layout: 100 patches, then the 2 labels


def test_continuous_action_mode_is_refused():
    with pytest.raises(ValueError, match="Discrete or MultiDiscrete"):
        make_env({"env_id": "SamPromptPoint-v0", **SMALL})


def test_wrapper_needs_action_masks():
    import gymnasium as gym

    with pytest.raises(TypeError, match="Dict observation space"):
        RLlibActionMask(gym.make("CartPole-v1"))


def test_backend_instance_is_refused():
    from sam_gym.backends import make_backend

    with pytest.raises(TypeError, match="backend name"):
        make_env({"backend": make_backend("classical")})


def test_register_without_ray_names_the_extra(monkeypatch):
    monkeypatch.setitem(sys.modules, "ray.tune", None)
    with pytest.raises(ImportError, match=r'pip install "sam-gym\[ray\]"'):
        register()


def test_the_ray_modules_import_no_ray():
    import subprocess
    from pathlib import Path

    import sam_gym

    code = ("import sys\nimport sam_gym, sam_gym.ray_cache, sam_gym.rllib_env, sam_gym.commands.cache\n"
            "env = sam_gym.rllib_env.make_env({'max_clicks': 2})\nenv.reset(seed=0)\nenv.step(0)\n"
            "print(sorted({m.split('.')[0] for m in sys.modules} & {'ray', 'pyarrow', 'torch'}))\n")
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120,
                            cwd=Path(sam_gym.__file__).resolve().parents[1])
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip().splitlines()[-1] == "[]"
