"""Running a policy through episodes and recording what happened at every click.

The single code path that scores every policy, learned or heuristic: anything with SB3's
``predict(observation, state, episode_start, deterministic)`` (an SB3 model, a
:class:`agents.base.PromptPolicy`) runs through :func:`run_episodes` on the same episodes (dataset
indices and seeds), and its :class:`EpisodeRecord` list is what metrics and reports are built from.
"""

from __future__ import annotations

import inspect
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from typing import Any

import numpy as np

__all__ = ["EpisodeRecord", "final_mask_metrics", "run_episode", "run_episodes"]


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
        init_points: ``(x, y)`` of the initial prompts (placed at reset; they are not clicks).
        init_labels: Labels of the initial prompts, 1 foreground / 0 background.
        masks: With ``record_masks``, the ``(H, W)`` bool mask (indexed ``[row, col]``) after the
            initial prompts (all ``False`` without) followed by the mask after each click; else ``None``.
        task_metrics: With ``task_metrics``, binary-task scores of the final mask (``mae``, ``f_beta``,
            ``e_measure``, ``ber``; see :func:`final_mask_metrics`); else empty.
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
    init_points: list[tuple[float, float]] = field(default_factory=list)
    init_labels: list[int] = field(default_factory=list)
    masks: list[np.ndarray] | None = None
    task_metrics: dict[str, float] = field(default_factory=dict)

    @property
    def total_reward(self) -> float:
        """Sum of the rewards (the episode return)."""
        return float(np.sum(self.rewards)) if self.rewards else 0.0


def _action_masks_kwargs(policy: Any, env: Any) -> dict[str, Any]:
    """``action_masks=`` for policies whose ``predict`` takes it (sb3-contrib ``MaskablePPO``)."""
    if "action_masks" in inspect.signature(policy.predict).parameters and env.unwrapped.action_mode != "point":
        return {"action_masks": env.unwrapped.action_masks()}
    return {}


def final_mask_metrics(mask: np.ndarray, target: np.ndarray, void: np.ndarray | None) -> dict[str, float]:
    """Binary-task (saliency-style) scores of a final ``(H, W)`` bool mask against the ground truth.

    Masks are indexed ``[row, col]``; ``void`` pixels are excluded. The mask is binary, so the
    "map" the saliency metrics expect is the 0/1 mask itself.

    Returns:
        ``{"mae", "f_beta", "e_measure", "ber"}`` from :mod:`sam_gym.metrics` (adaptive threshold,
        ``beta2 = 0.3``; BER in percent).
    """
    from sam_gym.metrics import ber, e_measure, f_beta, mae

    void = void if void is not None and np.any(void) else None
    return {
        "mae": mae(mask, target, void),
        "f_beta": f_beta(mask, target, void=void),
        "e_measure": e_measure(mask, target, void),
        "ber": ber(mask, target, void),
    }


def run_episode(
    policy: Any, env: Any, index: int, seed: int, deterministic: bool = True, record_masks: bool = False,
    task_metrics: bool = False,
) -> EpisodeRecord:
    """Run one episode of ``policy`` on sample ``index`` of ``env``'s dataset.

    Points are ``(x, y)`` in image pixels (x right, y down); masks are ``(H, W)`` indexed ``[row, col]``.

    Args:
        policy: Anything with SB3's ``predict`` signature (bound to ``env`` if it has ``bind``).
        env: A ``SamPromptEnv`` (or a wrapper of one).
        index: Dataset index (``reset(options={"index": index})``).
        seed: ``reset`` seed (initial prompts, policy randomness drawn from the env).
        deterministic: Passed to ``predict``.
        record_masks: Keep the mask after the initial prompts and after each click in
            ``record.masks`` (for episode strips; costs one ``(H, W)`` bool copy per click).
        task_metrics: Score the final mask with :func:`final_mask_metrics` into ``record.task_metrics``.
    """
    obs, info = env.reset(seed=seed, options={"index": index})
    unwrapped = env.unwrapped
    view = unwrapped.episode_view()
    record = EpisodeRecord(index=index, image_id=view.sample.key, seed=seed, init_iou=float(info["iou"]),
                           init_points=[(float(x), float(y)) for x, y in view.points],
                           init_labels=[int(v) for v in view.labels])
    if record_masks:
        record.masks = [view.mask.copy()]
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
        if record.masks is not None:
            record.masks.append(unwrapped.episode_view().mask.copy())
        done = terminated or truncated
    record.is_success = bool(info.get("is_success", False))
    if task_metrics:
        view = unwrapped.episode_view()
        record.task_metrics = final_mask_metrics(view.mask, view.sample.target, view.sample.void)
    return record


def run_episodes(
    policy: Any, env: Any, indices: Iterable[int], seeds: Iterable[int] = (0,), deterministic: bool = True,
    progress: Callable[[], Any] | None = None, record_masks: int = 0, task_metrics: bool = False,
) -> list[EpisodeRecord]:
    """Run ``policy`` on every ``(seed, index)`` pair, binding it to ``env`` first if it has ``bind``.

    Episodes run seed by seed, each over all ``indices`` in order, so the first episodes are the
    first seed's.

    Args:
        policy: Anything with SB3's ``predict`` signature.
        env: A ``SamPromptEnv`` (or a wrapper of one).
        indices: Dataset indices, the same for every policy being compared.
        seeds: ``reset`` seeds; each index is run once per seed.
        deterministic: Passed to ``predict``.
        progress: Optional callable called with no argument after each episode (a progress bar's update).
        record_masks: Number of first episodes whose per-click masks are kept (see :func:`run_episode`).
        task_metrics: Score every episode's final mask (see :func:`final_mask_metrics`).
    """
    if hasattr(policy, "bind"):
        policy.bind(env)
    records = []
    indices = list(indices)
    for seed in seeds:
        for index in indices:
            records.append(run_episode(policy, env, int(index), int(seed), deterministic,
                                       record_masks=len(records) < record_masks, task_metrics=task_metrics))
            if progress is not None:
                progress()
    return records
