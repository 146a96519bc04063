"""Saliency / binary-task metrics: MAE, F-measure, E-measure, S-measure, weighted F-measure, BER.

These are the metrics of the salient-object, camouflaged-object and shadow detection benchmarks.
Predictions may be float maps with values in ``[0, 1]`` (``bool`` is accepted); targets are binary
``(H, W)`` masks indexed ``[row, col]``; ``void`` is an optional ``(H, W)`` binary mask of pixels
excluded from every metric. Invalid user input raises ``ValueError("Expected ..., got ...")``.

**Binary and continuous maps.** A prediction whose values are all 0 or 1 (a ``bool`` mask, or an
integer or float array of zeros and ones) is a *binary* map; one with any value strictly between 0
and 1 is a *continuous* map. The metrics that binarize (:func:`f_beta`, :func:`max_f_beta`,
:func:`e_measure`, with their default ``threshold="adaptive"``) use a binary map as it is and apply
the adaptive threshold ``min(2 * mean, 1)`` to continuous maps only. The two rules agree on every
binary map but the empty one (all zeros), which the adaptive threshold ``2 * 0 = 0`` turns into an
all-foreground prediction: as a binary map it stays empty, so its F-beta on a non-empty ground truth
is 0 (not the all-foreground score). The E-measure of any constant map on a two-class ground truth
is ``N / (4 (N - 1))``, about 0.25, by its definition (a constant map has no deviation to align), so
there the rule changes the E-measure only on one-class ground truths. This rule is the only
difference from the SOD toolboxes (PySODMetrics, the MATLAB evaluation code), which threshold every
map; ``tests/test_metrics_reference.py`` checks every formula here against PySODMetrics 1.6.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from typing import Any, NamedTuple

import numpy as np
from numpy.typing import ArrayLike, NDArray

from sam_gym.metrics._validate import _as_bool, _as_unit_float, _check_number, _check_same_shape, _pixels, _valid_mask

__all__ = [
    "BerCounts",
    "ber",
    "ber_counts",
    "ber_from_totals",
    "e_measure",
    "f_beta",
    "mae",
    "max_f_beta",
    "pooled_ber",
    "s_measure",
    "weighted_f_measure",
]

#: MATLAB's ``eps`` (``np.spacing(1)``), used where the reference implementations use it.
_EPS = float(np.spacing(1))
_ADAPTIVE = "'adaptive' or a float in [0, 1]"


def _is_binary(p: NDArray[np.float64]) -> bool:
    """Whether every value of the map is 0 or 1 (a binary map, see the module docstring)."""
    return bool(np.all((p == 0.0) | (p == 1.0)))


def _resolve_threshold(p: NDArray[np.float64], threshold: str | float) -> float:
    """The binarization threshold: a fixed float, or ``"adaptive"``.

    Adaptive: ``1`` for a binary map (``p >= 1`` is the map itself), else ``min(2 * mean(p), 1)``.
    """
    if isinstance(threshold, str):
        if threshold != "adaptive":
            raise ValueError(f"Expected threshold to be {_ADAPTIVE}, got {threshold!r}")
        return 1.0 if _is_binary(p) else min(2.0 * float(p.mean()), 1.0)
    return _check_number("threshold", threshold, low=0, high=1, kind=_ADAPTIVE)


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

    ``threshold="adaptive"`` uses a binary map (all values 0 or 1) as it is, and binarizes a
    continuous map at ``thr = min(2 * mean(pred), 1)`` over non-void pixels (Achanta et al. 2009;
    ``>=`` as in the reference code). An empty binary prediction therefore stays empty and scores 0
    on a non-empty GT, where the SOD toolboxes, thresholding it at ``2 * 0 = 0``, would score an
    all-foreground prediction (see the module docstring). A fixed float ``threshold`` is applied to
    every map as given.

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
        threshold: ``"adaptive"`` (binary maps as they are, continuous maps at ``min(2 * mean, 1)``)
            or a fixed float threshold in ``[0, 1]``.

    Returns:
        F-beta in ``[0, 1]``.

    Raises:
        ValueError: On invalid arrays, ``beta2 <= 0`` or an invalid ``threshold``.
    """
    b = _check_number("beta2", beta2, low=0, low_open=True, high_open=True, kind="a positive float")
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
    conventions). Computed with one sort per class, ``O(N log N)``. This is the per-image maximum;
    the SOD toolboxes' "maxF" is the maximum of the data set's mean F curve. A binary map (all
    values 0 or 1) is used as it is: its maxF is its F-beta (no threshold, so ``k = 0`` cannot turn
    it into an all-foreground prediction).

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
    b = _check_number("beta2", beta2, low=0, low_open=True, high_open=True, kind="a positive float")
    p, t = _pixels(pred, target, void, soft=True)
    if _is_binary(p):
        thr = np.array([1.0])
    else:
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

    A binary map (all values 0 or 1) is ``FM`` as it is; a continuous map is binarized as
    ``FM = pred >= thr`` with ``thr = min(2 * mean(pred), 1)`` (a fixed float ``threshold`` is
    applied to every map). With ``mu_X`` the mean of ``X`` over the ``N`` non-void pixels::

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
        threshold: ``"adaptive"`` (binary maps as they are, continuous maps at ``min(2 * mean, 1)``)
            or a fixed float in ``[0, 1]``.

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


class BerCounts(NamedTuple):
    """The pixel counts a balanced error rate is computed from (non-void pixels).

    Attributes:
        tp: Ground-truth foreground pixels predicted foreground.
        tn: Ground-truth background pixels predicted background.
        n_pos: Ground-truth foreground pixels (``Np``).
        n_neg: Ground-truth background pixels (``Nn``).
    """

    tp: int
    tn: int
    n_pos: int
    n_neg: int


def ber_counts(
    pred: ArrayLike, target: ArrayLike, void: ArrayLike | None = None, threshold: float = 0.5
) -> BerCounts:
    """``TP``, ``TN``, ``Np``, ``Nn`` of one image, with ``B = pred >= threshold`` (see :func:`ber`).

    Sum them over a data set with :func:`pooled_ber` for the data-set BER.

    Args:
        pred: Prediction, ``(H, W)`` float in ``[0, 1]`` or bool.
        target: Ground-truth binary mask, ``(H, W)``.
        void: Optional ``(H, W)`` binary mask of pixels to ignore.
        threshold: Binarization threshold in ``[0, 1]`` (``pred >= threshold`` is positive).

    Returns:
        The :class:`BerCounts` (plain ``int`` fields).

    Raises:
        ValueError: On invalid arrays or a threshold outside ``[0, 1]``.
    """
    thr = _check_number("threshold", threshold, low=0, high=1)
    p, t = _pixels(pred, target, void, soft=True)
    b = p >= thr
    n_pos = int(np.count_nonzero(t))
    return BerCounts(
        tp=int(np.count_nonzero(b & t)),
        tn=int(np.count_nonzero(~b & ~t)),
        n_pos=n_pos,
        n_neg=int(t.size) - n_pos,
    )


def _is_count(v: object) -> bool:
    """A non-negative whole number (an ``int``, or a float such as ``9.0``), not a ``bool``."""
    if isinstance(v, bool) or not isinstance(v, (int, np.integer, float, np.floating)):
        return False
    number = float(v)
    return bool(np.isfinite(number)) and number >= 0 and number == int(number)


def _check_counts(i: int, c: object) -> BerCounts:
    values: tuple[Any, ...] = tuple(c) if isinstance(c, Iterable) else ()
    if len(values) != 4 or not all(_is_count(v) for v in values):
        raise ValueError(f"Expected counts[{i}] to be 4 non-negative integers (tp, tn, n_pos, n_neg), got {c!r}")
    tp, tn, n_pos, n_neg = (int(v) for v in values)
    if tp > n_pos or tn > n_neg:
        raise ValueError(f"Expected counts[{i}] with tp <= n_pos and tn <= n_neg, got {c!r}")
    return BerCounts(tp, tn, n_pos, n_neg)


def pooled_ber(counts: Iterable[BerCounts | Sequence[int]]) -> float:
    """Data-set balanced error rate, in percent: the counts of every image summed, then one BER.

    ``BER = 100 * (1 - 0.5 * (sum TP / sum Np + sum TN / sum Nn))``, the shadow-detection
    benchmarks' protocol (Vicente et al. 2016; the SBU / UCF / ISTD evaluation code accumulates
    ``TP``, ``TN``, ``Np``, ``Nn`` over the test set). It weights every pixel equally, so it is not
    the mean of the per-image BERs; on one image it equals :func:`ber`. When one class is absent from
    every ground truth, the rate of the present class is used (as in :func:`ber`).

    Args:
        counts: One :class:`BerCounts` (or ``(tp, tn, n_pos, n_neg)`` sequence) per image, from
            :func:`ber_counts`.

    Returns:
        BER in ``[0, 100]`` (lower is better).

    Raises:
        ValueError: On no counts, a malformed entry, or no pixel at all.

    >>> round(pooled_ber([BerCounts(tp=9, tn=90, n_pos=10, n_neg=90), BerCounts(tp=0, tn=10, n_pos=90, n_neg=10)]), 6)
    45.5
    """
    checked = [_check_counts(i, c) for i, c in enumerate(counts)]
    if not checked:
        raise ValueError("Expected at least one image's counts, got none")
    tp, tn, n_pos, n_neg = (sum(c[k] for c in checked) for k in range(4))
    if n_pos == 0 and n_neg == 0:
        raise ValueError("Expected counts with at least one pixel, got n_pos = n_neg = 0")
    return float(ber_from_totals(tp, tn, n_pos, n_neg))


def ber_from_totals(tp: ArrayLike, tn: ArrayLike, n_pos: ArrayLike, n_neg: ArrayLike) -> NDArray[np.float64]:
    """BER in percent of pixel totals, elementwise over arrays (e.g. bootstrap resamples of a data set).

    ``100 * (1 - 0.5 * (tp / n_pos + tn / n_neg))``; where one class has no pixel, the rate of the
    other alone (as :func:`ber`). Totals may be scaled alike (means instead of sums give the same BER).
    The caller guarantees ``n_pos + n_neg > 0``.
    """
    tp, tn, n_pos, n_neg = (np.asarray(v, dtype=np.float64) for v in (tp, tn, n_pos, n_neg))
    with np.errstate(divide="ignore", invalid="ignore"):
        pos = tp / n_pos
        neg = tn / n_neg
    both = 1.0 - 0.5 * (pos + neg)
    return 100.0 * np.where(n_pos == 0, 1.0 - neg, np.where(n_neg == 0, 1.0 - pos, both))


def ber(pred: ArrayLike, target: ArrayLike, void: ArrayLike | None = None, threshold: float = 0.5) -> float:
    """Balanced error rate of one image, in percent (shadow-detection convention).

    With ``B = pred >= threshold``, ``Np = |G|``, ``Nn = |~G|``, ``TP = |B ∩ G|``,
    ``TN = |~B ∩ ~G|``::

        BER = 100 * (1 - 0.5 * (TP / Np + TN / Nn))

    When one class is absent from the (non-void) GT, the balanced error degenerates to the error
    rate of the present class: ``100 * (1 - TN / Nn)`` if ``Np == 0``, ``100 * (1 - TP / Np)`` if
    ``Nn == 0``. This is the per-image value; shadow benchmarks report the data-set BER, which sums
    the counts over the images first: :func:`ber_counts` and :func:`pooled_ber`.

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
    return pooled_ber([ber_counts(pred, target, void, threshold)])


def _map_and_valid(
    pred: ArrayLike, target: ArrayLike, void: ArrayLike | None
) -> tuple[NDArray[np.float64], NDArray[np.bool_], NDArray[np.bool_]]:
    """Validate a (pred map, binary target, void) triple, keeping the 2-D layout; ``valid`` = not void."""
    p = _as_unit_float("pred", pred)
    t = _as_bool("target", target)
    _check_same_shape(p, t)
    valid = _valid_mask(p.shape, void)
    return p, t, np.ones(p.shape, dtype=bool) if valid is None else valid


def _object_similarity(x: NDArray[np.float64]) -> float:
    """``2 * mean / (mean^2 + 1 + std + eps)`` (``std`` with ``ddof = 1``; 0 for one pixel)."""
    mean = float(x.mean())
    std = float(np.std(x, ddof=1)) if x.size > 1 else 0.0
    return 2.0 * mean / (mean * mean + 1.0 + std + _EPS)


def _ssim(x: NDArray[np.float64], y: NDArray[np.float64]) -> float:
    """The S-measure's SSIM of one region (pixels as 1-D arrays): one global window, no constants."""
    n = x.size
    mx, my = float(x.mean()), float(y.mean())
    dx, dy = x - mx, y - my
    var_x = float((dx * dx).sum()) / (n - 1 + _EPS)
    var_y = float((dy * dy).sum()) / (n - 1 + _EPS)
    cov = float((dx * dy).sum()) / (n - 1 + _EPS)
    num = 4.0 * mx * my * cov
    den = (mx * mx + my * my) * (var_x + var_y)
    if num != 0.0:
        return num / (den + _EPS)
    return 1.0 if den == 0.0 else 0.0


def s_measure(pred: ArrayLike, target: ArrayLike, void: ArrayLike | None = None, alpha: float = 0.5) -> float:
    """Structure measure (S-measure): object-aware and region-aware structural similarity.

    With ``y = mean(G)`` over the non-void pixels:

    * ``y == 0``: ``S = 1 - mean(pred)``; ``y == 1``: ``S = mean(pred)``;
    * otherwise ``S = max(0, alpha * S_o + (1 - alpha) * S_r)``, where

      - ``S_o = y * O(pred[G]) + (1 - y) * O((1 - pred)[~G])`` with
        ``O(x) = 2 * mean(x) / (mean(x)^2 + 1 + std(x) + eps)`` (``std`` with ``ddof = 1``);
      - ``S_r``: the image is cut into four blocks at the GT foreground's centroid
        ``(row, col) = round(mean of the foreground pixels' (row, col)) + 1`` (the +1 of the MATLAB
        ``1:X`` ranges: the top-left block holds rows ``0..row-1`` and columns ``0..col-1``), and
        ``S_r = sum_k w_k * SSIM_k`` with ``w_k`` the block's share of the pixels and
        ``SSIM_k = 4 mu_x mu_y s_xy / ((mu_x^2 + mu_y^2) (s_x^2 + s_y^2) + eps)`` over the block
        (variances over ``N - 1 + eps``; 1 when numerator and denominator are 0, 0 when only the
        numerator is).

    This is PySODMetrics' ``Smeasure`` (and the authors' MATLAB ``StructureMeasure.m``). A block
    with no pixel (the centroid on the last row or column) has weight 0 and is skipped, where the
    reference code returns NaN. With ``void``, every mean, deviation and block share is taken over
    the non-void pixels only, and the centroid over the non-void foreground; without void pixels
    this is the reference computation. No threshold is involved, so binary and continuous maps are
    scored alike.

    Reference: D.-P. Fan, M.-M. Cheng, Y. Liu, T. Li, A. Borji, "Structure-measure: A new way to
    evaluate foreground maps", ICCV 2017 (``alpha = 0.5``).

    Args:
        pred: Prediction, ``(H, W)`` float in ``[0, 1]`` or bool, indexed ``[row, col]``.
        target: Ground-truth binary mask, ``(H, W)``.
        void: Optional ``(H, W)`` binary mask of pixels to ignore.
        alpha: Weight of the object term, in ``[0, 1]``.

    Returns:
        S-measure in ``[0, 1]`` (higher is better).

    Raises:
        ValueError: On invalid arrays or ``alpha`` outside ``[0, 1]``.
    """
    a = _check_number("alpha", alpha, low=0, high=1)
    p, t, valid = _map_and_valid(pred, target, void)
    fg, bg = t & valid, ~t & valid
    n_valid = int(np.count_nonzero(valid))
    y = np.count_nonzero(fg) / n_valid
    if y == 0.0:
        return 1.0 - float(p[valid].mean())
    if y == 1.0:
        return float(p[valid].mean())
    object_score = y * _object_similarity(p[fg]) + (1.0 - y) * _object_similarity(1.0 - p[bg])
    rows, cols = np.nonzero(fg)
    cy, cx = int(np.round(rows.mean())) + 1, int(np.round(cols.mean())) + 1
    gt = t.astype(np.float64)
    region_score = 0.0
    for r in (slice(0, cy), slice(cy, None)):
        for c in (slice(0, cx), slice(cx, None)):
            block = valid[r, c]
            n = int(np.count_nonzero(block))
            if n:
                region_score += n / n_valid * _ssim(p[r, c][block], gt[r, c][block])
    return max(0.0, a * object_score + (1.0 - a) * region_score)


def _gaussian_7x7_sigma5() -> NDArray[np.float64]:
    """MATLAB's ``fspecial('gaussian', 7, 5)``: a normalized 7x7 Gaussian kernel, sigma 5."""
    y, x = np.ogrid[-3:4, -3:4]
    h = np.exp(-(x * x + y * y) / (2.0 * 5.0 * 5.0))
    return h / h.sum()


def weighted_f_measure(
    pred: ArrayLike, target: ArrayLike, void: ArrayLike | None = None, beta2: float = 1.0
) -> float:
    """Weighted F-measure: precision and recall with pixel dependency and pixel importance.

    With ``E = |pred - G|``, following the authors' ``WFb.m`` step by step:

    1. *dependency*: ``Et`` is ``E``, except that every background pixel takes the error of its
       nearest foreground pixel (Euclidean distance transform); ``EA = Et * K`` (``K`` the 7x7
       Gaussian of sigma 5, zero padding); on foreground pixels the error is ``min(E, EA)``, on
       background pixels it stays ``E``;
    2. *importance*: background errors are weighted by ``B = 2 - exp(log(0.5) / 5 * d)`` (``d`` the
       distance to the foreground), foreground errors by 1, giving ``Ew``;
    3. ``TPw = |G| - sum(Ew[G])``, ``FPw = sum(Ew[~G])``, ``R = 1 - mean(Ew[G])``,
       ``P = TPw / (TPw + FPw + eps)``, ``F = (1 + beta2) R P / (R + beta2 P + eps)``.

    0.0 when the GT has no foreground pixel (as in PySODMetrics' ``WeightedFmeasure``, which this
    matches). With ``void``, a void pixel has no error (``E = 0``) and is left out of the sums of
    step 3; distances and neighbourhoods still use the whole target. No threshold is involved, so
    binary and continuous maps are scored alike.

    Reference: R. Margolin, L. Zelnik-Manor, A. Tal, "How to evaluate foreground maps?", CVPR 2014
    (``beta2 = 1``).

    Args:
        pred: Prediction, ``(H, W)`` float in ``[0, 1]`` or bool, indexed ``[row, col]``.
        target: Ground-truth binary mask, ``(H, W)``.
        void: Optional ``(H, W)`` binary mask of pixels to ignore.
        beta2: ``beta**2`` (weight of precision), ``> 0``; 1 in the SOD literature.

    Returns:
        Weighted F-measure in ``[0, 1]`` (higher is better).

    Raises:
        ValueError: On invalid arrays or ``beta2 <= 0``.
    """
    from scipy import ndimage

    b = _check_number("beta2", beta2, low=0, low_open=True, high_open=True, kind="a positive float")
    p, t, valid = _map_and_valid(pred, target, void)
    fg, bg = t & valid, ~t & valid
    if not fg.any():
        return 0.0
    dist, (near_r, near_c) = ndimage.distance_transform_edt(~t, return_indices=True)
    err = np.where(valid, np.abs(p - t), 0.0)
    err_t = err[near_r, near_c]  # the nearest foreground pixel's error (a foreground pixel's own)
    err_a = ndimage.convolve(err_t, _gaussian_7x7_sigma5(), mode="constant", cval=0.0)
    weighted = np.where(t & (err_a < err), err_a, err) * np.where(t, 1.0, 2.0 - np.exp(np.log(0.5) / 5.0 * dist))
    tp_w = np.count_nonzero(fg) - float(weighted[fg].sum())
    fp_w = float(weighted[bg].sum())
    recall = 1.0 - float(weighted[fg].mean())
    precision = tp_w / (tp_w + fp_w + _EPS)
    return (1.0 + b) * recall * precision / (recall + b * precision + _EPS)
