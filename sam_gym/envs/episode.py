"""What code outside the episode rules sees of an episode, and what an env asks its backend to decode.

:class:`EpisodeView` is the one documented window on an episode for hooks, privileged policies and
evaluation (:meth:`sam_gym.envs.SamPromptEnv.episode_view`); :class:`DecodeRequest` is one decoder
call an env needs before it can finish a reset or a step (the vector env batches them). Both are
built by the batched episode core (:mod:`sam_gym.envs.core`).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from functools import cached_property
from typing import Any

import numpy as np

from sam_gym.backends import PromptableSegmenter
from sam_gym.backends.base import Embedding, Prediction
from sam_gym.data import Sample
from sam_gym.grid import PatchGrid
from sam_gym.metrics import iou

__all__ = ["DecodeRequest", "EpisodeView"]


@dataclass(frozen=True)
class EpisodeView:
    """Everything about the current episode, for hooks and privileged policies.

    Returned by :meth:`SamPromptEnv.episode_view`, the one documented way for code outside the env
    (label and init-prompt hooks, baseline policies, evaluation) to see more than the observation.
    ``sample.target`` and ``sample.void`` are ground truth: a policy that reads them is an *oracle*
    and must say so (``oracle = True``), and results tables mark it.

    Attributes:
        sample: The image, ground truth (``target``, ``void``) and ids of the episode.
        embedding: The backend's embedding of the image.
        backend: The backend (for policies that decode proposals themselves).
        grid: The patch grid (the action -> point mapping).
        points: ``(N, 2)`` float32 ``(x, y)`` prompts so far in image pixels (initial prompts first).
        labels: ``(N,)`` int64 labels of ``points``, 1 foreground / 0 background.
        n_init: Number of initial prompts at the start of ``points``.
        n_clicks: Agent clicks so far (repeats included).
        max_clicks: The click budget.
        prediction: The last decoder output (``None`` before any prompt).
        mask_logits: The chosen proposal's ``(1, h, w)`` low-res logits (``None`` before any prompt).
        mask: The current ``(H, W)`` bool mask (all ``False`` before any prompt); computed at full
            resolution on first access, so a hook that reads only ``mask_logits`` never pays for it.
        iou: IoU of ``mask`` with the target, void excluded (likewise computed on first access
            unless the env already has it, ``info_iou="full"``).
        np_random: The env's random generator (hooks must draw from it, for reproducibility).
    """

    sample: Sample
    embedding: Embedding
    backend: PromptableSegmenter
    grid: PatchGrid
    points: np.ndarray
    labels: np.ndarray
    n_init: int
    n_clicks: int
    max_clicks: int
    prediction: Prediction | None
    mask_logits: Any
    np_random: np.random.Generator
    known_iou: float | None = field(default=None, repr=False, compare=False)

    @cached_property
    def mask(self) -> np.ndarray:
        """The current ``(H, W)`` bool mask, indexed ``[row, col]`` (memoised by the prediction)."""
        if self.prediction is None:
            return np.zeros(self.sample.target.shape, dtype=bool)
        return self.prediction.mask(self.prediction.best)

    @cached_property
    def iou(self) -> float:
        """IoU of :attr:`mask` with the target, void excluded."""
        if self.known_iou is not None:
            return self.known_iou
        return 0.0 if self.prediction is None else iou(self.mask, self.sample.target, self.sample.void)


@dataclass(frozen=True)
class DecodeRequest:
    """One decoder call that an env needs before it can finish a reset or a step.

    Returned by :meth:`SamPromptEnv.prepare_reset` / :meth:`SamPromptEnv.prepare_step`, so that
    code driving several envs can run their requests as one batched ``backend.decode_batch(...)``
    call (the vector env batches its sub-envs' calls without a request object each:
    :class:`sam_gym.envs.core.DecodeBatch`). Points are ``(x, y)`` in original-image pixels (``x`` right,
    ``y`` down; the pixel is ``(floor(y), floor(x))``), labels 1 foreground / 0 background.

    Attributes:
        embedding: The image's embedding.
        points: ``(N, 2)`` float32 ``(x, y)`` prompts.
        labels: ``(N,)`` int64 labels.
        mask_input: The previous ``(1, h, w)`` low-res logits, or ``None``.
        multimask: Whether to ask for 3 proposals.
    """

    embedding: Embedding
    points: np.ndarray
    labels: np.ndarray
    mask_input: Any
    multimask: bool
