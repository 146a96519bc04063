"""The batched vector env equals N single envs; autoreset; the SB3 adapter trains PPO / MaskablePPO."""

from __future__ import annotations

from functools import partial

import gymnasium as gym
import numpy as np
import pytest

import sam_gym  # noqa: F401  (registers the envs)
from sam_gym.backends.base import PromptableSegmenter
from sam_gym.data import SyntheticShapes
from sam_gym.envs import SamPromptEnv
from sam_gym.envs.vector_env import SamPromptVectorEnv

SMALL = dict(dataset="synthetic-shapes", dataset_kwargs=dict(n=6))


def tiny_sam_backend() -> PromptableSegmenter:
    """A real ``Sam`` (segment-anything classes) with a 256-pixel input and random weights."""
    pytest.importorskip("segment_anything")
    from sam_gym.testing import tiny_sam_backend as build

    return build(encoder_depth=1)


def _assert_same_info(got: dict, want: dict, atol: float) -> None:
    assert sorted(got) == sorted(want)
    for key, value in want.items():
        if key == "iou":
            np.testing.assert_allclose(got[key], value, atol=atol)
        elif key == "final_obs":  # object array of single observations (None where not final)
            for got_obs, want_obs in zip(got[key], value, strict=True):
                assert (got_obs is None) == (want_obs is None)
                for k in want_obs or {}:
                    np.testing.assert_allclose(got_obs[k], want_obs[k], atol=atol, rtol=0.0)
        elif isinstance(value, dict):
            _assert_same_info(got[key], value, atol)
        else:
            assert np.array_equal(got[key], value), key


def _compare_rollouts(vector: gym.vector.VectorEnv, single: gym.vector.VectorEnv, steps: int, atol: float,
                      seed: int = 3) -> None:
    obs_v, info_v = vector.reset(seed=seed)
    obs_s, info_s = single.reset(seed=seed)
    rng = np.random.default_rng(seed)
    n_done = 0
    for t in range(steps + 1):
        for key in obs_s:
            np.testing.assert_allclose(obs_v[key], obs_s[key], atol=atol if key == "state" else 0.0,
                                       rtol=0.0, err_msg=f"step {t}, {key}")
        _assert_same_info(info_v, info_s, atol)
        if t == steps:
            break
        # a small action range so that repeated clicks (no decode, -1) happen too
        actions = rng.integers(0, 6, size=vector.num_envs)
        obs_v, rew_v, term_v, trunc_v, info_v = vector.step(actions)
        obs_s, rew_s, term_s, trunc_s, info_s = single.step(actions)
        np.testing.assert_allclose(rew_v, rew_s, atol=atol)
        assert np.array_equal(term_v, term_s) and np.array_equal(trunc_v, trunc_s)
        n_done += int((term_v | trunc_v).sum())
    assert n_done >= vector.num_envs  # the rollout crossed episode ends, so autoreset was compared too


@pytest.mark.parametrize("mode", ["next_step", "same_step"])
@pytest.mark.parametrize("kwargs", [dict(max_clicks=3), dict(max_clicks=3, init_prompts="none", reward="iou_gain")])
def test_vector_env_equals_single_envs_classical(mode, kwargs):
    vector = SamPromptVectorEnv(3, autoreset_mode=mode, **SMALL, **kwargs)
    single = gym.vector.SyncVectorEnv([partial(SamPromptEnv, **SMALL, **kwargs) for _ in range(3)],
                                      autoreset_mode=vector.metadata["autoreset_mode"])
    _compare_rollouts(vector, single, steps=8, atol=0.0)
    assert all(env.backend is vector.backend and env.cache is vector.envs[0].cache for env in vector.envs)


def test_vector_env_equals_single_envs_tiny_sam():
    backend = tiny_sam_backend()
    dataset = SyntheticShapes(n=4)
    kwargs = dict(dataset=dataset, backend=backend, max_clicks=3, init_prompts="none", reward="iou_gain")
    vector = SamPromptVectorEnv(3, **kwargs)
    single = gym.vector.SyncVectorEnv([partial(SamPromptEnv, **kwargs) for _ in range(3)])
    calls = []
    original = backend.decode_batch

    def counting(*args, **kw):
        calls.append(len(args[0]))
        return original(*args, **kw)

    backend.decode_batch = counting  # type: ignore[method-assign]
    _compare_rollouts(vector, single, steps=5, atol=2e-3)
    # one batched decoder call per step and multimask value, never one call per sub-env
    assert len(calls) <= 2 * 6 and max(calls) > 1


def test_next_step_autoreset():
    vector = SamPromptVectorEnv(2, max_clicks=2, **SMALL)
    assert vector.metadata["autoreset_mode"] == gym.vector.AutoresetMode.NEXT_STEP
    obs, info = vector.reset(seed=0)
    assert vector.observation_space.contains(obs) and "image_id" in info and info["_image_id"].all()
    vector.step([0, 1])
    obs, rewards, terminated, truncated, info = vector.step([2, 3])
    assert truncated.all() and not terminated.any() and "is_success" in info
    assert (obs["clicked"].sum(axis=1) == 2).all()
    obs, rewards, terminated, truncated, info = vector.step([4, 5])  # ignored: the sub-envs reset
    assert (rewards == 0).all() and not (terminated | truncated).any()
    assert (obs["clicked"].sum(axis=1) == 0).all() and "image_id" in info and "point" not in info
    obs, *_ = vector.step([4, 5])
    assert (obs["clicked"].sum(axis=1) == 1).all()


def test_same_step_autoreset_and_action_masks():
    vector = SamPromptVectorEnv(2, autoreset_mode="same_step", max_clicks=2, **SMALL)
    vector.reset(seed=0)
    vector.step([0, 7])
    assert np.array_equal(vector.action_masks()[:, [0, 7]], [[False, True], [True, False]])
    obs, _, _, truncated, info = vector.step([2, 3])
    assert truncated.all() and (obs["clicked"].sum(axis=1) == 0).all()
    assert all(final["clicked"].sum() == 2 for final in info["final_obs"])
    assert info["final_info"]["is_success"].shape == (2,) and info["final_info"]["_is_success"].all()
    assert vector.action_masks().all()


def test_make_vec_uses_the_batched_env():
    vector = gym.make_vec("SamPrompt-v0", num_envs=2, dataset_kwargs=dict(n=4))
    assert isinstance(vector.unwrapped, SamPromptVectorEnv)
    obs, _ = vector.reset(seed=1)
    assert vector.observation_space.contains(obs) and obs["state"].shape == (2, 1000)
    assert vector.action_space == gym.spaces.MultiDiscrete([100, 100])


def test_info_iou_none_skips_per_step_iou_but_keeps_rollout():
    full = SamPromptEnv(**SMALL, max_clicks=3)
    fast = SamPromptEnv(**SMALL, max_clicks=3, info_iou="none")
    _, info_full = full.reset(seed=2)
    _, info_fast = fast.reset(seed=2)
    assert "iou" in info_full and "iou" not in info_fast
    for action in (11, 44, 77):
        obs_a, rew_a, _, trunc_a, info_a = full.step(action)
        obs_b, rew_b, _, trunc_b, info_b = fast.step(action)
        assert rew_a == rew_b and all(np.array_equal(obs_a[k], obs_b[k]) for k in obs_a)
    assert trunc_b and info_b["iou"] == info_a["iou"] and info_b["is_success"] == info_a["is_success"]
    assert fast.episode_view().iou == full.episode_view().iou
    with pytest.raises(ValueError, match="info_iou"):
        SamPromptEnv(**SMALL, info_iou="none", reward="iou_gain")


def test_bad_arguments():
    with pytest.raises(ValueError, match="num_envs"):
        SamPromptVectorEnv(0, **SMALL)
    with pytest.raises(ValueError, match="autoreset_mode"):
        SamPromptVectorEnv(2, autoreset_mode="disabled", **SMALL)
    vector = SamPromptVectorEnv(2, **SMALL)
    with pytest.raises(RuntimeError, match="reset"):
        vector.step([0, 1])
    vector.reset(seed=0)
    with pytest.raises(ValueError, match="batch of 2 actions"):
        vector.step([0, 1, 2])
    with pytest.raises(ValueError, match="2 seeds"):
        vector.reset(seed=[1, 2, 3])


def _assert_same_step(got: tuple, want: tuple) -> None:
    obs_a, *rest_a, info_a = got
    obs_b, *rest_b, info_b = want
    for key in obs_b:
        np.testing.assert_array_equal(obs_a[key], obs_b[key], err_msg=key)
    for a, b in zip(rest_a, rest_b, strict=True):
        np.testing.assert_array_equal(a, b)
    _assert_same_info(info_a, info_b, atol=0.0)


@pytest.mark.parametrize("mode", ["next_step", "same_step"])
def test_refused_step_changes_no_sub_env_and_a_retry_equals_a_fresh_env(mode):
    refused = SamPromptVectorEnv(2, autoreset_mode=mode, max_clicks=3, **SMALL)
    fresh = SamPromptVectorEnv(2, autoreset_mode=mode, max_clicks=3, **SMALL)
    for env in (refused, fresh):
        env.reset(seed=4)
        env.step([1, 2])
    for bad in ([5, 100], [5, True], [5, 6.0], [5, [6]], np.array([5, -1])):
        with pytest.raises(ValueError, match=r"sub-env 1; no sub-env was changed"):
            refused.step(bad)
    assert refused.envs[0].episode_view().n_clicks == 1 and refused.action_masks()[0].sum() == 99
    for actions in ([5, 6], [5, 7], [8, 9], [5, 6]):  # crosses the episode end (3 clicks) and the autoreset
        _assert_same_step(refused.step(actions), fresh.step(actions))


def test_refused_step_leaves_an_autoresetting_sub_env_alone():
    """Sub-env 0 terminated (it resets on the next step), sub-env 1's next action is invalid."""
    kwargs = dict(target_iou=0.05, init_prompts="none", **SMALL)
    refused, fresh = SamPromptVectorEnv(2, **kwargs), SamPromptVectorEnv(2, **kwargs)
    for env in (refused, fresh):
        env.reset(seed=0, options={"index": 0})
    view = refused.envs[0].episode_view()
    on_target = [bool(view.sample.target[view.grid.pixel(*view.grid.cell_to_point(a))]) for a in range(100)]
    first = [on_target.index(True), on_target.index(False)]  # sub-env 1 clicks background: IoU 0
    for env in (refused, fresh):
        _, _, terminated, _, _ = env.step(first)
    assert terminated.tolist() == [True, False]
    with pytest.raises(ValueError, match="Expected an action in"):
        refused.step([0, 100])
    for actions in ([0, first[1] + 1], [1, 2]):
        _assert_same_step(refused.step(actions), fresh.step(actions))


def test_refused_reset_changes_no_sub_env():
    refused = SamPromptVectorEnv(2, max_clicks=3, **SMALL)
    fresh = SamPromptVectorEnv(2, max_clicks=3, **SMALL)
    for env in (refused, fresh):
        env.reset(seed=4)
        env.step([1, 2])
    for kwargs in (dict(seed=[0, -1]), dict(seed=[0, True]), dict(seed=True), dict(seed=1.5),
                   dict(seed=0, options={"index": 6}), dict(options={"image": 0})):
        with pytest.raises(ValueError, match="Expected"):
            refused.reset(**kwargs)
    _assert_same_step(refused.step([3, 4]), fresh.step([3, 4]))
    _assert_same_step(refused.reset(seed=[7, 8], options={"index": 2}), fresh.reset(seed=[7, 8], options={"index": 2}))


def test_sb3_adapter_terminal_observation_and_masks():
    pytest.importorskip("stable_baselines3")
    from sam_gym.envs.sb3 import make_sb3_vec_env

    venv = make_sb3_vec_env(2, max_clicks=2, **SMALL)
    venv.seed(5)
    obs = venv.reset()
    assert obs["state"].shape == (2, 1000) and len(venv.reset_infos) == 2
    masks = np.stack(venv.env_method("action_masks"))
    assert masks.shape == (2, 100) and masks.all()
    venv.step(np.array([0, 1]))
    obs, rewards, dones, infos = venv.step(np.array([2, 3]))
    assert dones.all() and rewards.dtype == np.float32
    assert all(info["TimeLimit.truncated"] for info in infos)
    assert all(info["terminal_observation"]["clicked"].sum() == 2 for info in infos)
    assert (obs["clicked"].sum(axis=1) == 0).all() and all("image_id" in info for info in venv.reset_infos)
    assert venv.get_attr("max_clicks") == [2, 2] and venv.env_is_wrapped(gym.Wrapper) == [False, False]


@pytest.mark.slow
def test_sb3_ppo_and_maskable_ppo_learn_through_the_adapter():
    pytest.importorskip("sb3_contrib")
    from sb3_contrib import MaskablePPO
    from sb3_contrib.common.maskable.utils import get_action_masks
    from stable_baselines3 import PPO

    from sam_gym.envs.sb3 import make_sb3_vec_env

    venv = make_sb3_vec_env(2, max_clicks=5, **SMALL)
    model = PPO("MultiInputPolicy", venv, n_steps=32, batch_size=32, n_epochs=1, seed=0, device="cpu")
    model.learn(64)
    assert model.num_timesteps >= 64
    masked = MaskablePPO("MultiInputPolicy", venv, n_steps=32, batch_size=32, n_epochs=1, seed=0, device="cpu")
    masked.learn(64)
    obs = venv.reset()
    for _ in range(3):
        masks = get_action_masks(venv)
        actions, _ = masked.predict(obs, action_masks=masks, deterministic=True)
        assert masks[np.arange(2), actions].all()
        obs, *_ = venv.step(actions)


@pytest.mark.parametrize("mode", ["next_step", "same_step"])
def test_action_mask_option_is_batched_and_equals_single_envs(mode):
    kwargs = dict(max_clicks=3, action_mask="both")
    vector = SamPromptVectorEnv(3, autoreset_mode=mode, **SMALL, **kwargs)
    single = gym.vector.SyncVectorEnv([partial(SamPromptEnv, **SMALL, **kwargs) for _ in range(3)],
                                      autoreset_mode=vector.metadata["autoreset_mode"])
    assert vector.observation_space == single.observation_space
    assert vector.observation_space["action_mask"] == gym.spaces.Box(0, 1, (3, 100), np.int8)
    obs, info = vector.reset(seed=0)
    assert vector.observation_space.contains(obs) and info["action_mask"].shape == (3, 100)
    obs, *_, info = vector.step([4, 5, 6])
    np.testing.assert_array_equal(obs["action_mask"], vector.action_masks().astype(np.int8))
    np.testing.assert_array_equal(info["action_mask"], obs["action_mask"])
    assert (obs["action_mask"][[0, 1, 2], [4, 5, 6]] == 0).all()
    _compare_rollouts(vector, single, steps=8, atol=0.0)


def test_call_get_attr_set_attr_as_on_sync_vector_env():
    kwargs = dict(max_clicks=3)
    vector = SamPromptVectorEnv(3, **SMALL, **kwargs)
    sync = gym.vector.SyncVectorEnv([partial(SamPromptEnv, **SMALL, **kwargs) for _ in range(3)])
    for envs in (vector, sync):
        envs.reset(seed=1)
        envs.step(np.array([2, 3, 2]))
    for got, want in zip(vector.call("action_masks"), sync.call("action_masks"), strict=True):
        np.testing.assert_array_equal(got, want)
    np.testing.assert_array_equal(np.stack(vector.call("action_masks")), vector.action_masks())
    assert vector.get_attr("max_clicks") == sync.get_attr("max_clicks") == (3, 3, 3)
    assert vector.get_attr("n_cells") == sync.get_attr("n_cells")
    assert vector.call("check_step", 5) == sync.call("check_step", 5) == (None,) * 3  # arguments are passed on
    with pytest.raises(ValueError, match="Expected an action in Discrete"):
        vector.call("check_step", action=100)
    for envs in (vector, sync):
        envs.set_attr("note", ["a", "b", "c"])
        assert envs.get_attr("note") == ("a", "b", "c")
        envs.set_attr("note", "same")
        assert envs.get_attr("note") == ("same",) * 3
    with pytest.raises(ValueError, match=r"Expected one value per sub-env \(3\).*got 2 values"):
        vector.set_attr("note", [1, 2])
    with pytest.raises(ValueError):
        sync.set_attr("note", [1, 2])
    with pytest.raises(AttributeError):
        vector.get_attr("no_such_attribute")


@pytest.mark.parametrize("mode", ["next_step", "same_step"])
def test_vector_info_keys_order_and_dtypes_are_sync_vector_envs(mode):
    """Batched step infos give exactly ``_add_info``'s dict: same keys in the same order, same dtypes.

    (With ``same_step`` the ``final_obs`` / ``final_info`` keys come after the others, where
    ``SyncVectorEnv`` puts them first: the order of the env before the batched infos, kept.)
    """
    kwargs = dict(**SMALL, max_clicks=4, target_iou=0.5, action_mask="info")
    vector = SamPromptVectorEnv(4, autoreset_mode=mode, **kwargs)
    single = gym.vector.SyncVectorEnv([partial(SamPromptEnv, **kwargs) for _ in range(4)],
                                      autoreset_mode=vector.metadata["autoreset_mode"])
    _, info_v = vector.reset(seed=1)
    _, info_s = single.reset(seed=1)
    rng = np.random.default_rng(1)
    mixed = 0
    for _ in range(12):
        if mode == "next_step":
            assert list(info_v) == list(info_s)
        assert sorted(info_v) == sorted(info_s)
        for key, value in info_s.items():
            if isinstance(value, np.ndarray):
                assert info_v[key].dtype == value.dtype and info_v[key].shape == value.shape, key
        actions = rng.integers(0, 100, size=4)
        *_, info_v = vector.step(actions)
        *_, info_s = single.step(actions)
        mixed += int("image_id" in info_s and "point" in info_s)
    assert mixed or mode == "same_step"  # some steps held reset and step infos together
