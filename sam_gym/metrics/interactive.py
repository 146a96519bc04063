"""Interactive-segmentation (click-based) metrics: region overlap and the per-click IoU curve.

Masks are ``(H, W)`` arrays indexed ``[row, col]``; binary masks are ``bool`` (integer or float
arrays whose values are all in ``{0, 1}`` are accepted too). ``void`` is an optional ``(H, W)``
binary mask of pixels excluded from every metric (GrabCut's 128 band, VOC's 255 label); a ``void``
that covers every pixel is an error.

NoC, failure rate and mIoU per click follow RITM (Sofiiuk et al., "Reviving Iterative Training with
Mask Guidance for Interactive Segmentation", 2021; ``isegm/inference/utils.py::compute_noc_metric``).
Invalid user input raises ``ValueError("Expected ..., got ...")``.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np
from numpy.typing import ArrayLike, NDArray

from sam_gym.metrics._validate import _check_number, _episode, _episodes, _pixels

__all__ = [
    "dice",
    "failure",
    "failure_rate",
    "iou",
    "mean_noc",
    "miou_per_click",
    "noc",
    "summarize_episodes",
]


def iou(pred: ArrayLike, target: ArrayLike, void: ArrayLike | None = None) -> float:
    """Intersection over union (Jaccard index) of two binary masks.

    ``IoU = |P ∩ G| / |P ∪ G|``, counted over non-void pixels only.

    Reference: P. Jaccard, "The distribution of the flora in the alpine zone", New Phytologist, 1912;
    M. Everingham et al., "The PASCAL Visual Object Classes (VOC) Challenge", IJCV 2010.

    Args:
        pred: Predicted binary mask, shape ``(H, W)``.
        target: Ground-truth binary mask, shape ``(H, W)``.
        void: Optional ``(H, W)`` binary mask of pixels to ignore.

    Returns:
        IoU in ``[0, 1]``. When both masks are empty (on the non-void pixels) the union is empty and
        the prediction is perfect, so ``1.0`` is returned.

    Raises:
        ValueError: On non-2-D, empty, non-binary or mismatched inputs, or an all-void mask.
    """
    p, t = _pixels(pred, target, void, soft=False)
    inter = int(np.count_nonzero(p & t))
    union = int(np.count_nonzero(p | t))
    return 1.0 if union == 0 else inter / union


def dice(pred: ArrayLike, target: ArrayLike, void: ArrayLike | None = None) -> float:
    """Dice / Sørensen coefficient (F1 score) of two binary masks.

    ``Dice = 2 |P ∩ G| / (|P| + |G|) = 2 IoU / (1 + IoU)``, counted over non-void pixels only.

    Reference: L. R. Dice, "Measures of the amount of ecologic association between species",
    Ecology, 1945.

    Args:
        pred: Predicted binary mask, shape ``(H, W)``.
        target: Ground-truth binary mask, shape ``(H, W)``.
        void: Optional ``(H, W)`` binary mask of pixels to ignore.

    Returns:
        Dice in ``[0, 1]``; ``1.0`` when both masks are empty (same convention as :func:`iou`).

    Raises:
        ValueError: On non-2-D, empty, non-binary or mismatched inputs, or an all-void mask.
    """
    p, t = _pixels(pred, target, void, soft=False)
    inter = int(np.count_nonzero(p & t))
    total = int(np.count_nonzero(p)) + int(np.count_nonzero(t))
    return 1.0 if total == 0 else 2.0 * inter / total


def noc(ious: Sequence[float] | ArrayLike, tau: float, max_clicks: int) -> int:
    """Number of clicks needed to reach IoU >= ``tau`` (NoC@tau) for one episode.

    ``NoC = min{k in 1..max_clicks : IoU_k >= tau}``, or ``max_clicks`` when no such ``k`` exists.

    ``ious[k - 1]`` is the IoU after click ``k``. The sequence may be shorter than ``max_clicks``
    (an episode that stopped early on success); entries beyond ``max_clicks`` are ignored.

    Reference: RITM, ``isegm/inference/utils.py::compute_noc_metric`` (Sofiiuk et al., 2021);
    the metric was introduced by Xu et al., "Deep Interactive Object Selection", CVPR 2016.

    Args:
        ious: IoU after each click, 1-D, values in ``[0, 1]``.
        tau: IoU threshold in ``(0, 1]``.
        max_clicks: Click budget, ``>= 1``.

    Returns:
        The 1-based index of the first click whose IoU is ``>= tau``, else ``max_clicks``.

    Raises:
        ValueError: On an empty / non-1-D ``ious``, IoUs outside ``[0, 1]``, ``tau`` outside ``(0, 1]``
            or ``max_clicks < 1``.
    """
    t = _check_number("tau", tau, low=0, high=1, low_open=True)
    m = int(_check_number("max_clicks", max_clicks, low=1, integer=True, kind="a positive int"))
    a = _episode(ious, m)
    hits = np.flatnonzero(a >= t)
    return int(hits[0]) + 1 if hits.size else m


def failure(ious: Sequence[float] | ArrayLike, tau: float, max_clicks: int, strict: bool = True) -> bool:
    """Whether an episode failed to reach IoU >= ``tau`` within ``max_clicks`` clicks.

    Two conventions:

    * ``strict=True`` (RITM / Schön et al.): failure iff ``NoC >= max_clicks``. A success reached
      exactly on the last allowed click therefore **counts as a failure** (RITM's
      ``over_max = (noc >= max_clicks)``).
    * ``strict=False``: failure iff no IoU among the first ``max_clicks`` is ``>= tau`` (a success on
      click ``max_clicks`` is a success).

    Reference: RITM, ``isegm/inference/utils.py::compute_noc_metric`` (Sofiiuk et al., 2021).

    Args:
        ious: IoU after each click, 1-D, values in ``[0, 1]`` (see :func:`noc`).
        tau: IoU threshold in ``(0, 1]``.
        max_clicks: Click budget, ``>= 1``.
        strict: ``True`` for the RITM convention, ``False`` for "not reached within the budget".

    Returns:
        ``True`` when the episode counts as a failure.

    Raises:
        ValueError: On invalid ``ious``, ``tau`` or ``max_clicks`` (see :func:`noc`).
    """
    t = _check_number("tau", tau, low=0, high=1, low_open=True)
    m = int(_check_number("max_clicks", max_clicks, low=1, integer=True, kind="a positive int"))
    a = _episode(ious, m)
    if strict:
        return noc(a, t, m) >= m
    return not bool(np.any(a >= t))


def failure_rate(
    list_of_ious: Sequence[Sequence[float]] | ArrayLike, tau: float, max_clicks: int, strict: bool = True
) -> float:
    """Fraction of episodes that are failures (see :func:`failure` for ``strict``).

    ``FR = (1 / E) * sum_e failure(e)``; a fraction in ``[0, 1]`` (multiply by 100 for percent).

    Reference: RITM ``compute_noc_metric`` reports the count ``sum_e [NoC_e >= max_clicks]``
    (Sofiiuk et al., 2021); this returns it divided by the number of episodes.

    Args:
        list_of_ious: One IoU-per-click sequence per episode.
        tau: IoU threshold in ``(0, 1]``.
        max_clicks: Click budget, ``>= 1``.
        strict: ``True`` for the RITM convention (success on the last click is a failure).

    Returns:
        Failure rate in ``[0, 1]``.

    Raises:
        ValueError: On an empty episode list or any invalid episode / parameter.
    """
    eps = _episodes(list_of_ious)
    return float(np.mean([failure(e, tau, max_clicks, strict=strict) for e in eps]))


def mean_noc(list_of_ious: Sequence[Sequence[float]] | ArrayLike, tau: float, max_clicks: int) -> float:
    """Mean number of clicks to reach IoU >= ``tau`` over episodes (mNoC@tau).

    ``mNoC = (1 / E) * sum_e NoC_e``, with :func:`noc` capping failures at ``max_clicks``.

    Reference: RITM ``compute_noc_metric`` (Sofiiuk et al., 2021).

    Args:
        list_of_ious: One IoU-per-click sequence per episode.
        tau: IoU threshold in ``(0, 1]``.
        max_clicks: Click budget, ``>= 1``.

    Returns:
        Mean NoC in ``[1, max_clicks]``.

    Raises:
        ValueError: On an empty episode list or any invalid episode / parameter.
    """
    eps = _episodes(list_of_ious)
    return float(np.mean([noc(e, tau, max_clicks) for e in eps]))


def miou_per_click(
    list_of_ious: Sequence[Sequence[float]] | ArrayLike, max_clicks: int
) -> NDArray[np.float64]:
    """Mean IoU after each click, over episodes (the "mIoU vs. #clicks" curve).

    ``mIoU[k] = (1 / E) * sum_e IoU_e(min(k, len_e))`` for ``k = 1..max_clicks``: an episode that
    stopped early (shorter than ``max_clicks``) keeps its last IoU for the remaining clicks, as if
    the mask were left unchanged. Entries beyond ``max_clicks`` are ignored.

    Reference: RITM plots / ``all_ious.mean(axis=0)`` (Sofiiuk et al., 2021).

    Args:
        list_of_ious: One IoU-per-click sequence per episode.
        max_clicks: Number of clicks of the curve, ``>= 1``.

    Returns:
        Float64 array of shape ``(max_clicks,)``; element ``k - 1`` is the mean IoU after click ``k``.

    Raises:
        ValueError: On an empty episode list or any invalid episode / parameter.
    """
    m = int(_check_number("max_clicks", max_clicks, low=1, integer=True, kind="a positive int"))
    eps = _episodes(list_of_ious)
    out = np.empty((len(eps), m), dtype=np.float64)
    for i, e in enumerate(eps):
        a = _episode(e, m)
        out[i, : a.size] = a
        out[i, a.size :] = a[-1]
    return out.mean(axis=0)


def summarize_episodes(
    list_of_ious: Sequence[Sequence[float]] | ArrayLike,
    max_clicks: int,
    taus: Sequence[float] = (0.85, 0.90),
    strict: bool = True,
) -> dict[str, Any]:
    """Summarize interactive-segmentation episodes: mNoC, failure rate and mIoU curve.

    For each ``tau`` in ``taus``, with ``p = round(tau * 100)``:

    * ``f"noc@{p}"``: :func:`mean_noc` (float);
    * ``f"fr@{p}"``: :func:`failure_rate` (fraction in ``[0, 1]``, RITM convention by default).

    Plus ``"miou_per_click"`` (list of ``max_clicks`` floats, see :func:`miou_per_click`) and
    ``"n_episodes"`` (int).

    Reference: RITM ``compute_noc_metric`` (Sofiiuk et al., 2021).

    Args:
        list_of_ious: One IoU-per-click sequence per episode.
        max_clicks: Click budget, ``>= 1``.
        taus: IoU thresholds in ``(0, 1]``.
        strict: Failure convention passed to :func:`failure_rate`.

    Returns:
        A JSON-serializable dict, e.g. ``{"noc@85": ..., "noc@90": ..., "fr@85": ..., "fr@90": ...,
        "miou_per_click": [...], "n_episodes": ...}``.

    Raises:
        ValueError: On invalid inputs, an empty ``taus``, or two taus with the same key.
    """
    eps = _episodes(list_of_ious)
    taus = list(taus)
    if not taus:
        raise ValueError("Expected at least one tau in taus, got an empty sequence")
    out: dict[str, Any] = {}
    for tau in taus:
        t = _check_number("tau", tau, low=0, high=1, low_open=True)
        p = round(t * 100)
        if f"noc@{p}" in out:
            raise ValueError(f"Expected taus with distinct round(tau * 100), got {taus}")
        out[f"noc@{p}"] = mean_noc(eps, t, max_clicks)
    for tau in taus:
        t = float(tau)
        out[f"fr@{round(t * 100)}"] = failure_rate(eps, t, max_clicks, strict=strict)
    out["miou_per_click"] = [float(x) for x in miou_per_click(eps, max_clicks)]
    out["n_episodes"] = len(eps)
    return out
