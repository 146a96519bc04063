"""Envs, backends and predictions pickle, and a pickled env continues exactly where it was."""

from __future__ import annotations

import pickle

import gymnasium as gym
import numpy as np
import pytest

import sam_gym  # noqa: F401  (registers the envs)
from sam_gym.backends import make_backend


def _assert_same(a: object, b: object) -> None:
    if isinstance(a, dict):
        assert isinstance(b, dict) and a.keys() == b.keys()
        for key in a:
            _assert_same(a[key], b[key])
    elif isinstance(a, tuple):
        assert isinstance(b, tuple) and len(a) == len(b)
        for x, y in zip(a, b, strict=True):
            _assert_same(x, y)
    else:
        np.testing.assert_array_equal(np.asarray(a), np.asarray(b))


def test_classical_env_pickles_after_reset_and_step_and_continues_identically() -> None:
    env = gym.make("SamPrompt-v0", dataset_kwargs={"n": 3})
    env.reset(seed=1)
    env.step(5)
    clone = pickle.loads(pickle.dumps(env))
    for action in (17, 42, 63):
        _assert_same(clone.step(action), env.step(action))
    _assert_same(clone.reset(seed=2), env.reset(seed=2))


def test_predictions_pickle_with_their_lazy_masks() -> None:
    backend = make_backend("classical")
    image = np.zeros((48, 64, 3), dtype=np.uint8)
    image[10:30, 20:40] = 200
    embedding = backend.encode(image)
    prediction = backend.decode(embedding, np.array([[30.0, 20.0]]), np.array([1]), multimask=True)
    clone = pickle.loads(pickle.dumps(prediction))
    for k in range(len(prediction)):
        np.testing.assert_array_equal(clone.mask(k), prediction.mask(k))


def test_sam_backend_and_its_predictions_pickle() -> None:
    pytest.importorskip("segment_anything")
    import torch

    from sam_gym.testing import tiny_sam_backend

    backend = tiny_sam_backend()
    image = np.random.default_rng(0).integers(0, 256, (40, 56, 3), dtype=np.uint8)
    embedding = backend.encode(image)
    prediction = backend.decode(embedding, np.array([[20.0, 10.0]]), np.array([1]))
    clone = pickle.loads(pickle.dumps(prediction))
    np.testing.assert_array_equal(clone.mask(), prediction.mask())
    copy = pickle.loads(pickle.dumps(backend))
    torch.testing.assert_close(copy.decode(copy.encode(image), np.array([[20.0, 10.0]]), np.array([1])).low_res_logits,
                               prediction.low_res_logits)


def test_vector_env_pickles_after_step_and_continues_identically() -> None:
    envs = gym.make_vec("SamPrompt-v0", num_envs=3, dataset_kwargs={"n": 3}, max_clicks=3, action_mask="both")
    envs.reset(seed=1)
    envs.step(np.array([5, 6, 7]))
    clone = pickle.loads(pickle.dumps(envs))
    assert clone.unwrapped.envs[1].cache is clone.unwrapped.envs[0].cache  # still one shared cache and core
    assert clone.unwrapped.envs[2]._core is clone.unwrapped.core
    for actions in ([17, 42, 63], [5, 5, 5], [1, 2, 3], [8, 9, 10]):  # crosses the autoreset
        _assert_same(clone.step(np.array(actions)), envs.step(np.array(actions)))
    _assert_same(clone.call("action_masks"), envs.call("action_masks"))
    _assert_same(clone.reset(seed=4), envs.reset(seed=4))


def test_action_mask_wrapper_pickles_after_step_and_continues_identically() -> None:
    from sam_gym.wrappers import ActionMaskObservation

    env = ActionMaskObservation(gym.make("SamPromptLabel-v0", dataset_kwargs={"n": 3}), obs_key="legal")
    env.reset(seed=1)
    env.step(np.array([5, 1]))
    clone = pickle.loads(pickle.dumps(env))
    assert clone.obs_key == "legal" and "legal" in clone.observation_space.spaces
    for action in ([17, 0], [5, 1], [63, 1]):
        _assert_same(clone.step(np.array(action)), env.step(np.array(action)))
