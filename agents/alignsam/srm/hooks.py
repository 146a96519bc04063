"""Where a :class:`~agents.alignsam.srm.Recalibrator` plugs in: the env's label and prompt hooks, SB3's callback.

* :class:`_Labeller` (``label_mode`` of :class:`~sam_gym.envs.SamPromptEnv`) and
  :class:`_InitialPrompts` (``init_prompts``) read the SRM's map;
* :class:`SRMCallback` trains the SRM online during PPO (the only Stable-Baselines3 import of the
  SRM).

Points are ``(x, y)`` in image pixels (x right, y down); map cells are ``(row, col)`` of the
recalibrator's ``S x S`` :class:`~sam_gym.grid.PatchGrid` (:meth:`Recalibrator.map_grid`).
"""

from __future__ import annotations

from typing import TYPE_CHECKING, ClassVar

import numpy as np
from stable_baselines3.common.callbacks import BaseCallback

if TYPE_CHECKING:
    from agents.alignsam.srm.recalibrator import Recalibrator
    from sam_gym.envs import EpisodeView

__all__ = ["SRMCallback"]


class _Labeller:
    """``label_mode`` callable: 1 where the SRM's map at the clicked point is at least 0.5."""

    #: How reports name this label source (``sam_gym.evaluation.policy_protocol``).
    name: ClassVar[str] = "srm.Labeller"

    def __init__(self, srm: Recalibrator) -> None:
        self.srm = srm

    def __call__(self, view: EpisodeView, point: tuple[float, float]) -> int:
        prob = self.srm.prob_map(view)
        return int(prob.flat[self.srm.map_grid(view).point_to_cell(point[0], point[1])] >= 0.5)

    def __repr__(self) -> str:
        return "SRM labeller"


class _InitialPrompts:
    """``init_prompts`` callable: the SRM map's highest cell (positive) and lowest cell (negative)."""

    #: How reports name this prompt source (``sam_gym.evaluation.policy_protocol``).
    name: ClassVar[str] = "srm.InitialPrompts"

    def __init__(self, srm: Recalibrator) -> None:
        self.srm = srm

    def __call__(self, view: EpisodeView) -> list[tuple[float, float, int]]:
        prob = self.srm.prob_map(view, with_mask=False)
        grid = self.srm.map_grid(view)
        return [(*grid.cell_to_point(int(cell)), label) for cell, label in ((np.argmax(prob), 1), (np.argmin(prob), 0))]

    def __repr__(self) -> str:
        return "SRM initial prompts"


class SRMCallback(BaseCallback):
    """Update the SRM ``q`` times after every vectorised env step (paper: after each action).

    Each env's :meth:`~sam_gym.envs.SamPromptEnv.episode_view` (ground truth of the *training*
    image included) supervises the SRM. The mean loss is logged as ``srm/loss``. The SRM reads the
    views' low-resolution logits, prompts, embedding and ground truth, never their full-resolution
    ``mask`` or ``iou`` (a view computes those only when read), so the training env's
    ``info_iou="none"`` keeps its saving: the full-resolution mask and IoU are computed at episode
    ends only.

    Args:
        srm: The module to train.
        q: Optimiser steps per env step.
    """

    def __init__(self, srm: Recalibrator, q: int) -> None:
        super().__init__()
        self.srm = srm
        self.q = q

    def _on_step(self) -> bool:
        views = self.training_env.env_method("episode_view")
        self.logger.record_mean("srm/loss", self.srm.update(views, self.q))
        return True
