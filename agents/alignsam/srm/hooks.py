"""SB3's callback that trains a :class:`~agents.alignsam.srm.Recalibrator` online during PPO.

The only Stable-Baselines3 import of the SRM; the env's label and initial-prompt hooks that read
the SRM's map live beside the recalibrator (:mod:`agents.alignsam.srm.recalibrator`).
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from stable_baselines3.common.callbacks import BaseCallback

if TYPE_CHECKING:
    from agents.alignsam.srm.recalibrator import Recalibrator

__all__ = ["SRMCallback"]


class SRMCallback(BaseCallback):
    """Update the SRM ``q`` times per action (paper: Q steps after each action).

    A vector step takes one action in each of its ``n_envs`` envs, so it gets ``q * n_envs`` steps
    (``per_action=False``: ``q`` per vector step, how runs were trained before the option).

    Each env's :meth:`~sam_gym.envs.SamPromptEnv.episode_view` (ground truth of the *training*
    image included) supervises the SRM. The mean loss is logged as ``srm/loss``. The SRM reads the
    views' low-resolution logits, prompts, embedding and ground truth, never their full-resolution
    ``mask`` or ``iou`` (a view computes those only when read), so the training env's
    ``info_iou="none"`` keeps its saving: the full-resolution mask and IoU are computed at episode
    ends only.

    Args:
        srm: The module to train.
        q: Optimiser steps per action (or per vector step with ``per_action=False``).
        per_action: Scale ``q`` by the number of envs.
    """

    def __init__(self, srm: Recalibrator, q: int, per_action: bool = True) -> None:
        super().__init__()
        self.srm = srm
        self.q = q
        self.per_action = per_action

    def _on_step(self) -> bool:
        views = self.training_env.env_method("episode_view")
        steps = self.q * len(views) if self.per_action else self.q
        self.logger.record_mean("srm/loss", self.srm.update(views, steps))
        return True
