"""Segmentation metrics for interactive (click-based) and binary / saliency-style evaluation.

Pure numpy (no torch), in three families with their own consumers:

* :mod:`sam_gym.metrics.interactive`: IoU, Dice and the click metrics (NoC, failure rate, mIoU per
  click; RITM conventions), used by the env, the click simulator, evaluation and reporting;
* :mod:`sam_gym.metrics.saliency`: MAE, F-measure, E-measure, S-measure, weighted F-measure and
  BER (per image and pooled over a data set) of a prediction map (SOD, shadow and camouflage
  benchmarks), used by evaluation's task metrics;
* :mod:`sam_gym.metrics.matching`: greedy one-to-one IoU matching of many predicted masks to many
  ground-truth masks (scoring automatic mask generation, as the AoP-SAM benchmark does).

Conventions shared by every function: masks are ``(H, W)`` arrays indexed ``[row, col]``; binary
masks are ``bool`` (integer or float arrays whose values are all in ``{0, 1}`` are accepted too);
``void`` is an optional ``(H, W)`` binary mask of pixels excluded from every metric. Invalid user
input raises ``ValueError("Expected ..., got ...")``.

>>> import numpy as np
>>> from sam_gym.metrics import iou, noc
>>> iou(np.eye(2, dtype=bool), np.ones((2, 2), dtype=bool))
0.5
>>> noc([0.5, 0.8, 0.92], tau=0.9, max_clicks=20)
3
"""

from sam_gym.metrics.interactive import (
    dice,
    failure,
    failure_rate,
    iou,
    mean_noc,
    miou_per_click,
    noc,
    summarize_episodes,
)
from sam_gym.metrics.matching import greedy_iou_matching
from sam_gym.metrics.saliency import (
    BerCounts,
    ber,
    ber_counts,
    ber_from_totals,
    e_measure,
    f_beta,
    mae,
    max_f_beta,
    pooled_ber,
    s_measure,
    weighted_f_measure,
)

__all__ = [
    "BerCounts",
    "ber",
    "ber_counts",
    "ber_from_totals",
    "dice",
    "e_measure",
    "f_beta",
    "failure",
    "failure_rate",
    "greedy_iou_matching",
    "iou",
    "mae",
    "max_f_beta",
    "mean_noc",
    "miou_per_click",
    "noc",
    "pooled_ber",
    "s_measure",
    "summarize_episodes",
    "weighted_f_measure",
]
