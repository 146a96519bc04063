"""Saliency / binary-task metrics (SOD, shadow, camouflage): MAE, F-measure, E-measure, BER.

Predictions may be float maps with values in ``[0, 1]`` (``bool`` is accepted); targets are binary
``(H, W)`` masks indexed ``[row, col]``; ``void`` is an optional ``(H, W)`` binary mask of pixels
excluded from every metric. Invalid user input raises ``ValueError("Expected ..., got ...")``.
"""

from __future__ import annotations

from typing import Any

import numpy as np
from numpy.typing import ArrayLike, NDArray

from sam_gym.metrics._validate import _check_number, _pixels

__all__ = ["ber", "e_measure", "f_beta", "mae", "max_f_beta"]

#: MATLAB's ``eps`` (``np.spacing(1)``), used where the reference implementations use it.
_EPS = float(np.spacing(1))
_ADAPTIVE = "'adaptive' or a float in [0, 1]"


def _resolve_threshold(p: NDArray[np.float64], threshold: str | float) -> float:
    if isinstance(threshold, str):
        if threshold != "adaptive":
            raise ValueError(f"Expected threshold to be {_ADAPTIVE}, got {threshold!r}")
        return min(2.0 * float(p.mean()), 1.0)
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
    b = _check_number("beta2", beta2, low=0, low_open=True, high_open=True, kind="a positive float")
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
    thr = _check_number("threshold", threshold, low=0, high=1)
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
