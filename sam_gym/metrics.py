"""Segmentation metrics for interactive (click-based) and binary / saliency-style evaluation.

Pure numpy (no torch). Conventions shared by every function:

* Masks are ``(H, W)`` arrays indexed ``[row, col]``. Binary masks are ``bool`` (integer or float
  arrays whose values are all in ``{0, 1}`` are accepted too).
* Saliency-style predictions may be float maps with values in ``[0, 1]`` (``bool`` is accepted).
* ``void`` is an optional ``(H, W)`` binary mask of pixels excluded from every metric (GrabCut's
  128 band, VOC's 255 label). Metrics are computed on the non-void pixels only; a ``void`` that
  covers every pixel is an error.

Interactive-segmentation metrics (NoC, failure rate, mIoU per click) follow the conventions of
RITM (Sofiiuk et al., "Reviving Iterative Training with Mask Guidance for Interactive
Segmentation", 2021; ``isegm/inference/utils.py::compute_noc_metric``).

Invalid user input raises ``ValueError("Expected ..., got ...")``.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Any

import numpy as np
from numpy.typing import ArrayLike, NDArray

__all__ = [
    "ber",
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
    "summarize_episodes",
]

#: MATLAB's ``eps`` (``np.spacing(1)``), used where the reference implementations use it.
_EPS = float(np.spacing(1))

# --------------------------------------------------------------------------------------------
# Input validation helpers
# --------------------------------------------------------------------------------------------


def _as_2d(name: str, arr: ArrayLike) -> NDArray[Any]:
    a = np.asarray(arr)
    if a.ndim != 2:
        raise ValueError(f"Expected {name} to be a 2-D (H, W) array, got shape {a.shape}")
    if a.size == 0:
        raise ValueError(f"Expected {name} to be non-empty, got shape {a.shape}")
    if not (a.dtype == np.bool_ or np.issubdtype(a.dtype, np.integer) or np.issubdtype(a.dtype, np.floating)):
        raise ValueError(f"Expected {name} to have a bool, integer or float dtype, got {a.dtype}")
    return a


def _as_bool(name: str, arr: ArrayLike) -> NDArray[np.bool_]:
    a = _as_2d(name, arr)
    if a.dtype == np.bool_:
        return a
    if not np.all((a == 0) | (a == 1)):
        bad = a[(a != 0) & (a != 1)].ravel()[0]
        raise ValueError(
            f"Expected {name} to be a binary mask (bool, or values in {{0, 1}}), got a value {bad!r}"
        )
    return a.astype(bool)


def _as_unit_float(name: str, arr: ArrayLike) -> NDArray[np.float64]:
    a = _as_2d(name, arr)
    f = a.astype(np.float64)
    if a.dtype != np.bool_:
        if not np.all(np.isfinite(f)):
            raise ValueError(f"Expected {name} to contain only finite values, got NaN or inf")
        lo, hi = float(f.min()), float(f.max())
        if lo < 0.0 or hi > 1.0:
            raise ValueError(f"Expected {name} values in [0, 1], got range [{lo}, {hi}]")
    return f


def _valid_mask(shape: tuple[int, ...], void: ArrayLike | None) -> NDArray[np.bool_] | None:
    """Return the boolean mask of non-void pixels, or None when there is no void."""
    if void is None:
        return None
    v = _as_bool("void", void)
    if v.shape != shape:
        raise ValueError(f"Expected void to have shape {shape}, got {v.shape}")
    if v.all():
        raise ValueError("Expected at least one non-void pixel, got a void mask covering every pixel")
    return ~v


def _check_same_shape(pred: NDArray[Any], target: NDArray[Any]) -> None:
    if pred.shape != target.shape:
        raise ValueError(f"Expected pred and target of the same shape, got {pred.shape} and {target.shape}")


def _pixels(
    pred: ArrayLike, target: ArrayLike, void: ArrayLike | None, soft: bool
) -> tuple[NDArray[Any], NDArray[np.bool_]]:
    """Validate a (pred, binary target, void) triple and return the 1-D non-void pixels.

    ``pred`` is binary, or with ``soft`` a float map in ``[0, 1]``.
    """
    p = _as_unit_float("pred", pred) if soft else _as_bool("pred", pred)
    t = _as_bool("target", target)
    _check_same_shape(p, t)
    valid = _valid_mask(p.shape, void)
    if valid is None:
        return p.ravel(), t.ravel()
    return p[valid], t[valid]


def _check_threshold(threshold: object) -> float:
    if isinstance(threshold, bool) or not isinstance(threshold, (int, float, np.integer, np.floating)):
        raise ValueError(f"Expected threshold to be 'adaptive' or a float in [0, 1], got {threshold!r}")
    thr = float(threshold)
    if not 0.0 <= thr <= 1.0:
        raise ValueError(f"Expected threshold in [0, 1], got {thr}")
    return thr


def _resolve_threshold(p: NDArray[np.float64], threshold: str | float) -> float:
    if isinstance(threshold, str):
        if threshold != "adaptive":
            raise ValueError(f"Expected threshold to be 'adaptive' or a float in [0, 1], got {threshold!r}")
        return min(2.0 * float(p.mean()), 1.0)
    return _check_threshold(threshold)


def _check_tau(tau: float) -> float:
    if isinstance(tau, bool) or not isinstance(tau, (int, float, np.integer, np.floating)):
        raise ValueError(f"Expected tau to be a float in (0, 1], got {tau!r}")
    t = float(tau)
    if not 0.0 < t <= 1.0:
        raise ValueError(f"Expected tau in (0, 1], got {t}")
    return t


def _check_max_clicks(max_clicks: int) -> int:
    if isinstance(max_clicks, bool) or not isinstance(max_clicks, (int, np.integer)):
        raise ValueError(f"Expected max_clicks to be a positive int, got {max_clicks!r}")
    if max_clicks < 1:
        raise ValueError(f"Expected max_clicks >= 1, got {max_clicks}")
    return int(max_clicks)


def _episode(ious: Sequence[float] | ArrayLike, max_clicks: int) -> NDArray[np.float64]:
    """Validate one episode's IoU curve and truncate it to ``max_clicks`` entries."""
    try:
        a = np.asarray(ious, dtype=np.float64)
    except (TypeError, ValueError) as exc:
        raise ValueError(f"Expected ious to be a 1-D sequence of floats, got {ious!r}") from exc
    if a.ndim != 1:
        raise ValueError(f"Expected ious to be a 1-D sequence of floats, got shape {a.shape}")
    if a.size == 0:
        raise ValueError("Expected ious to hold at least one IoU (one per click), got an empty sequence")
    if not np.all(np.isfinite(a)) or a.min() < 0.0 or a.max() > 1.0:
        raise ValueError(f"Expected ious values in [0, 1], got {a.tolist()}")
    return a[:max_clicks]


def _episodes(list_of_ious: Sequence[Sequence[float]] | ArrayLike) -> list[Any]:
    if isinstance(list_of_ious, np.ndarray):
        if list_of_ious.ndim != 2:
            raise ValueError(
                f"Expected list_of_ious to be a sequence of IoU sequences, got an array of shape "
                f"{list_of_ious.shape}"
            )
        eps = list(list_of_ious)
    else:
        eps = list(list_of_ious)  # type: ignore[arg-type]
    if len(eps) == 0:
        raise ValueError("Expected at least one episode in list_of_ious, got an empty sequence")
    return eps


# --------------------------------------------------------------------------------------------
# Region overlap
# --------------------------------------------------------------------------------------------


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


# --------------------------------------------------------------------------------------------
# Interactive segmentation (click-based) metrics
# --------------------------------------------------------------------------------------------


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
    t = _check_tau(tau)
    m = _check_max_clicks(max_clicks)
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
    t = _check_tau(tau)
    m = _check_max_clicks(max_clicks)
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
    m = _check_max_clicks(max_clicks)
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
        t = _check_tau(tau)
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


# --------------------------------------------------------------------------------------------
# Saliency / binary-task metrics (SOD, shadow, camouflage)
# --------------------------------------------------------------------------------------------


def mae(pred: ArrayLike, target: ArrayLike, void: ArrayLike | None = None) -> float:
    """Mean absolute error between a [0, 1] prediction map and a binary ground truth.

    ``MAE = (1 / N) * sum_i |S_i - G_i|`` over the ``N`` non-void pixels.

    Reference: F. Perazzi et al., "Saliency filters: Contrast based filtering for salient region
    detection", CVPR 2012.

    Args:
        pred: Prediction, ``(H, W)`` float in ``[0, 1]`` or bool.
        target: Ground-truth binary mask, ``(H, W)``.
        void: Optional ``(H, W)`` binary mask of pixels to ignore.

    Returns:
        MAE in ``[0, 1]``.

    Raises:
        ValueError: On non-2-D, empty, out-of-range or mismatched inputs, or an all-void mask.
    """
    p, t = _pixels(pred, target, void, soft=True)
    return float(np.abs(p - t).mean())


def _f_from_counts(tp: NDArray[Any], n_pred: NDArray[Any], n_gt: int, beta2: float) -> NDArray[np.float64]:
    """Vectorized F-beta from counts; 1.0 when pred and GT are both empty, 0.0 when TP == 0."""
    tp = np.asarray(tp, dtype=np.float64)
    n_pred = np.asarray(n_pred, dtype=np.float64)
    with np.errstate(divide="ignore", invalid="ignore"):
        precision = np.where(n_pred > 0, tp / n_pred, 0.0)
        recall = tp / n_gt if n_gt > 0 else np.zeros_like(tp)
        f = np.where(tp > 0, (1.0 + beta2) * precision * recall / (beta2 * precision + recall), 0.0)
    both_empty = (n_pred == 0) & (n_gt == 0)
    return np.where(both_empty, 1.0, f)


def _check_beta2(beta2: float) -> float:
    if isinstance(beta2, bool) or not isinstance(beta2, (int, float, np.integer, np.floating)):
        raise ValueError(f"Expected beta2 to be a positive float, got {beta2!r}")
    b = float(beta2)
    if not (b > 0.0 and math.isfinite(b)):
        raise ValueError(f"Expected beta2 > 0, got {b}")
    return b


def f_beta(
    pred: ArrayLike,
    target: ArrayLike,
    beta2: float = 0.3,
    void: ArrayLike | None = None,
    threshold: str | float = "adaptive",
) -> float:
    """F-measure of a thresholded prediction map (adaptive F-measure by default).

    The map is binarized as ``B = pred >= thr``; then with ``TP = |B ∩ G|``,
    ``Precision = TP / |B|``, ``Recall = TP / |G|``::

        F_beta = (1 + beta2) * Precision * Recall / (beta2 * Precision + Recall)

    ``threshold="adaptive"`` uses ``thr = min(2 * mean(pred), 1)`` over non-void pixels (Achanta et
    al. 2009). As in the reference code, ``>=`` is used, so an all-zero map gets ``thr = 0`` and is
    binarized to all-foreground.

    Conventions: ``0.0`` when ``TP == 0``, except that an empty binarized prediction on an empty GT
    scores ``1.0`` (same as :func:`iou`; the SOD toolboxes return 0 there, but they rarely meet
    empty GTs).

    Reference: R. Achanta, S. Hemami, F. Estrada, S. Süsstrunk, "Frequency-tuned salient region
    detection", CVPR 2009 (``beta2 = 0.3``).

    Args:
        pred: Prediction, ``(H, W)`` float in ``[0, 1]`` or bool.
        target: Ground-truth binary mask, ``(H, W)``.
        beta2: ``beta**2`` (weight of precision), ``> 0``; 0.3 in the SOD literature.
        void: Optional ``(H, W)`` binary mask of pixels to ignore.
        threshold: ``"adaptive"`` or a fixed float threshold in ``[0, 1]``.

    Returns:
        F-beta in ``[0, 1]``.

    Raises:
        ValueError: On invalid arrays, ``beta2 <= 0`` or an invalid ``threshold``.
    """
    b = _check_beta2(beta2)
    p, t = _pixels(pred, target, void, soft=True)
    thr = _resolve_threshold(p, threshold)
    binary = p >= thr
    tp = np.count_nonzero(binary & t)
    return float(
        _f_from_counts(np.array(tp), np.array(np.count_nonzero(binary)), int(np.count_nonzero(t)), b)
    )


def max_f_beta(
    pred: ArrayLike, target: ArrayLike, beta2: float = 0.3, void: ArrayLike | None = None
) -> float:
    """Maximum F-measure over the 256 thresholds ``thr = k / 255``, ``k = 0..255``.

    ``maxF = max_k F_beta(pred >= k / 255)`` (see :func:`f_beta` for ``F_beta`` and its empty-mask
    conventions). Computed with one sort per class, ``O(N log N)``.

    Reference: Achanta et al., CVPR 2009; A. Borji et al., "Salient object detection: A benchmark",
    IEEE TIP 2015 (max F-measure over 256 thresholds).

    Args:
        pred: Prediction, ``(H, W)`` float in ``[0, 1]`` or bool.
        target: Ground-truth binary mask, ``(H, W)``.
        beta2: ``beta**2``, ``> 0``.
        void: Optional ``(H, W)`` binary mask of pixels to ignore.

    Returns:
        Max F-beta in ``[0, 1]``.

    Raises:
        ValueError: On invalid arrays or ``beta2 <= 0``.
    """
    b = _check_beta2(beta2)
    p, t = _pixels(pred, target, void, soft=True)
    thr = np.arange(256, dtype=np.float64) / 255.0
    fg = np.sort(p[t])
    bg = np.sort(p[~t])
    tp = fg.size - np.searchsorted(fg, thr, side="left")  # |{fg : p >= thr}|
    fp = bg.size - np.searchsorted(bg, thr, side="left")
    return float(_f_from_counts(tp, tp + fp, int(fg.size), b).max())


def e_measure(
    pred: ArrayLike, target: ArrayLike, void: ArrayLike | None = None, threshold: str | float = "adaptive"
) -> float:
    """Enhanced-alignment measure (E-measure), adaptive-threshold version.

    The map is binarized as ``FM = pred >= thr`` with ``thr = min(2 * mean(pred), 1)`` (or a fixed
    float ``threshold``). With ``mu_X`` the mean of ``X`` over the ``N`` non-void pixels::

        phi_FM = FM - mu_FM,   phi_GT = GT - mu_GT
        xi     = 2 * phi_GT * phi_FM / (phi_GT**2 + phi_FM**2 + eps)      (alignment matrix)
        phi    = (1 + xi)**2 / 4                                          (enhanced alignment)
        E      = sum(phi) / (N - 1 + eps)

    Special cases, exactly as in the reference MATLAB ``Emeasure.m``:

    * GT all background (``sum(GT) == 0``): ``phi = 1 - FM`` (only the agreeing background counts);
    * GT all foreground (``sum(~GT) == 0``): ``phi = FM``.

    ``eps`` is MATLAB's ``eps`` (2.22e-16). Because the denominator is ``N - 1``, a perfect
    prediction scores slightly above 1 (``N / (N - 1)``), as in the reference. With a single valid
    pixel (``N == 1``) the denominator would vanish, so ``N`` is used instead.

    Reference: D.-P. Fan, C. Gong, Y. Cao, B. Ren, M.-M. Cheng, A. Borji, "Enhanced-alignment
    Measure for Binary Foreground Map Evaluation", IJCAI 2018 (https://github.com/DengPingFan/E-measure).

    Args:
        pred: Prediction, ``(H, W)`` float in ``[0, 1]`` or bool.
        target: Ground-truth binary mask, ``(H, W)``.
        void: Optional ``(H, W)`` binary mask of pixels to ignore.
        threshold: ``"adaptive"`` (``min(2 * mean, 1)``) or a fixed float in ``[0, 1]``.

    Returns:
        E-measure, ``>= 0`` (about ``[0, 1]``).

    Raises:
        ValueError: On invalid arrays or an invalid ``threshold``.
    """
    p, t = _pixels(pred, target, void, soft=True)
    thr = _resolve_threshold(p, threshold)
    fm = (p >= thr).astype(np.float64)
    gt = t.astype(np.float64)
    n = fm.size
    n_fg = int(np.count_nonzero(t))
    if n_fg == 0:
        enhanced_sum = float((1.0 - fm).sum())
    elif n_fg == n:
        enhanced_sum = float(fm.sum())
    else:
        a_fm = fm - fm.mean()
        a_gt = gt - gt.mean()
        align = 2.0 * (a_gt * a_fm) / (a_gt * a_gt + a_fm * a_fm + _EPS)
        enhanced_sum = float((((align + 1.0) ** 2) / 4.0).sum())
    denom = (n - 1 + _EPS) if n > 1 else float(n)
    return enhanced_sum / denom


def ber(pred: ArrayLike, target: ArrayLike, void: ArrayLike | None = None, threshold: float = 0.5) -> float:
    """Balanced error rate, in percent (shadow-detection convention).

    With ``B = pred >= threshold``, ``Np = |G|``, ``Nn = |~G|``, ``TP = |B ∩ G|``,
    ``TN = |~B ∩ ~G|``::

        BER = 100 * (1 - 0.5 * (TP / Np + TN / Nn))

    When one class is absent from the (non-void) GT, the balanced error degenerates to the error
    rate of the present class: ``100 * (1 - TN / Nn)`` if ``Np == 0``, ``100 * (1 - TP / Np)`` if
    ``Nn == 0``. (Shadow benchmarks usually accumulate TP/TN/Np/Nn over a data set; this is the
    per-image value.)

    Reference: L. Vicente, L. Hou, C.-P. Yu, M. Hoai, D. Samaras, "Large-scale training of shadow
    detectors with noisily-annotated shadow examples", ECCV 2016.

    Args:
        pred: Prediction, ``(H, W)`` float in ``[0, 1]`` or bool.
        target: Ground-truth binary mask, ``(H, W)``.
        void: Optional ``(H, W)`` binary mask of pixels to ignore.
        threshold: Binarization threshold in ``[0, 1]`` (``pred >= threshold`` is positive).

    Returns:
        BER in ``[0, 100]`` (lower is better).

    Raises:
        ValueError: On invalid arrays or a threshold outside ``[0, 1]``.
    """
    thr = _check_threshold(threshold)
    p, t = _pixels(pred, target, void, soft=True)
    b = p >= thr
    n_pos = int(np.count_nonzero(t))
    n_neg = t.size - n_pos
    tp = int(np.count_nonzero(b & t))
    tn = int(np.count_nonzero(~b & ~t))
    if n_pos == 0:
        return 100.0 * (1.0 - tn / n_neg)
    if n_neg == 0:
        return 100.0 * (1.0 - tp / n_pos)
    return 100.0 * (1.0 - 0.5 * (tp / n_pos + tn / n_neg))


# --------------------------------------------------------------------------------------------
# Multi-mask matching
# --------------------------------------------------------------------------------------------


def _stack_masks(
    name: str, masks: Sequence[ArrayLike] | ArrayLike
) -> tuple[NDArray[np.bool_], tuple[int, ...] | None]:
    """Validate masks and return them flattened to ``(K, H*W)`` with their common ``(H, W)``."""
    items = list(masks)  # type: ignore[arg-type]
    if not items:
        return np.zeros((0, 0), dtype=bool), None
    arrs = [_as_bool(f"{name}[{i}]", m) for i, m in enumerate(items)]
    shape = arrs[0].shape
    for i, a in enumerate(arrs):
        if a.shape != shape:
            raise ValueError(f"Expected all {name} to have shape {shape}, got {a.shape} at index {i}")
    return np.stack(arrs).reshape(len(arrs), -1), shape


def _pairwise_iou(p: NDArray[np.bool_], g: NDArray[np.bool_]) -> NDArray[np.float64]:
    """(P, HW) x (G, HW) bool -> (P, G) IoU via one matrix product; empty-vs-empty IoU is 1."""
    # float32 counts are exact up to 2**24 pixels; fall back to float64 beyond that.
    dt = np.float32 if p.shape[1] <= 2**24 else np.float64
    pf = p.astype(dt)
    gf = g.astype(dt)
    inter = (pf @ gf.T).astype(np.float64)
    area_p = p.sum(axis=1, dtype=np.float64)
    area_g = g.sum(axis=1, dtype=np.float64)
    union = area_p[:, None] + area_g[None, :] - inter
    with np.errstate(divide="ignore", invalid="ignore"):
        return np.where(union > 0, inter / union, 1.0)


def greedy_iou_matching(
    pred_masks: Sequence[ArrayLike] | ArrayLike, gt_masks: Sequence[ArrayLike] | ArrayLike
) -> tuple[float, list[tuple[int, int, float]]]:
    """Greedy one-to-one matching of predicted masks to GT masks by IoU (multi-mask / AMG scoring).

    The pairwise IoU matrix ``M[i, j] = IoU(pred_i, gt_j)`` is computed with one matrix product on
    the flattened ``(P, H*W)`` and ``(G, H*W)`` masks. Then the globally highest-IoU pair whose pred
    and GT are both unmatched is taken, repeatedly (ties: lower pred index, then lower GT index).
    Each GT and each pred is matched at most once; pairs with IoU 0 are never matched. The score is::

        mIoU = (1 / G) * sum_j IoU(matched pred of gt_j, gt_j)     (0 for an unmatched GT)

    This differs from the per-GT argmax ("best pred for each GT", which may reuse a pred).

    Reference: greedy matching used to score automatic mask generation, e.g. AoP-SAM (
    "AoP-SAM: Automation of Prompts for Efficient Segmentation", AAAI 2025) and SAM-AMG evaluations.

    Args:
        pred_masks: ``P >= 0`` binary masks of the same shape ``(H, W)`` (list or ``(P, H, W)`` array).
        gt_masks: ``G >= 1`` binary masks of that shape.

    Returns:
        ``(mean_iou_over_gts, matches)`` where ``matches`` is a list of ``(pred_idx, gt_idx, iou)``
        in the order they were chosen (decreasing IoU).

    Raises:
        ValueError: On no GT masks, non-binary or non-2-D masks, or mismatched shapes.
    """
    g, gt_shape = _stack_masks("gt_masks", gt_masks)
    if gt_shape is None:
        raise ValueError("Expected at least one mask in gt_masks, got an empty sequence")
    p, pred_shape = _stack_masks("pred_masks", pred_masks)
    if pred_shape is None:
        return 0.0, []
    if pred_shape != gt_shape:
        raise ValueError(f"Expected pred_masks of the GT shape {gt_shape}, got {pred_shape}")

    m = _pairwise_iou(p, g)
    n_p, n_g = m.shape
    order = np.argsort(-m, axis=None, kind="stable")  # row-major tie-break: pred index, then gt index
    pred_used = np.zeros(n_p, dtype=bool)
    gt_used = np.zeros(n_g, dtype=bool)
    best = np.zeros(n_g, dtype=np.float64)
    matches: list[tuple[int, int, float]] = []
    for flat in order:
        i, j = divmod(int(flat), n_g)
        v = float(m[i, j])
        if v <= 0.0:
            break
        if pred_used[i] or gt_used[j]:
            continue
        pred_used[i] = gt_used[j] = True
        best[j] = v
        matches.append((i, j, v))
        if len(matches) == min(n_p, n_g):
            break
    return float(best.mean()), matches
