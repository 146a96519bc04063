"""Seeded rollouts of the single and the vector env hash to fixed digests: speed-ups change no output.

The digests were recorded on the code before the hot-path work of issue 14 (observation buffers,
batched infos and decode requests); every observation, reward, flag and info (keys in order, dtypes
and values) goes into them.
"""

from __future__ import annotations

import hashlib
from typing import Any

import numpy as np
import pytest

from sam_gym.envs import SamPromptEnv
from sam_gym.envs.vector_env import SamPromptVectorEnv

SMALL = dict(dataset="synthetic-shapes", dataset_kwargs=dict(n=6), max_clicks=3)

#: name -> (vector env or single, keyword arguments)
CASES: dict[str, tuple[int, dict[str, Any]]] = {
    "single": (0, dict(SMALL)),
    "single_point_iou": (0, dict(SMALL, action_mode="point", reward="iou_gain", init_prompts="none")),
    "vector_next": (4, dict(SMALL, action_mask="both")),
    "vector_same": (4, dict(SMALL, autoreset_mode="same_step", info_iou="none")),
    "vector_label": (3, dict(SMALL, action_mode="patch_label", target_iou=0.5)),
    "vector_null": (5, dict(SMALL, backend="null", info_iou="none", state_pool="full")),
    "vector_null_full": (5, dict(SMALL, backend="null", init_prompts="none")),
}


def _update(digest: Any, value: Any) -> None:
    """Feed ``value`` (nested dicts, arrays, scalars) into ``digest``, types and order included."""
    if isinstance(value, dict):
        digest.update(b"{")
        for key, item in value.items():
            digest.update(repr(key).encode())
            _update(digest, item)
        digest.update(b"}")
    elif isinstance(value, np.ndarray) and value.dtype != object:
        digest.update(f"{value.dtype}{value.shape}".encode())
        digest.update(np.ascontiguousarray(value).tobytes())
    elif isinstance(value, np.ndarray):
        digest.update(f"object{value.shape}".encode())
        for item in value.ravel():
            _update(digest, item)
    elif isinstance(value, (tuple, list)):
        digest.update(f"{type(value).__name__}{len(value)}".encode())
        for item in value:
            _update(digest, item)
    else:
        digest.update(f"{type(value).__name__}:{value!r}".encode())


def rollout_digest(num_envs: int, kwargs: dict[str, Any], steps: int = 10, seed: int = 5) -> str:
    """Digest of a seeded rollout: ``num_envs`` 0 is a single env, else a vector env."""
    kwargs = dict(kwargs)
    digest = hashlib.sha256()
    rng = np.random.default_rng(seed)
    if num_envs == 0:
        env: Any = SamPromptEnv(**kwargs)
        _update(digest, env.reset(seed=seed))
        for _ in range(steps):
            action = rng.random(3).astype(np.float32) if env.action_mode == "point" else int(rng.integers(0, 8))
            out = env.step(action)
            _update(digest, out)
            if out[2] or out[3]:
                _update(digest, env.reset())
        return digest.hexdigest()[:16]
    mode = kwargs.pop("autoreset_mode", "next_step")
    env = SamPromptVectorEnv(num_envs, autoreset_mode=mode, **kwargs)
    _update(digest, env.reset(seed=seed))
    for _ in range(steps):
        if env.envs[0].action_mode == "patch_label":
            actions = np.stack([rng.integers(0, 8, num_envs), rng.integers(0, 2, num_envs)], axis=1)
        else:
            actions = rng.integers(0, 8, num_envs)
        _update(digest, env.step(actions))
        _update(digest, env.action_masks())
    return digest.hexdigest()[:16]


DIGESTS: dict[str, str] = {
    "single": "6f501b5ec66bc8ed",
    "single_point_iou": "c9440ef258909d3c",
    "vector_next": "d532fd26c01aa20a",
    "vector_same": "e9db01e43721f3d3",
    "vector_label": "c3f8829d62a81ce6",
    "vector_null": "b532634fd7edc666",
    "vector_null_full": "6115667903bf167b",
}


@pytest.mark.parametrize("name", sorted(CASES))
def test_seeded_rollout_digest_is_unchanged(name):
    num_envs, kwargs = CASES[name]
    assert rollout_digest(num_envs, kwargs) == DIGESTS[name]


if __name__ == "__main__":
    for case, (n, kw) in CASES.items():
        print(f"    {case!r}: {rollout_digest(n, kw)!r},")
