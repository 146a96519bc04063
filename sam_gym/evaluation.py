"""Running a policy through episodes and recording what happened at every click.

The single code path that scores every policy, learned or heuristic: anything with SB3's
``predict(observation, state, episode_start, deterministic)`` (an SB3 model, a
:class:`agents.base.PromptPolicy`) runs through :func:`run_episodes` on the same episodes (dataset
indices and seeds), and its :class:`EpisodeRecord` list is what metrics and reports are built from.
"""

from __future__ import annotations

import inspect
import time
from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Any

import numpy as np

__all__ = ["EpisodeRecord", "run_episode", "run_episodes"]


@dataclass
class EpisodeRecord:
    """One episode of one policy.

    Attributes:
        index: Dataset index of the sample.
        image_id: The sample's key (``image_id`` plus ``#instance`` in instance mode).
        seed: The ``reset`` seed.
        init_iou: IoU after the initial prompts (0 without).
        ious: IoU after each click (void excluded).
        rewards: Reward of each click.
        on_target: Whether each click's pixel is ground-truth foreground.
        points: ``(x, y)`` of each click in image pixels.
        labels: Label of each click, 1 foreground / 0 background.
        step_seconds: Wall time of each click: policy ``predict`` plus env ``step``.
        is_success: The env's ``is_success`` at episode end.
    """

    index: int
    image_id: str
    seed: int
    init_iou: float = 0.0
    ious: list[float] = field(default_factory=list)
    rewards: list[float] = field(default_factory=list)
    on_target: list[bool] = field(default_factory=list)
    points: list[tuple[float, float]] = field(default_factory=list)
    labels: list[int] = field(default_factory=list)
    step_seconds: list[float] = field(default_factory=list)
    is_success: bool = False

    @property
    def total_reward(self) -> float:
        """Sum of the rewards (the episode return)."""
        return float(np.sum(self.rewards)) if self.rewards else 0.0


def _action_masks_kwargs(policy: Any, env: Any) -> dict[str, Any]:
    """``action_masks=`` for policies whose ``predict`` takes it (sb3-contrib ``MaskablePPO``)."""
    if "action_masks" in inspect.signature(policy.predict).parameters and env.unwrapped.action_mode != "point":
        return {"action_masks": env.unwrapped.action_masks()}
    return {}


def run_episode(policy: Any, env: Any, index: int, seed: int, deterministic: bool = True) -> EpisodeRecord:
    """Run one episode of ``policy`` on sample ``index`` of ``env``'s dataset.

    Args:
        policy: Anything with SB3's ``predict`` signature (bound to ``env`` if it has ``bind``).
        env: A ``SamPromptEnv`` (or a wrapper of one).
        index: Dataset index (``reset(options={"index": index})``).
        seed: ``reset`` seed (initial prompts, policy randomness drawn from the env).
        deterministic: Passed to ``predict``.
    """
    obs, info = env.reset(seed=seed, options={"index": index})
    view = env.unwrapped.episode_view()
    record = EpisodeRecord(index=index, image_id=view.sample.key, seed=seed, init_iou=float(info["iou"]))
    episode_start = np.array([True])
    state = None
    done = False
    while not done:
        start = time.perf_counter()
        action, state = policy.predict(obs, state=state, episode_start=episode_start, deterministic=deterministic,
                                       **_action_masks_kwargs(policy, env))
        obs, reward, terminated, truncated, info = env.step(np.asarray(action).squeeze() if np.ndim(action) else action)
        record.step_seconds.append(time.perf_counter() - start)
        episode_start = np.array([False])
        record.ious.append(float(info["iou"]))
        record.rewards.append(float(reward))
        record.on_target.append(bool(info["on_target"]))
        record.points.append(tuple(float(v) for v in info["point"]))
        record.labels.append(int(info["label"]))
        done = terminated or truncated
    record.is_success = bool(info.get("is_success", False))
    return record


def run_episodes(
    policy: Any, env: Any, indices: Iterable[int], seeds: Iterable[int] = (0,), deterministic: bool = True,
    progress: Any | None = None,
) -> list[EpisodeRecord]:
    """Run ``policy`` on every ``(seed, index)`` pair, binding it to ``env`` first if it has ``bind``.

    Args:
        policy: Anything with SB3's ``predict`` signature.
        env: A ``SamPromptEnv`` (or a wrapper of one).
        indices: Dataset indices, the same for every policy being compared.
        seeds: ``reset`` seeds; each index is run once per seed.
        deterministic: Passed to ``predict``.
        progress: Optional callable called with no argument after each episode (a progress bar's update).
    """
    if hasattr(policy, "bind"):
        policy.bind(env)
    records = []
    indices = list(indices)
    for seed in seeds:
        for index in indices:
            records.append(run_episode(policy, env, int(index), int(seed), deterministic))
            if progress is not None:
                progress()
    return records
