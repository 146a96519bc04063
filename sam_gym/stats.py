"""Uncertainty of evaluation figures: bootstrap confidence intervals and paired tests.

Every figure in a report is a mean over independent units (images: the episodes of one image
under several reset seeds are averaged first, see :mod:`sam_gym.reporting`). Its uncertainty is a
**percentile bootstrap** interval: the units are resampled with replacement ``n_resamples`` times
(:data:`N_RESAMPLES`, 10 000 by default) from a generator seeded with ``seed`` (0 by default), and
the interval holds the central ``confidence`` share (95 % by default) of the resampled means
(Efron and Tibshirani, "An Introduction to the Bootstrap", 1993, ch. 13). The resampling depends
only on ``(n, n_resamples, seed)``, so every figure of the same units is resampled alike and a
report is reproducible bit for bit.

Two policies scored on the same episodes are compared **paired**: the per-unit differences
``a - b`` get a bootstrap interval of their mean (:func:`paired_bootstrap`) and a two-sided
Wilcoxon signed-rank test (:func:`wilcoxon_signed_rank`, ``scipy.stats.wilcoxon``, zero
differences dropped as in Wilcoxon's original test). :func:`paired_comparison` does both.

With one unit every interval has zero width: it carries no information about the spread, so
reports print the number of units beside it.

>>> est = bootstrap_ci([0.2, 0.4, 0.6, 0.8])
>>> round(est.mean, 3), est.low < est.mean < est.high, est.n
(0.5, True, 4)
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import numpy as np
from numpy.typing import ArrayLike, NDArray

__all__ = [
    "CONFIDENCE",
    "N_RESAMPLES",
    "Estimate",
    "PairedComparison",
    "bootstrap_ci",
    "bootstrap_columns",
    "bootstrap_ratio_ci",
    "bootstrap_statistic",
    "paired_bootstrap",
    "paired_comparison",
    "wilcoxon_signed_rank",
]

#: Default confidence level of every interval.
CONFIDENCE = 0.95
#: Default number of bootstrap resamples.
N_RESAMPLES = 10_000
_CHUNK = 1_000  # resamples drawn at once (memory: _CHUNK x n draws)


@dataclass(frozen=True)
class Estimate:
    """A mean and its bootstrap confidence interval.

    Attributes:
        mean: The mean over the units.
        low: Lower end of the interval.
        high: Upper end of the interval.
        n: Number of units.
    """

    mean: float
    low: float
    high: float
    n: int

    def interval(self) -> list[float]:
        """``[low, high]``, as written in ``results.json``."""
        return [self.low, self.high]


@dataclass(frozen=True)
class PairedComparison:
    """Two policies on the same units: their means, the mean difference ``a - b`` and a paired test.

    Attributes:
        mean_a: Mean of ``a``.
        mean_b: Mean of ``b``.
        difference: Mean of ``a - b`` with its paired bootstrap interval.
        p_value: Two-sided Wilcoxon signed-rank p-value (1.0 when every difference is zero).
        statistic: The Wilcoxon statistic (the smaller signed-rank sum; 0.0 when every difference is zero).
        n: Number of paired units.
        n_nonzero: Units whose difference is not zero (the ones the test ranks).
    """

    mean_a: float
    mean_b: float
    difference: Estimate
    p_value: float
    statistic: float
    n: int
    n_nonzero: int


def _check_units(values: ArrayLike, what: str = "values") -> NDArray[np.float64]:
    arr = np.asarray(values, dtype=np.float64)
    if arr.ndim == 1:
        arr = arr[:, None]
    if arr.ndim != 2 or arr.shape[0] == 0:
        raise ValueError(f"Expected {what} as a non-empty 1-D array (one value per unit) or 2-D (units x columns), "
                         f"got shape {np.shape(values)}")
    if not np.all(np.isfinite(arr)):
        raise ValueError(f"Expected finite {what}, got {int(np.sum(~np.isfinite(arr)))} NaN or infinite value(s)")
    return arr


def _check_settings(confidence: float, n_resamples: int) -> None:
    if not 0.0 < confidence < 1.0:
        raise ValueError(f"Expected confidence in (0, 1), got {confidence}")
    if int(n_resamples) != n_resamples or n_resamples < 1:
        raise ValueError(f"Expected n_resamples as a positive int, got {n_resamples}")


def _resampled_means(arr: NDArray[np.float64], n_resamples: int, seed: int) -> NDArray[np.float64]:
    """``(n_resamples, k)`` means of bootstrap resamples of the rows of ``arr`` (``(n, k)``).

    Resamples are drawn :data:`_CHUNK` at a time from one generator seeded with ``seed``, as counts
    of how often each unit is drawn, so the draws depend only on ``(n, n_resamples, seed)``.
    """
    rng = np.random.default_rng(seed)
    n = arr.shape[0]
    out = np.empty((n_resamples, arr.shape[1]), dtype=np.float64)
    for start in range(0, n_resamples, _CHUNK):
        rows = min(_CHUNK, n_resamples - start)
        draws = rng.integers(0, n, size=(rows, n)) + n * np.arange(rows)[:, None]
        counts = np.bincount(draws.ravel(), minlength=rows * n).reshape(rows, n)
        out[start:start + rows] = counts @ arr / n
    return out


def bootstrap_columns(
    values: ArrayLike, *, confidence: float = CONFIDENCE, n_resamples: int = N_RESAMPLES, seed: int = 0,
) -> tuple[NDArray[np.float64], NDArray[np.float64], NDArray[np.float64]]:
    """Mean and percentile bootstrap interval of every column of ``(units, columns)`` values.

    All columns use the same resamples of the units (a figure's interval does not depend on
    which other columns are passed with it).

    Args:
        values: ``(n,)`` or ``(n, k)``: one row per unit.
        confidence: Coverage of the interval, in ``(0, 1)``.
        n_resamples: Number of resamples.
        seed: Seed of the resampling generator.

    Returns:
        ``(means, lows, highs)``, each of shape ``(k,)`` (``(1,)`` for 1-D values).

    Raises:
        ValueError: On empty or non-finite values, or invalid settings.
    """
    arr = _check_units(values)
    _check_settings(confidence, n_resamples)
    n = arr.shape[0]
    means = arr.mean(axis=0)
    if n == 1:
        return means, means.copy(), means.copy()
    resampled = _resampled_means(arr, int(n_resamples), seed)
    tail = (1.0 - confidence) / 2.0
    lows, highs = np.quantile(resampled, [tail, 1.0 - tail], axis=0)
    # A constant column resamples to itself (up to rounding): its mean and interval are the constant.
    constant = arr.min(axis=0) == arr.max(axis=0)
    means = np.where(constant, arr[0], means)
    lows = np.where(constant, arr[0], np.minimum(lows, means))
    highs = np.where(constant, arr[0], np.maximum(highs, means))
    return means, lows, highs


def bootstrap_ci(
    values: ArrayLike, *, confidence: float = CONFIDENCE, n_resamples: int = N_RESAMPLES, seed: int = 0,
) -> Estimate:
    """Mean of one value per unit with its percentile bootstrap confidence interval.

    Args:
        values: ``(n,)``: one value per unit (e.g. an image's NoC@90, averaged over its seeds).
        confidence: Coverage of the interval, in ``(0, 1)``.
        n_resamples: Number of resamples.
        seed: Seed of the resampling generator.

    Raises:
        ValueError: On values that are not a non-empty 1-D finite array, or invalid settings.

    >>> bootstrap_ci([1.0, 1.0, 1.0])
    Estimate(mean=1.0, low=1.0, high=1.0, n=3)
    """
    if np.ndim(values) != 1:
        raise ValueError(f"Expected values as a 1-D array (one value per unit), got shape {np.shape(values)}")
    means, lows, highs = bootstrap_columns(values, confidence=confidence, n_resamples=n_resamples, seed=seed)
    return Estimate(float(means[0]), float(lows[0]), float(highs[0]), int(np.size(values)))


def bootstrap_statistic(
    values: ArrayLike, statistic: Callable[[NDArray[np.float64]], NDArray[np.float64]], *,
    confidence: float = CONFIDENCE, n_resamples: int = N_RESAMPLES, seed: int = 0,
) -> Estimate:
    """A statistic of the column means of ``(units, k)`` values, with a percentile bootstrap interval over units.

    For figures that are not a mean of one value per unit, e.g. a pooled rate (numerator and
    denominator columns) or a data-set BER (four count columns).

    Args:
        values: ``(units, k)`` values.
        statistic: Maps ``(r, k)`` column means (``r`` resamples; the first call has ``r = 1``, the
            data themselves) to ``(r,)`` values, elementwise over rows.
        confidence: Level of the interval.
        n_resamples: Bootstrap resamples.
        seed: Seed of the resampling.

    Returns:
        The statistic of the data and its interval (which always contains it).
    """
    arr = _check_units(values)
    _check_settings(confidence, n_resamples)
    estimate = float(np.asarray(statistic(arr.mean(axis=0)[None]))[0])
    n = arr.shape[0]
    if n == 1:
        return Estimate(estimate, estimate, estimate, 1)
    resampled = np.asarray(statistic(_resampled_means(arr, int(n_resamples), seed)), dtype=np.float64)
    resampled = np.where(np.isfinite(resampled), resampled, estimate)
    tail = (1.0 - confidence) / 2.0
    low, high = np.quantile(resampled, [tail, 1.0 - tail])
    return Estimate(estimate, float(min(low, estimate)), float(max(high, estimate)), n)


def bootstrap_ratio_ci(
    numerators: ArrayLike, denominators: ArrayLike, *, confidence: float = CONFIDENCE,
    n_resamples: int = N_RESAMPLES, seed: int = 0,
) -> Estimate:
    """``sum(numerators) / sum(denominators)`` with a bootstrap interval over units.

    For pooled rates whose units differ in size, e.g. the share of clicks on the foreground when
    episodes have different numbers of clicks (numerator: hits of an image, denominator: its clicks).

    Raises:
        ValueError: On arrays of different lengths, or a non-positive denominator total.
    """
    num, den = _check_units(numerators, "numerators")[:, 0], _check_units(denominators, "denominators")[:, 0]
    if num.shape != den.shape or np.ndim(numerators) != 1:
        raise ValueError(f"Expected 1-D numerators and denominators of the same length, got shapes "
                         f"{np.shape(numerators)} and {np.shape(denominators)}")
    if den.sum() <= 0 or np.any(den < 0):
        raise ValueError(f"Expected non-negative denominators with a positive total, got total {den.sum()}")

    def ratio(means: NDArray[np.float64]) -> NDArray[np.float64]:
        with np.errstate(divide="ignore", invalid="ignore"):
            return means[:, 0] / means[:, 1]  # a resample of zero denominators falls back to the estimate

    return bootstrap_statistic(np.stack([num, den], axis=1), ratio, confidence=confidence,
                               n_resamples=n_resamples, seed=seed)


def _pair(a: ArrayLike, b: ArrayLike) -> tuple[NDArray[np.float64], NDArray[np.float64]]:
    x, y = np.asarray(a, dtype=np.float64), np.asarray(b, dtype=np.float64)
    if x.ndim != 1 or x.shape != y.shape or x.size == 0:
        raise ValueError(f"Expected two non-empty 1-D arrays of paired values of the same length, got shapes "
                         f"{np.shape(a)} and {np.shape(b)}")
    _check_units(x, "a")
    _check_units(y, "b")
    return x, y


def paired_bootstrap(
    a: ArrayLike, b: ArrayLike, *, confidence: float = CONFIDENCE, n_resamples: int = N_RESAMPLES, seed: int = 0,
) -> Estimate:
    """Mean difference ``mean(a - b)`` over paired units, with a bootstrap interval of the pairs.

    ``a[i]`` and ``b[i]`` must be the same unit (the same image) under two policies; the pairs are
    resampled together, so what the units share (an easy image is easy for both) cancels.

    Raises:
        ValueError: On arrays that are not 1-D, non-empty, finite and of the same length.
    """
    x, y = _pair(a, b)
    return bootstrap_ci(x - y, confidence=confidence, n_resamples=n_resamples, seed=seed)


def wilcoxon_signed_rank(a: ArrayLike, b: ArrayLike) -> tuple[float, float]:
    """Two-sided Wilcoxon signed-rank test of the paired differences ``a - b``.

    Zero differences are dropped (``zero_method="wilcox"``); when every difference is zero there is
    no evidence of a difference and ``(0.0, 1.0)`` is returned without calling SciPy (which warns
    or raises there, depending on its version). SciPy chooses the exact distribution for small
    samples without ties and the normal approximation otherwise (``method="auto"``).

    Returns:
        ``(statistic, p_value)``.

    Raises:
        ValueError: On arrays that are not 1-D, non-empty, finite and of the same length.
    """
    from scipy import stats

    x, y = _pair(a, b)
    differences = x - y
    nonzero = differences[differences != 0]
    if nonzero.size == 0:
        return 0.0, 1.0
    result = stats.wilcoxon(nonzero, zero_method="wilcox", alternative="two-sided")
    return float(result.statistic), float(result.pvalue)


def paired_comparison(
    a: ArrayLike, b: ArrayLike, *, confidence: float = CONFIDENCE, n_resamples: int = N_RESAMPLES, seed: int = 0,
) -> PairedComparison:
    """Compare two policies on the same units: both means, the paired bootstrap difference and the Wilcoxon test.

    >>> c = paired_comparison([0.9, 0.8, 0.7, 0.95], [0.9, 0.8, 0.7, 0.95])
    >>> c.difference.mean, c.p_value, c.n_nonzero
    (0.0, 1.0, 0)
    """
    x, y = _pair(a, b)
    statistic, p_value = wilcoxon_signed_rank(x, y)
    return PairedComparison(
        mean_a=float(x.mean()), mean_b=float(y.mean()),
        difference=paired_bootstrap(x, y, confidence=confidence, n_resamples=n_resamples, seed=seed),
        p_value=p_value, statistic=statistic, n=int(x.size), n_nonzero=int(np.count_nonzero(x != y)),
    )
