"""Bootstrap intervals and paired tests (sam_gym.stats) on distributions whose answers are known."""

from __future__ import annotations

import warnings

import numpy as np
import pytest

from sam_gym.stats import (
    bootstrap_ci,
    bootstrap_columns,
    bootstrap_ratio_ci,
    paired_bootstrap,
    paired_comparison,
    wilcoxon_signed_rank,
)


def test_interval_of_a_normal_mean_has_the_textbook_width() -> None:
    # n = 400 draws of N(0.5, 1): the 95 % interval of the mean is about mean +/- 1.96 / 20 = +/- 0.098
    values = np.random.default_rng(0).normal(0.5, 1.0, size=400)
    est = bootstrap_ci(values)
    assert est.n == 400 and est.mean == pytest.approx(values.mean())
    assert est.low < 0.5 < est.high
    assert est.high - est.low == pytest.approx(2 * 1.96 * values.std() / 20, rel=0.1)
    assert est.low < est.mean < est.high


def test_coverage_is_near_95_percent() -> None:
    # 200 samples of 40 draws from an exponential (skewed) distribution with mean 1
    rng = np.random.default_rng(1)
    hits = 0
    for i in range(200):
        est = bootstrap_ci(rng.exponential(1.0, size=40), n_resamples=1000, seed=i)
        hits += est.low <= 1.0 <= est.high
    assert 0.85 <= hits / 200 <= 0.99  # percentile intervals undercover a little on skewed data


def test_seeded_and_reproducible() -> None:
    values = np.random.default_rng(2).uniform(size=30)
    assert bootstrap_ci(values, seed=3) == bootstrap_ci(values, seed=3)
    assert bootstrap_ci(values, seed=3) != bootstrap_ci(values, seed=4)
    wider = bootstrap_ci(values, confidence=0.99)
    narrower = bootstrap_ci(values, confidence=0.5)
    assert wider.low < narrower.low < narrower.high < wider.high


def test_degenerate_units() -> None:
    assert bootstrap_ci([0.7, 0.7, 0.7]).interval() == [0.7, 0.7]
    one = bootstrap_ci([0.3])
    assert (one.mean, one.low, one.high, one.n) == (0.3, 0.3, 0.3, 1)
    # two units: resample means are 2, 3 or 4 (probabilities 1/4, 1/2, 1/4), so the 95 % interval is [2, 4]
    assert bootstrap_ci([2.0, 4.0]).interval() == [2.0, 4.0]


def test_columns_do_not_depend_on_their_neighbours() -> None:
    rng = np.random.default_rng(5)
    a, b = rng.normal(size=50), rng.uniform(size=50)
    means, lows, highs = bootstrap_columns(np.column_stack([a, b]))
    alone = bootstrap_ci(b)
    assert (means[1], lows[1], highs[1]) == pytest.approx((alone.mean, alone.low, alone.high))


def test_ratio_interval() -> None:
    # images with 10 clicks and 0..9 hits, one image with 90 clicks and 90 hits: pooled rate 135 / 190
    hits = np.array([*range(10), 90], dtype=float)
    clicks = np.array([10] * 10 + [90], dtype=float)
    est = bootstrap_ratio_ci(hits, clicks)
    assert est.mean == pytest.approx(135 / 190)
    assert est.low < est.mean < est.high and est.n == 11
    with pytest.raises(ValueError, match="same length"):
        bootstrap_ratio_ci([1.0, 2.0], [1.0])
    with pytest.raises(ValueError, match="positive total"):
        bootstrap_ratio_ci([0.0], [0.0])


def test_a_consistent_small_gain_is_significant_when_paired() -> None:
    # Images differ a lot in difficulty (shared by both policies); policy a is better by 0.02 on every image.
    rng = np.random.default_rng(6)
    difficulty = rng.uniform(0.2, 0.9, size=40)
    b = difficulty + rng.normal(0, 0.005, size=40)
    a = difficulty + 0.02 + rng.normal(0, 0.005, size=40)
    result = paired_comparison(a, b)
    assert result.p_value < 1e-6
    assert 0.0 < result.difference.low < 0.02 < result.difference.high
    assert result.mean_a - result.mean_b == pytest.approx(result.difference.mean)
    # unpaired, the two intervals overlap: the pairing is what makes the difference visible
    ia, ib = bootstrap_ci(a), bootstrap_ci(b)
    assert ia.low < ib.high


def test_no_difference_is_not_significant() -> None:
    rng = np.random.default_rng(7)
    difficulty = rng.uniform(0.2, 0.9, size=40)
    a = difficulty + rng.normal(0, 0.05, size=40)
    b = difficulty + rng.normal(0, 0.05, size=40)
    result = paired_comparison(a, b)
    assert result.p_value > 0.05
    assert result.difference.low < 0.0 < result.difference.high
    assert result.n == 40 and result.n_nonzero == 40


def test_all_zero_differences_give_p_one_without_warnings() -> None:
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        assert wilcoxon_signed_rank([3, 4, 5], [3, 4, 5]) == (0.0, 1.0)
        result = paired_comparison([0.9, 0.8], [0.9, 0.8])
    assert (result.p_value, result.n_nonzero) == (1.0, 0)
    assert result.difference.interval() == [0.0, 0.0]


def test_wilcoxon_exact_values() -> None:
    # five positive differences: the exact two-sided p is 2 / 2**5
    assert wilcoxon_signed_rank([2, 3, 4, 5, 6], [1, 1, 1, 1, 1]) == pytest.approx((0.0, 0.0625))
    # zero differences are dropped: the same five plus two ties
    assert wilcoxon_signed_rank([2, 3, 4, 5, 6, 7, 7], [1, 1, 1, 1, 1, 7, 7])[1] == pytest.approx(0.0625)
    assert paired_bootstrap([2, 3], [1, 1]).mean == pytest.approx(1.5)


@pytest.mark.parametrize(("a", "b", "message"), [
    ([1.0, 2.0], [1.0], "same length"),
    ([], [], "non-empty"),
    ([1.0, float("nan")], [1.0, 2.0], "finite"),
    ([[1.0]], [[1.0]], "1-D"),
])
def test_paired_input_errors(a, b, message) -> None:
    with pytest.raises(ValueError, match=message):
        paired_comparison(a, b)


def test_setting_errors() -> None:
    with pytest.raises(ValueError, match="confidence"):
        bootstrap_ci([1.0, 2.0], confidence=1.0)
    with pytest.raises(ValueError, match="n_resamples"):
        bootstrap_ci([1.0, 2.0], n_resamples=0)
    with pytest.raises(ValueError, match="1-D"):
        bootstrap_ci(np.ones((2, 2)))


def test_bootstrap_statistic_of_the_mean_is_the_mean_interval() -> None:
    from sam_gym.stats import bootstrap_statistic

    values = np.random.default_rng(3).random(40)
    plain = bootstrap_ci(values)
    general = bootstrap_statistic(values[:, None], lambda m: m[:, 0])
    assert (general.mean, general.low, general.high, general.n) == pytest.approx(
        (plain.mean, plain.low, plain.high, plain.n))
