"""PPO end to end on the batched vector env (sb3-contrib's MaskablePPO through the SB3 adapter).

Part of :mod:`sam_gym.benchmark` (whose docstring says what each figure means).
"""

from __future__ import annotations

import time
from typing import Any

from sam_gym.benchmark.timing import synchronize
from sam_gym.data import SegmentationDataset

__all__ = ["train_env_steps_per_s"]


def _minibatch(buffer: int, most: int = 256) -> int:
    """The largest divisor of ``buffer`` that is at most ``most`` (a PPO minibatch without a remainder)."""
    return max(d for d in range(1, min(most, buffer) + 1) if buffer % d == 0)


def train_env_steps_per_s(
    dataset: SegmentationDataset, cache: Any, n_envs: int = 8, n_steps: int = 16, rollouts: int = 2,
    seed: int = 0, env_kwargs: dict[str, Any] | None = None, device: str = "cpu", n_epochs: int = 4,
) -> dict[str, Any]:
    """PPO env steps per second, end to end: ``MaskablePPO`` on the batched vector env (SB3 adapter).

    One untimed ``learn`` of a rollout and an update warms up; then ``rollouts`` rollouts of
    ``n_envs * n_steps`` env steps, each followed by its PPO update, are timed.

    Args:
        dataset: The images.
        cache: The embedding cache (its backend is the env's).
        n_envs: Sub-envs of the vector env.
        n_steps: Rollout steps per sub-env.
        rollouts: Timed rollouts (each with its update).
        seed: Seed of the envs and of PPO.
        env_kwargs: Extra env arguments.
        device: Torch device of the PPO policy.
        n_epochs: PPO epochs per update (minibatches of up to 256 steps).

    Returns:
        ``train_env_steps_per_s`` and ``train_settings`` (what was run).

    Raises:
        ImportError: If sb3-contrib is not installed (``pip install "sam-gym[train]"``).
    """
    try:
        from sb3_contrib import MaskablePPO
    except ImportError as exc:
        raise ImportError('The training figure needs sb3-contrib: pip install "sam-gym[train]"') from exc
    from sam_gym.envs.sb3 import make_sb3_vec_env

    venv = make_sb3_vec_env(n_envs, dataset=dataset, cache=cache, **dict(env_kwargs or {}))
    buffer = n_envs * n_steps
    batch_size = _minibatch(buffer)
    settings = {"algorithm": "sb3_contrib.MaskablePPO", "policy": "MultiInputPolicy", "n_envs": n_envs,
                "n_steps": n_steps, "batch_size": batch_size, "n_epochs": n_epochs, "rollouts": rollouts,
                "net_arch": {"pi": [256], "vf": [256]}, "device": device}
    model = MaskablePPO("MultiInputPolicy", venv, n_steps=n_steps, batch_size=batch_size,
                        n_epochs=n_epochs, seed=seed, device=device, verbose=0,
                        policy_kwargs={"net_arch": settings["net_arch"]})
    model.learn(buffer)
    synchronize(cache.backend)
    before = model.num_timesteps
    start = time.perf_counter()
    model.learn(rollouts * buffer, reset_num_timesteps=False)
    synchronize(cache.backend)
    elapsed = time.perf_counter() - start
    venv.close()
    return {"train_env_steps_per_s": (model.num_timesteps - before) / elapsed, "train_settings": settings}
