"""AoP-SAM's test-time Adaptive Sampling and Filtering (ASF).

Coarse step, :func:`sample_prompts`: the Prompt Confidence Map is smoothed with a Gaussian (sigma
2 map cells, the paper's smoothing factor 2); its local maxima above the confidence threshold (0.2)
that are more than the prompt spacing (2 map cells, the paper's default) apart become candidate
prompts, mapped to image ``(x, y)``. No cap on their number (the paper has none).

Fine step, :class:`PromptEliminator` and :func:`generate_masks`: candidates are decoded one at a
time, most confident first; after each mask, the Prompt Elimination Map (PEM) removes the candidates
that the masks so far already explain. Re-implementation (the official ``ASF_finer`` could not be
read; the formula is our reading of the paper): for a generated mask ``m_i`` (resampled onto the frame
of the image features ``f``) with predicted IoU ``s_i``, the prototype
``p_i = normalise(sum_x m_i(x) f^(x))`` of the channel-normalised features ``f^``, the similarity
``S_i(x) = max(0, cos(f^(x), p_i))``, the per-mask map ``E_i(x) = (S_i(x) + m_i(x)) / 2`` in
``[0, 1]`` and its score ``E_i(x) + clip(s_i, 0, 1)`` in ``[0, 2]``. As in the paper, the PEM
*averages* the ``n`` masks' scores, ``PEM(x) = (1 / n) sum_i (E_i(x) + s_i)``, and a candidate is
eliminated when ``PEM > 1.3`` (the paper's elimination threshold; its Table 3(d) sweeps 1.25-1.4):
with one mask of predicted IoU 0.9 that is ``E > 0.4``, so every candidate inside the mask
(``E >= 0.5``) goes, and one outside it goes when its features are similar enough (``S > 0.8``). The
``"max"`` aggregation (eliminate when any single mask's score exceeds the threshold) is kept as an
option for comparison (``docs/baselines-aop-sapnet.md``).

Points are ``(x, y)`` image pixels (x right, y down; pixel ``(floor(y), floor(x))``); masks ``(H, W)``
bool indexed ``[row, col]``.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from typing import Any

import cv2
import numpy as np
from scipy.ndimage import gaussian_filter, maximum_filter

from agents.aop.frame import frame_features
from sam_gym.backends.base import Embedding, PromptableSegmenter
from sam_gym.grid import cell_of_point

__all__ = ["AGGREGATES", "ASFConfig", "AutoResult", "PromptEliminator", "generate_masks", "sample_prompts"]

#: The PEM aggregations over the generated masks (:class:`ASFConfig`).
AGGREGATES = ("mean", "max")


@dataclass(frozen=True)
class ASFConfig:
    """Adaptive Sampling and Filtering settings.

    Attributes:
        threshold: Confidence threshold of a local maximum (paper: 0.2).
        smooth_sigma: Gaussian smoothing of the map, in map cells (paper: factor 2).
        spacing: Prompt spacing: candidates are more than this many map cells apart (paper: 2; its
            Table 3(c) sweeps 4-7).
        elimination_threshold: A candidate is eliminated when its PEM score exceeds this (paper: 1.3,
            on the ``[0, 2]`` scale of the module docstring).
        aggregate: How the masks' scores combine into the PEM: ``"mean"`` (the paper's average) or
            ``"max"`` (any single mask eliminates).
        max_prompts: Most candidates kept (most confident first); ``None`` (the paper) keeps all.
        filter: Apply the fine (elimination) step.
    """

    threshold: float = 0.2
    smooth_sigma: float = 2.0
    spacing: int = 2
    elimination_threshold: float = 1.3
    aggregate: str = "mean"
    max_prompts: int | None = None
    filter: bool = True

    def __post_init__(self) -> None:
        if self.aggregate not in AGGREGATES:
            raise ValueError(f"Expected aggregate to be one of {AGGREGATES}, got {self.aggregate!r}")


def sample_prompts(conf_map: np.ndarray, image_size: tuple[int, int], threshold: float = 0.2,
                   smooth_sigma: float = 2.0, spacing: int = 2,
                   max_prompts: int | None = None) -> tuple[np.ndarray, np.ndarray]:
    """Candidate prompts from a confidence map (ASF coarse step).

    Args:
        conf_map: ``(M, N)`` confidences over the image frame (cell ``(i, j)`` covers image rows
            ``[i H / M, (i + 1) H / M)``, columns ``[j W / N, (j + 1) W / N)``).
        image_size: ``(H, W)`` of the image.
        threshold: Keep maxima whose smoothed confidence is above this.
        smooth_sigma: Gaussian sigma in cells (0: no smoothing).
        spacing: A maximum must be the largest value within ``spacing`` cells (Chebyshev), and kept
            candidates are more than ``spacing`` cells apart (greedy, most confident first).
        max_prompts: Keep at most this many (``None``: all).

    Returns:
        ``points`` ``(K, 2)`` float32 image ``(x, y)`` at the centres of the maxima's cells,
        ``((j + 0.5) W / N, (i + 0.5) H / M)``, and their smoothed confidences ``(K,)``, most
        confident first (ties: row-major order).

    Raises:
        ValueError: On a non-2-D map or a negative spacing.
    """
    conf = np.asarray(conf_map, dtype=np.float32)
    if conf.ndim != 2:
        raise ValueError(f"Expected a 2-D confidence map, got shape {conf.shape}")
    if spacing < 0:
        raise ValueError(f"Expected spacing >= 0, got {spacing}")
    smooth = gaussian_filter(conf, smooth_sigma, mode="nearest") if smooth_sigma > 0 else conf
    peaks = (smooth >= maximum_filter(smooth, size=2 * spacing + 1, mode="nearest")) & (smooth > threshold)
    rows, cols = np.nonzero(peaks)
    order = np.argsort(-smooth[rows, cols], kind="stable")
    kept: list[tuple[int, int]] = []
    for k in order:
        r, c = int(rows[k]), int(cols[k])
        if all(max(abs(r - kr), abs(c - kc)) > spacing for kr, kc in kept):
            kept.append((r, c))
            if max_prompts is not None and len(kept) >= max_prompts:
                break
    height, width = image_size
    m, n = conf.shape
    points = np.array([((c + 0.5) * width / n, (r + 0.5) * height / m) for r, c in kept], dtype=np.float32)
    scores = np.array([smooth[r, c] for r, c in kept], dtype=np.float32)
    return points.reshape(-1, 2), scores


class PromptEliminator:
    """The Prompt Elimination Map (ASF fine step); see the module docstring for the formula.

    Args:
        features: ``(C, h, w)`` image features over the image frame (e.g.
            :func:`~agents.aop.frame.frame_features`).
        image_size: ``(H, W)`` of the image.
        threshold: Elimination threshold on the PEM score (paper: 1.3).
        aggregate: ``"mean"`` (the paper) or ``"max"`` over the registered masks.
    """

    def __init__(self, features: Any, image_size: tuple[int, int], threshold: float = 1.3,
                 aggregate: str = "mean") -> None:
        feats = np.asarray(features, dtype=np.float32)
        if feats.ndim != 3:
            raise ValueError(f"Expected (C, h, w) features, got shape {feats.shape}")
        if aggregate not in AGGREGATES:
            raise ValueError(f"Expected aggregate to be one of {AGGREGATES}, got {aggregate!r}")
        norm = np.linalg.norm(feats, axis=0, keepdims=True)
        self._unit = feats / np.maximum(norm, 1e-6)
        self.image_size = (int(image_size[0]), int(image_size[1]))
        self.threshold = float(threshold)
        self.aggregate = aggregate
        self._scores: list[np.ndarray] = []

    def elimination_map(self, mask: np.ndarray) -> np.ndarray:
        """``E = (S + m) / 2`` of one ``(H, W)`` mask, on the ``(h, w)`` feature frame."""
        _, h, w = self._unit.shape
        m = cv2.resize(np.asarray(mask, dtype=np.float32), (w, h), interpolation=cv2.INTER_AREA)
        proto = (self._unit * m[None]).sum(axis=(1, 2))
        proto /= max(float(np.linalg.norm(proto)), 1e-6)
        sim = np.clip(np.tensordot(proto, self._unit, axes=1), 0.0, 1.0)
        return (sim + m) / 2.0

    def add(self, mask: np.ndarray, predicted_iou: float) -> None:
        """Register a generated mask and its predicted IoU (its score map ``E + clip(iou, 0, 1)``)."""
        self._scores.append(self.elimination_map(mask) + float(np.clip(predicted_iou, 0.0, 1.0)))

    def score(self, x: float, y: float) -> float:
        """The PEM score at image ``(x, y)`` (0 before any mask)."""
        if not self._scores:
            return 0.0
        side = self._scores[0].shape[0]
        r, c = cell_of_point(x, y, side, side, *self.image_size)
        values = [e[r, c] for e in self._scores]
        return float(np.mean(values) if self.aggregate == "mean" else np.max(values))

    def eliminated(self, x: float, y: float) -> bool:
        """Whether the candidate at image ``(x, y)`` is explained by the registered masks."""
        return self.score(x, y) > self.threshold


@dataclass
class AutoResult:
    """AoP-SAM's automatic output for one image.

    Attributes:
        candidates: ``(K, 2)`` sampled ``(x, y)`` candidates, most confident first.
        confidences: ``(K,)`` their confidences.
        confidence_map: The Prompt Confidence Map (``(M, M)`` over the image frame).
        prompts: ``(P, 2)`` the candidates actually decoded (not eliminated), in order.
        masks: The ``P`` generated ``(H, W)`` bool masks.
        scores: ``(P,)`` their predicted IoUs.
        map_seconds: Time of the confidence map (predictor forward).
        sample_seconds: Time of the coarse sampling.
        total_seconds: Time of the whole prompt generation and decoding.
    """

    candidates: np.ndarray
    confidences: np.ndarray
    confidence_map: np.ndarray = field(default_factory=lambda: np.zeros((0, 0), dtype=np.float32))
    prompts: np.ndarray = field(default_factory=lambda: np.zeros((0, 2), dtype=np.float32))
    masks: list[np.ndarray] = field(default_factory=list)
    scores: np.ndarray = field(default_factory=lambda: np.zeros(0, dtype=np.float32))
    map_seconds: float = 0.0
    sample_seconds: float = 0.0
    total_seconds: float = 0.0


def generate_masks(predictor: Any, backend: PromptableSegmenter, image: np.ndarray, embedding: Embedding,
                   config: ASFConfig | None = None) -> AutoResult:
    """Run AoP-SAM on one image: confidence map, sampling, then one positive prompt decoded at a time.

    Each prompt is decoded alone (``multimask=True``, the proposal with the highest predicted IoU
    kept, as SAM's automatic mask generator does per point), and filtered as described in the module
    docstring when ``config.filter``.

    Args:
        predictor: A :class:`~agents.aop.predictor.PromptPredictor`.
        backend: The backend (the predictor's).
        image: ``(H, W, 3)`` uint8 RGB.
        embedding: ``backend``'s embedding of ``image``.
        config: ASF settings.
    """
    config = config or ASFConfig()
    start = time.perf_counter()
    conf = predictor.confidence_map(image, backend, embedding)
    t_map = time.perf_counter()
    size = (int(image.shape[0]), int(image.shape[1]))
    candidates, confidences = sample_prompts(conf, size, config.threshold, config.smooth_sigma, config.spacing,
                                             config.max_prompts)
    t_sample = time.perf_counter()
    eliminator = PromptEliminator(frame_features(backend, embedding).numpy(), size, config.elimination_threshold,
                                  config.aggregate)
    prompts, masks, scores = [], [], []
    for x, y in candidates:
        if config.filter and eliminator.eliminated(float(x), float(y)):
            continue
        prediction = backend.decode(embedding, np.array([[x, y]], dtype=np.float32), np.array([1]), multimask=True)
        mask, score = prediction.mask(), float(prediction.scores[prediction.best])
        prompts.append((float(x), float(y)))
        masks.append(mask)
        scores.append(score)
        if config.filter:
            eliminator.add(mask, score)
    return AutoResult(candidates=candidates, confidences=confidences, confidence_map=conf,
                      prompts=np.asarray(prompts, dtype=np.float32).reshape(-1, 2), masks=masks,
                      scores=np.asarray(scores, dtype=np.float32), map_seconds=t_map - start,
                      sample_seconds=t_sample - t_map, total_seconds=time.perf_counter() - start)
