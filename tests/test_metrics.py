"""Tests for sam_gym.metrics: every expected value is worked out by hand in the comments."""

from __future__ import annotations

import json

import numpy as np
import pytest

from sam_gym import metrics as M


def b(rows):
    return np.array(rows, dtype=bool)


# ---------------------------------------------------------------------------------------------
# IoU / Dice
# ---------------------------------------------------------------------------------------------

PRED = b([[1, 1, 0], [0, 1, 0]])
TARGET = b([[1, 0, 0], [0, 1, 1]])


def test_iou_dice_by_hand():
    # inter = {(0,0), (1,1)} = 2 ; union = {(0,0), (0,1), (1,1), (1,2)} = 4 -> IoU = 2/4
    assert M.iou(PRED, TARGET) == pytest.approx(0.5)
    # |P| = 3, |G| = 3 -> Dice = 2*2 / 6
    assert M.dice(PRED, TARGET) == pytest.approx(2 / 3)


def test_iou_dice_void_changes_answer():
    void = b([[0, 1, 0], [0, 0, 0]])  # drop (0,1), a pred-only pixel
    # inter = 2 ; union = {(0,0), (1,1), (1,2)} = 3 -> 2/3
    assert M.iou(PRED, TARGET, void=void) == pytest.approx(2 / 3)
    # |P| = 2, |G| = 3 -> 2*2 / 5
    assert M.dice(PRED, TARGET, void=void) == pytest.approx(0.8)


def test_iou_dice_empty_masks():
    z = np.zeros((2, 3), dtype=bool)
    assert M.iou(z, z) == 1.0  # both empty -> 1 by convention
    assert M.dice(z, z) == 1.0
    assert M.iou(z, TARGET) == 0.0  # inter 0 / union 3
    assert M.dice(PRED, z) == 0.0  # 2*0 / (3 + 0)
    # The only predicted pixel is void and the target is empty -> both empty on valid pixels -> 1.
    one = b([[1, 0], [0, 0]])
    assert M.iou(one, np.zeros((2, 2), bool), void=one) == 1.0


def test_iou_accepts_01_integer_masks():
    assert M.iou(PRED.astype(np.uint8), TARGET.astype(np.int64)) == pytest.approx(0.5)


# ---------------------------------------------------------------------------------------------
# NoC / failure / mIoU per click / summary
# ---------------------------------------------------------------------------------------------


def test_noc_by_hand():
    ious = [0.5, 0.8, 0.9, 0.95]
    assert M.noc(ious, 0.85, 5) == 3  # first IoU >= 0.85 is click 3 (0.9)
    assert M.noc(ious, 0.90, 5) == 3  # >= is inclusive: 0.9 >= 0.9 at click 3
    assert M.noc(ious, 0.5, 5) == 1  # already reached on click 1
    assert M.noc(ious, 0.96, 5) == 5  # never reached -> max_clicks


def test_noc_early_stopped_and_truncated():
    assert M.noc([0.3, 0.91], 0.9, 20) == 2  # stopped early on success at click 2
    # entries beyond max_clicks are ignored: success at click 3 > max_clicks 2 -> capped at 2
    assert M.noc([0.1, 0.2, 0.95], 0.9, 2) == 2
    assert M.noc(np.array([0.95]), 1.0, 3) == 3  # tau = 1 is allowed, 0.95 < 1


def test_failure_strict_vs_non_strict_on_last_click():
    last = [0.5, 0.7, 0.9]  # success exactly on click 3 == max_clicks -> NoC = 3
    assert M.failure(last, 0.9, 3) is True  # RITM: NoC >= max_clicks is a failure
    assert M.failure(last, 0.9, 3, strict=True) is True
    assert M.failure(last, 0.9, 3, strict=False) is False
    early = [0.5, 0.9]  # NoC = 2 < 3 -> success in both conventions
    assert M.failure(early, 0.9, 3) is False
    assert M.failure(early, 0.9, 3, strict=False) is False
    never = [0.5, 0.6, 0.7]  # never reached -> failure in both
    assert M.failure(never, 0.9, 3) is True
    assert M.failure(never, 0.9, 3, strict=False) is True


EPISODES = [
    [0.9],  # A: stopped early, NoC@85 = NoC@90 = 1
    [0.5, 0.86, 0.9],  # B: NoC@85 = 2, NoC@90 = 3 (= max_clicks)
    [0.2, 0.3, 0.4],  # C: never, NoC = 3
]


def test_failure_rate_and_mean_noc():
    # @90: NoC = 1, 3, 3 -> strict failures B, C -> 2/3 ; non-strict only C -> 1/3
    assert M.failure_rate(EPISODES, 0.9, 3) == pytest.approx(2 / 3)
    assert M.failure_rate(EPISODES, 0.9, 3, strict=False) == pytest.approx(1 / 3)
    assert M.mean_noc(EPISODES, 0.9, 3) == pytest.approx((1 + 3 + 3) / 3)
    # @85: NoC = 1, 2, 3 -> mean 2, strict failures only C -> 1/3
    assert M.mean_noc(EPISODES, 0.85, 3) == pytest.approx(2.0)
    assert M.failure_rate(EPISODES, 0.85, 3) == pytest.approx(1 / 3)


def test_miou_per_click_pads_early_stop_with_last_iou():
    curve = M.miou_per_click(EPISODES, 3)
    # A is padded to [0.9, 0.9, 0.9]
    # click 1: (0.9 + 0.5 + 0.2) / 3 = 1.6 / 3
    # click 2: (0.9 + 0.86 + 0.3) / 3 = 2.06 / 3
    # click 3: (0.9 + 0.9 + 0.4) / 3 = 2.2 / 3
    assert curve.shape == (3,)
    assert curve.dtype == np.float64
    np.testing.assert_allclose(curve, [1.6 / 3, 2.06 / 3, 2.2 / 3])
    # max_clicks shorter than the episodes: truncated, click 1 and 2 only
    np.testing.assert_allclose(M.miou_per_click(EPISODES, 2), [1.6 / 3, 2.06 / 3])
    # a 2-D array of equal-length episodes is accepted
    np.testing.assert_allclose(M.miou_per_click(np.array([[0.2, 0.4], [0.6, 0.8]]), 2), [0.4, 0.6])


def test_summarize_episodes():
    s = M.summarize_episodes(EPISODES, 3)
    assert set(s) == {"noc@85", "noc@90", "fr@85", "fr@90", "miou_per_click", "n_episodes"}
    assert s["noc@85"] == pytest.approx(2.0)  # (1 + 2 + 3) / 3
    assert s["noc@90"] == pytest.approx(7 / 3)  # (1 + 3 + 3) / 3
    assert s["fr@85"] == pytest.approx(1 / 3)  # C
    assert s["fr@90"] == pytest.approx(2 / 3)  # B (last click, strict) and C
    assert s["n_episodes"] == 3
    assert isinstance(s["miou_per_click"], list)
    np.testing.assert_allclose(s["miou_per_click"], [1.6 / 3, 2.06 / 3, 2.2 / 3])
    json.dumps(s)  # plain Python types only
    s2 = M.summarize_episodes(EPISODES, 3, taus=(0.5,), strict=False)
    assert set(s2) == {"noc@50", "fr@50", "miou_per_click", "n_episodes"}
    # @50: NoC = 1, 1 (0.5 >= 0.5), 3 ; non-strict failures: C only
    assert s2["noc@50"] == pytest.approx(5 / 3)
    assert s2["fr@50"] == pytest.approx(1 / 3)


# ---------------------------------------------------------------------------------------------
# MAE / F-beta / E-measure / BER
# ---------------------------------------------------------------------------------------------


def test_mae_by_hand_and_void():
    pred = np.array([[0.2, 0.8], [1.0, 0.0]])
    gt = b([[0, 1], [1, 1]])
    # |0.2-0| + |0.8-1| + |1-1| + |0-1| = 0.2 + 0.2 + 0 + 1 = 1.4 -> / 4
    assert M.mae(pred, gt) == pytest.approx(0.35)
    # void (1,1): (0.2 + 0.2 + 0) / 3
    assert M.mae(pred, gt, void=b([[0, 0], [0, 1]])) == pytest.approx(0.4 / 3)
    assert M.mae(gt, gt) == 0.0  # bool prediction accepted


SAL = np.array([[0.9, 0.6, 0.1], [0.2, 0.0, 0.2]])


def test_f_beta_adaptive_and_fixed():
    gt = b([[1, 1, 0], [0, 0, 0]])
    # mean = (0.9+0.6+0.1+0.2+0+0.2)/6 = 2/6 -> thr = 2/3 -> B = {(0,0)}
    # TP = 1, P = 1/1, R = 1/2 -> F = 1.3 * 1 * 0.5 / (0.3 * 1 + 0.5) = 0.65 / 0.8
    assert M.f_beta(SAL, gt) == pytest.approx(0.8125)
    # thr 0.5 -> B = {(0,0), (0,1)} = G -> P = R = 1 -> F = 1
    assert M.f_beta(SAL, gt, threshold=0.5) == pytest.approx(1.0)
    # thr 0.05 -> B = all but the 0.0 pixel (5 px), TP = 2 -> P = 0.4, R = 1
    # F = 1.3 * 0.4 / (0.3 * 0.4 + 1) = 0.52 / 1.12
    assert M.f_beta(SAL, gt, threshold=0.05) == pytest.approx(0.52 / 1.12)
    # beta2 = 1 at thr 2/3: F1 = 2 * 1 * 0.5 / 1.5
    assert M.f_beta(SAL, gt, beta2=1.0) == pytest.approx(2 / 3)


def test_f_beta_void_changes_adaptive_threshold():
    gt = b([[1, 1, 0], [0, 0, 0]])
    void = b([[0, 1, 0], [0, 0, 0]])
    # valid preds 0.9, 0.1, 0.2, 0.0, 0.2 -> mean 0.28 -> thr 0.56 -> B = {(0,0)} ; G = {(0,0)}
    assert M.f_beta(SAL, gt, void=void) == pytest.approx(1.0)


def test_f_beta_adaptive_clipped_to_one():
    # mean = 0.95 -> 2*mean = 1.9 clipped to 1 -> B = {pred >= 1} = {(0,1)} = G -> F = 1
    # (without clipping nothing would pass and F would be 0)
    assert M.f_beta(np.array([[0.9, 1.0]]), b([[0, 1]])) == pytest.approx(1.0)


@pytest.mark.parametrize("dtype", [bool, np.uint8, np.float64])
def test_empty_binary_prediction_scores_as_empty(dtype):
    # An empty final mask on a 2x5 GT with 1 foreground pixel. The adaptive threshold would be
    # 2 * 0 = 0 and turn it into all-foreground: TP 1, P 1/10, R 1 -> F = 1.3 * 0.1 / 1.03 = 0.126.
    # A binary map is used as it is: nothing predicted -> TP 0 -> F 0 (and maxF 0).
    gt = np.zeros((2, 5), bool)
    gt[0, 0] = True
    empty = np.zeros((2, 5), dtype)
    assert M.f_beta(np.ones((2, 5), dtype), gt) == pytest.approx(0.13 / 1.03)  # all-foreground
    assert M.f_beta(empty, gt) == 0.0
    assert M.max_f_beta(empty, gt) == 0.0
    assert M.f_beta(empty, gt, threshold=0.0) == pytest.approx(0.13 / 1.03)  # a fixed threshold applies as given
    # E-measure of any constant map on a two-class GT: aF = 0 -> xi = 0 -> phi = 1/4 -> E = 10 / 4 / 9,
    # empty or full alike (the definition; the binary rule does not change it there).
    assert M.e_measure(empty, gt) == pytest.approx(10 / 36)
    assert M.e_measure(np.ones((2, 5), dtype), gt) == pytest.approx(10 / 36)
    # On a one-class GT it does: all-background GT -> phi = 1 - FM = 1 -> 10 / 9 (was 0: FM all ones);
    # all-foreground GT -> phi = FM = 0 -> 0 (was 10 / 9).
    assert M.e_measure(empty, np.zeros((2, 5), bool)) == pytest.approx(10 / 9)
    assert M.e_measure(empty, np.ones((2, 5), bool)) == 0.0


def test_binary_rule_changes_nothing_but_the_empty_map():
    # On a non-empty binary map the adaptive threshold min(2 mean, 1) is in (0, 1]: the ones pass, the
    # zeros do not, so "as it is" and "adaptive threshold" agree.
    rng = np.random.default_rng(3)
    for _ in range(20):
        pred = rng.random((9, 11)) < rng.uniform(0.05, 0.95)
        gt = rng.random((9, 11)) < 0.4
        thr = min(2 * pred.mean(), 1.0)
        assert M.f_beta(pred, gt) == M.f_beta(pred, gt, threshold=thr)
        assert M.e_measure(pred, gt) == M.e_measure(pred, gt, threshold=thr)
        assert M.max_f_beta(pred, gt) == M.f_beta(pred, gt)  # no threshold sweep over a binary map
    # A continuous map keeps the adaptive threshold, even a nearly-binary one: 2 * mean(0.5, 0, 0, 0) = 0.25
    # -> B = {0.5} = G -> F 1.
    assert M.f_beta(np.array([[0.5, 0.0], [0.0, 0.0]]), b([[1, 0], [0, 0]])) == pytest.approx(1.0)


def test_f_beta_empty_conventions():
    z = np.zeros((2, 2))
    assert M.f_beta(z, z.astype(bool), threshold=0.5) == 1.0  # nothing predicted, nothing to find
    assert M.f_beta(z, b([[1, 0], [0, 0]]), threshold=0.5) == 0.0  # TP = 0
    assert M.f_beta(np.ones((2, 2)), z.astype(bool), threshold=0.5) == 0.0  # TP = 0


def test_max_f_beta_by_hand():
    gt = b([[1, 0, 1], [0, 0, 0]])  # fg preds {0.9, 0.1}, bg preds {0.6, 0.2, 0.0, 0.2}
    # thr = 0           : B = 6 px, TP 2 -> P 1/3, R 1 -> 1.3/3 / 1.1       = 0.3939
    # thr in (0, 0.1]   : B = 5 px, TP 2 -> P 0.4, R 1 -> 0.52 / 1.12       = 0.4643
    # thr in (0.1, 0.2] : B = 4 px, TP 1 -> P 1/4, R 1/2 -> 0.1625 / 0.575  = 0.2826
    # thr in (0.2, 0.6] : B = 2 px, TP 1 -> P 1/2, R 1/2 -> 0.325 / 0.65   = 0.5
    # thr in (0.6, 0.9] : B = {0.9}, TP 1 -> P 1, R 1/2 -> 0.65 / 0.8      = 0.8125  <- max
    # thr > 0.9         : B empty -> 0
    assert M.max_f_beta(SAL, gt) == pytest.approx(0.8125)
    assert M.max_f_beta(SAL, b([[1, 1, 0], [0, 0, 0]])) == pytest.approx(1.0)  # thr in (0.2, 0.6]


def test_max_f_beta_matches_brute_force():
    rng = np.random.default_rng(0)
    pred = rng.random((17, 13))
    gt = rng.random((17, 13)) < 0.3
    void = rng.random((17, 13)) < 0.1
    brute = max(M.f_beta(pred, gt, void=void, threshold=k / 255) for k in range(256))
    assert M.max_f_beta(pred, gt, void=void) == pytest.approx(brute)


def test_e_measure_normal_case_by_hand():
    pred = b([[1, 0], [0, 0]])  # mean 0.25 -> thr 0.5 -> FM = pred
    gt = b([[1, 1], [0, 0]])
    # mu_FM = 0.25, mu_GT = 0.5 ; xi = 2 aG aF / (aG^2 + aF^2) ; phi = (1 + xi)^2 / 4
    # (0,0): aF = .75, aG = .5  -> xi = .75 / .8125 = 12/13 -> phi = (25/13)^2 / 4 = 625/676
    # (0,1): aF = -.25, aG = .5 -> xi = -.25 / .3125 = -0.8 -> phi = 0.2^2 / 4 = 0.01
    # (1,*): aF = -.25, aG = -.5 -> xi = 0.8 -> phi = 1.8^2 / 4 = 0.81 (twice)
    # E = (625/676 + 0.01 + 1.62) / (4 - 1)
    expected = (625 / 676 + 0.01 + 1.62) / 3
    assert M.e_measure(pred, gt) == pytest.approx(expected)
    assert M.e_measure(pred.astype(float) * 0.7, gt) == pytest.approx(expected)  # same binarization


def test_e_measure_special_cases():
    one = b([[1, 0], [0, 0]])
    # GT all background: phi = 1 - FM -> (0 + 1 + 1 + 1) / 3 = 1
    assert M.e_measure(one, np.zeros((2, 2), bool)) == pytest.approx(1.0)
    # GT all foreground: phi = FM -> 1 / 3
    assert M.e_measure(one, np.ones((2, 2), bool)) == pytest.approx(1 / 3)
    # all-zero map on all-background GT: a binary map, FM = 0 -> phi = 1 everywhere -> 4 / (4 - 1)
    # (the N - 1 denominator)
    assert M.e_measure(np.zeros((2, 2)), np.zeros((2, 2), bool)) == pytest.approx(4 / 3)
    # with the fixed threshold 0 it becomes all-foreground: phi = 0 -> E = 0
    assert M.e_measure(np.zeros((2, 2)), np.zeros((2, 2), bool), threshold=0.0) == 0.0


def test_e_measure_void():
    pred = b([[1, 0], [0, 0]])
    gt = b([[1, 1], [0, 0]])
    void = b([[0, 1], [0, 0]])
    # valid: (0,0) F=G=1 ; (1,0), (1,1) F=G=0 -> FM == GT -> xi = 1 everywhere -> phi = 1
    # E = 3 / (3 - 1) = 1.5
    assert M.e_measure(pred, gt, void=void) == pytest.approx(1.5)


def test_ber_by_hand():
    pred = np.array([[0.9, 0.4], [0.6, 0.1]])  # >= 0.5 -> [[1, 0], [1, 0]]
    gt = b([[1, 1], [0, 0]])
    # Np = 2, TP = 1 ; Nn = 2, TN = 1 -> 100 * (1 - 0.5 * (0.5 + 0.5)) = 50
    assert M.ber(pred, gt) == pytest.approx(50.0)
    # void (1,0) (a false positive): Nn = 1, TN = 1 -> 100 * (1 - 0.5 * (0.5 + 1)) = 25
    assert M.ber(pred, gt, void=b([[0, 0], [1, 0]])) == pytest.approx(25.0)
    # threshold 0.95: B empty -> TP 0, TN 2 -> 100 * (1 - 0.5 * (0 + 1)) = 50
    assert M.ber(pred, gt, threshold=0.95) == pytest.approx(50.0)
    # threshold 0.3: B = {.9, .4, .6} -> TP 2, TN 1 -> 100 * (1 - 0.5 * (1 + 0.5)) = 25
    assert M.ber(pred, gt, threshold=0.3) == pytest.approx(25.0)
    assert M.ber(gt, gt) == 0.0


def test_ber_single_class_gt():
    pred = np.array([[0.9, 0.6], [0.7, 0.1]])  # B = [[1, 1], [1, 0]]
    # Np = 0: 100 * (1 - TN / Nn) = 100 * (1 - 1/4)
    assert M.ber(pred, np.zeros((2, 2), bool)) == pytest.approx(75.0)
    # Nn = 0: 100 * (1 - TP / Np) = 100 * (1 - 3/4)
    assert M.ber(pred, np.ones((2, 2), bool)) == pytest.approx(25.0)


# ---------------------------------------------------------------------------------------------
# Greedy matching
# ---------------------------------------------------------------------------------------------


def row(idx, width=8):
    m = np.zeros((1, width), dtype=bool)
    m[0, list(idx)] = True
    return m


def test_greedy_differs_from_per_gt_argmax():
    g0, g1 = row(range(0, 4)), row(range(2, 6))  # {0..3}, {2..5}
    p0, p1 = row(range(0, 5)), row([5, 6, 7])  # {0..4}, {5,6,7}
    # p0-g0: 4/5 = .8 ; p0-g1: |{2,3,4}| / |{0..5}| = 3/6 = .5
    # p1-g0: 0        ; p1-g1: |{5}| / |{2..7}| = 1/6
    # greedy: (p0, g0, .8) then g1 can only take p1 (1/6) -> mean (.8 + 1/6) / 2
    # per-GT argmax would reuse p0 for g1: (.8 + .5) / 2 = .65
    score, matches = M.greedy_iou_matching([p0, p1], [g0, g1])
    assert score == pytest.approx((0.8 + 1 / 6) / 2)
    assert [(i, j) for i, j, _ in matches] == [(0, 0), (1, 1)]
    assert [v for *_, v in matches] == pytest.approx([0.8, 1 / 6])


def test_greedy_takes_global_max_first():
    # width 12: g0 = {3..9}, g1 = {0..5} ; p0 = {0..6}, p1 = {8..11}
    # p0-g0: |{3..6}| / |{0..9}| = 4/10 ; p0-g1: 6/7
    # p1-g0: |{8,9}| / |{3..11}| = 2/9  ; p1-g1: 0
    # global greedy: (p0, g1, 6/7) first, then (p1, g0, 2/9) -> mean (6/7 + 2/9) / 2
    # (processing GTs in order would give g0 -> p0 (.4), g1 -> nothing -> mean .2)
    g0, g1 = row(range(3, 10), 12), row(range(0, 6), 12)
    p0, p1 = row(range(0, 7), 12), row(range(8, 12), 12)
    score, matches = M.greedy_iou_matching(np.stack([p0, p1]), [g0, g1])
    assert matches[0][:2] == (0, 1) and matches[0][2] == pytest.approx(6 / 7)
    assert matches[1][:2] == (1, 0) and matches[1][2] == pytest.approx(2 / 9)
    assert score == pytest.approx((6 / 7 + 2 / 9) / 2)


def test_greedy_unmatched_gts_and_empty_preds():
    g0, g1, g2 = row([0, 1]), row([4, 5]), row([7])
    # one pred {0,1,2}: with g0 2/3, with g1 0, with g2 0 -> g1, g2 unmatched (IoU 0)
    score, matches = M.greedy_iou_matching([row([0, 1, 2])], [g0, g1, g2])
    assert score == pytest.approx((2 / 3 + 0 + 0) / 3)
    assert len(matches) == 1
    # a pred overlapping no GT is never matched (IoU-0 pairs are skipped)
    score, matches = M.greedy_iou_matching([row([3])], [g0])
    assert (score, matches) == (0.0, [])
    assert M.greedy_iou_matching([], [g0, g1]) == (0.0, [])


def test_greedy_pairwise_iou_agrees_with_iou():
    rng = np.random.default_rng(1)
    preds = [rng.random((9, 7)) < 0.4 for _ in range(5)]
    gts = [rng.random((9, 7)) < 0.4 for _ in range(3)]
    _, matches = M.greedy_iou_matching(preds, gts)
    assert len(matches) == 3
    for i, j, v in matches:
        assert v == pytest.approx(M.iou(preds[i], gts[j]))
    assert len({i for i, _, _ in matches}) == 3  # each pred used at most once


def test_ber_counts_and_pooled_ber():
    pred = np.array([[0.9, 0.4], [0.6, 0.1]])  # >= 0.5 -> [[1, 0], [1, 0]]
    gt = b([[1, 1], [0, 0]])
    assert M.ber_counts(pred, gt) == M.BerCounts(tp=1, tn=1, n_pos=2, n_neg=2)
    assert M.ber_counts(pred, gt, void=b([[0, 0], [1, 0]])) == (1, 1, 2, 1)
    assert M.pooled_ber([M.ber_counts(pred, gt)]) == M.ber(pred, gt) == 50.0
    # Pooling is not averaging: image A (tp 9/10, tn 90/90) BER 5; image B (tp 0/90, tn 10/10) BER 50.
    # Mean 27.5; pooled: TP 9 / 100, TN 100 / 100 -> 100 * (1 - (0.09 + 1) / 2) = 45.5.
    counts = [M.BerCounts(9, 90, 10, 90), (0, 10, 90, 10)]
    assert M.pooled_ber(counts) == pytest.approx(45.5)
    assert [M.pooled_ber([c]) for c in counts] == pytest.approx([5.0, 50.0])
    # One class absent from every GT: the present class's error rate (as ber does).
    assert M.pooled_ber([(0, 3, 0, 4), np.array([0, 1, 0, 4])]) == pytest.approx(50.0)
    assert M.pooled_ber([(3, 0, 4, 0)]) == pytest.approx(25.0)


def test_pooled_ber_validation():
    with pytest.raises(ValueError, match="Expected at least one image's counts"):
        M.pooled_ber([])
    with pytest.raises(ValueError, match=r"Expected counts\[1\] to be 4 non-negative integers"):
        M.pooled_ber([(1, 1, 2, 2), (1, 1, 2)])
    with pytest.raises(ValueError, match=r"Expected counts\[0\] to be 4 non-negative integers"):
        M.pooled_ber([(1, -1, 2, 2)])
    with pytest.raises(ValueError, match=r"Expected counts\[0\] to be 4 non-negative integers"):
        M.pooled_ber([(0.5, 1, 2, 2)])
    with pytest.raises(ValueError, match=r"Expected counts\[0\] to be 4 non-negative integers"):
        M.pooled_ber([(float("inf"), 1, 2, 2)])
    with pytest.raises(ValueError, match=r"Expected counts\[0\] to be 4 non-negative integers"):
        M.pooled_ber([(True, 1, 2, 2)])
    assert M.pooled_ber([(1.0, 1, np.int64(2), 2)]) == pytest.approx(50.0)  # whole floats, numpy ints
    with pytest.raises(ValueError, match=r"Expected counts\[0\] to be 4 non-negative integers"):
        M.pooled_ber([None])
    with pytest.raises(ValueError, match=r"Expected counts\[0\] with tp <= n_pos"):
        M.pooled_ber([(3, 1, 2, 2)])
    with pytest.raises(ValueError, match="Expected counts with at least one pixel"):
        M.pooled_ber([(0, 0, 0, 0)])


# ---------------------------------------------------------------------------------------------
# S-measure / weighted F-measure
# ---------------------------------------------------------------------------------------------


def _s_object(values):
    x = np.asarray(values, dtype=float)
    std = x.std(ddof=1) if x.size > 1 else 0.0
    return 2 * x.mean() / (x.mean() ** 2 + 1 + std)


def test_s_measure_by_hand():
    gt = b([[1, 0], [0, 0]])
    pred = np.array([[0.8, 0.2], [0.0, 0.0]])
    # y = 1/4. Object: O(pred[G]) = O([0.8]) = 1.6 / 1.64 ; O((1 - pred)[~G]) = O([0.8, 1, 1]).
    # Region: centroid (0, 0) -> cut at row 1, col 1 -> four one-pixel blocks, each SSIM 1 (zero numerator
    # and denominator: one pixel has no variance), weights 1/4 -> S_r = 1.  S = 0.5 S_o + 0.5 S_r.
    s_o = 0.25 * 1.6 / 1.64 + 0.75 * _s_object([0.8, 1.0, 1.0])
    assert M.s_measure(pred, gt) == pytest.approx(0.5 * s_o + 0.5)
    assert M.s_measure(pred, gt, alpha=1.0) == pytest.approx(s_o)
    # void (0,1): the background term sees [1, 1] only -> O = 2 / 2 = 1 ; y = 1/3 ; blocks of 1 valid pixel
    s_o_void = (1 / 3) * 1.6 / 1.64 + (2 / 3) * 1.0
    assert M.s_measure(pred, gt, void=b([[0, 1], [0, 0]])) == pytest.approx(0.5 * s_o_void + 0.5)


def test_s_measure_special_cases():
    pred = np.array([[0.8, 0.2], [0.0, 0.6]])  # mean 0.4
    assert M.s_measure(pred, np.zeros((2, 2), bool)) == pytest.approx(0.6)  # GT all background: 1 - mean
    assert M.s_measure(pred, np.ones((2, 2), bool)) == pytest.approx(0.4)  # GT all foreground: mean
    gt = np.zeros((6, 7), bool)
    gt[1:4, 2:5] = True
    assert M.s_measure(gt, gt) == pytest.approx(1.0)  # perfect
    assert M.s_measure(gt.astype(float), gt) == M.s_measure(gt, gt)
    # Foreground on the last row: the centroid row + 1 is H, so the lower blocks are empty (the reference
    # returns NaN there); they get weight 0.
    last = np.zeros((4, 4), bool)
    last[3, 1:3] = True
    score = M.s_measure(np.full((4, 4), 0.3), last)
    assert np.isfinite(score) and 0.0 <= score <= 1.0


def test_weighted_f_measure_cases():
    gt = np.zeros((20, 20), bool)
    gt[6:14, 5:15] = True
    # Perfect: no error -> TPw = |G|, FPw = 0, R = 1, P = 1 -> F = 1 (up to eps).
    assert M.weighted_f_measure(gt, gt) == pytest.approx(1.0)
    # Empty prediction of an object away from the border: every foreground error is 1, and so is the
    # propagated error of the background around it, so EA = 1 on the object -> R = 0 -> F = 0.
    assert M.weighted_f_measure(np.zeros_like(gt), gt) == pytest.approx(0.0, abs=1e-12)
    # No foreground in the GT: 0 by convention.
    assert M.weighted_f_measure(gt, np.zeros_like(gt)) == 0.0
    # A blurred prediction is between, and beta2 moves it.
    pred = np.clip(gt + 0.3 * (np.add.outer(np.arange(20), np.arange(20)) % 3 == 0), 0, 1)
    assert 0.0 < M.weighted_f_measure(pred, gt) < 1.0
    assert M.weighted_f_measure(pred, gt, beta2=0.3) != M.weighted_f_measure(pred, gt)


@pytest.mark.parametrize("fn", [lambda p, g, v: M.s_measure(p, g, void=v),
                                lambda p, g, v: M.weighted_f_measure(p, g, void=v)])
def test_structure_metrics_void(fn):
    rng = np.random.default_rng(5)
    gt = np.zeros((16, 18), bool)
    gt[4:11, 3:12] = True
    pred = np.clip(gt * 0.8 + rng.random(gt.shape) * 0.3, 0, 1)
    void = np.zeros_like(gt)
    void[3:5, :] = True  # a band across the object's top edge
    assert fn(pred, gt, void) != fn(pred, gt, None)  # void pixels are left out ...
    other = pred.copy()
    other[void] = rng.random(np.count_nonzero(void))
    assert fn(other, gt, void) == fn(pred, gt, void)  # ... so their values cannot matter
    assert fn(pred, gt, np.zeros_like(gt)) == pytest.approx(fn(pred, gt, None))  # an empty void is no void


# ---------------------------------------------------------------------------------------------
# Bad inputs
# ---------------------------------------------------------------------------------------------


@pytest.mark.parametrize("fn", [M.iou, M.dice, M.mae, M.f_beta, M.max_f_beta, M.e_measure, M.ber, M.ber_counts,
                                M.s_measure, M.weighted_f_measure])
def test_array_validation(fn):
    z = np.zeros((2, 2), bool)
    with pytest.raises(ValueError, match="Expected pred and target of the same shape"):
        fn(np.zeros((2, 3), bool), z)
    with pytest.raises(ValueError, match=r"Expected pred to be a 2-D \(H, W\) array"):
        fn(np.zeros((1, 2, 2), bool), z)
    with pytest.raises(ValueError, match="Expected pred to be non-empty"):
        fn(np.zeros((0, 2), bool), np.zeros((0, 2), bool))
    with pytest.raises(ValueError, match="Expected target to be a binary mask"):
        fn(z, np.array([[0, 2], [0, 1]]))
    with pytest.raises(ValueError, match="Expected void to have shape"):
        fn(z, z, void=np.zeros((3, 3), bool))
    with pytest.raises(ValueError, match="Expected at least one non-void pixel"):
        fn(z, z, void=np.ones((2, 2), bool))


@pytest.mark.parametrize("fn", [M.mae, M.f_beta, M.max_f_beta, M.e_measure, M.ber, M.s_measure, M.weighted_f_measure])
def test_soft_pred_validation(fn):
    z = np.zeros((2, 2), bool)
    with pytest.raises(ValueError, match=r"Expected pred values in \[0, 1\]"):
        fn(np.full((2, 2), 1.5), z)
    with pytest.raises(ValueError, match="Expected pred to contain only finite values"):
        fn(np.full((2, 2), np.nan), z)


def test_binary_pred_validation():
    with pytest.raises(ValueError, match="Expected pred to be a binary mask"):
        M.iou(np.full((2, 2), 0.5), np.zeros((2, 2), bool))


def test_threshold_and_beta_validation():
    p, g = np.zeros((2, 2)), np.zeros((2, 2), bool)
    with pytest.raises(ValueError, match="Expected threshold to be 'adaptive'"):
        M.f_beta(p, g, threshold="mean")
    with pytest.raises(ValueError, match=r"Expected threshold in \[0, 1\]"):
        M.f_beta(p, g, threshold=1.5)
    with pytest.raises(ValueError, match=r"Expected threshold in \[0, 1\]"):
        M.e_measure(p, g, threshold=-0.1)
    with pytest.raises(ValueError, match=r"Expected threshold in \[0, 1\]"):
        M.ber(p, g, threshold=2.0)
    with pytest.raises(ValueError, match="Expected beta2 > 0"):
        M.f_beta(p, g, beta2=0.0)
    with pytest.raises(ValueError, match="Expected beta2 > 0"):
        M.max_f_beta(p, g, beta2=-1.0)
    with pytest.raises(ValueError, match="Expected beta2 > 0"):
        M.weighted_f_measure(p, g, beta2=0.0)
    with pytest.raises(ValueError, match=r"Expected alpha in \[0, 1\]"):
        M.s_measure(p, g, alpha=1.5)
    with pytest.raises(ValueError, match=r"Expected threshold in \[0, 1\]"):
        M.ber_counts(p, g, threshold=-1)


@pytest.mark.parametrize("tau", [0.0, -0.1, 1.5, float("nan")])
def test_tau_validation(tau):
    with pytest.raises(ValueError, match=r"Expected tau in \(0, 1\]"):
        M.noc([0.5], tau, 5)
    with pytest.raises(ValueError, match=r"Expected tau in \(0, 1\]"):
        M.failure([0.5], tau, 5)
    with pytest.raises(ValueError, match=r"Expected tau in \(0, 1\]"):
        M.summarize_episodes([[0.5]], 5, taus=(tau,))


def test_click_validation():
    with pytest.raises(ValueError, match="Expected max_clicks >= 1"):
        M.noc([0.5], 0.9, 0)
    with pytest.raises(ValueError, match="Expected max_clicks to be a positive int"):
        M.noc([0.5], 0.9, 2.5)
    with pytest.raises(ValueError, match="Expected ious to hold at least one IoU"):
        M.noc([], 0.9, 5)
    with pytest.raises(ValueError, match=r"Expected ious values in \[0, 1\]"):
        M.noc([0.5, 1.2], 0.9, 5)
    with pytest.raises(ValueError, match="Expected ious to be a 1-D sequence"):
        M.noc([[0.5]], 0.9, 5)
    with pytest.raises(ValueError, match="Expected at least one episode"):
        M.mean_noc([], 0.9, 5)
    with pytest.raises(ValueError, match="Expected at least one episode"):
        M.failure_rate([], 0.9, 5)
    with pytest.raises(ValueError, match="Expected at least one episode"):
        M.miou_per_click([], 5)
    with pytest.raises(ValueError, match="Expected ious to hold at least one IoU"):
        M.miou_per_click([[0.5], []], 5)
    with pytest.raises(ValueError, match="Expected taus with distinct"):
        M.summarize_episodes([[0.5]], 5, taus=(0.9, 0.901))
    with pytest.raises(ValueError, match="Expected at least one tau"):
        M.summarize_episodes([[0.5]], 5, taus=())


def test_one_number_check_covers_every_parameter():
    p, g = np.zeros((2, 2)), np.zeros((2, 2), bool)
    # BER takes no "adaptive" threshold, so its message must not offer one.
    with pytest.raises(ValueError, match=r"Expected threshold to be a float in \[0, 1\], got 'adaptive'"):
        M.ber(p, g, threshold="adaptive")
    with pytest.raises(ValueError, match="Expected threshold to be 'adaptive' or a float"):
        M.e_measure(p, g, threshold=True)
    with pytest.raises(ValueError, match="Expected beta2 > 0, got inf"):
        M.f_beta(p, g, beta2=float("inf"))
    with pytest.raises(ValueError, match="Expected beta2 to be a positive float"):
        M.max_f_beta(p, g, beta2="0.3")
    with pytest.raises(ValueError, match="Expected max_clicks to be a positive int, got True"):
        M.miou_per_click([[0.5]], True)
    with pytest.raises(ValueError, match="Expected tau to be a float"):
        M.noc([0.5], "0.9", 5)
    assert M.noc([0.5, 0.95], np.float32(0.9), np.int64(5)) == 2
    assert M.ber(p, g, threshold=np.float64(1.0)) == M.ber(p, g, threshold=1)


def test_greedy_validation():
    g = row([0, 1])
    with pytest.raises(ValueError, match="Expected at least one mask in gt_masks"):
        M.greedy_iou_matching([g], [])
    with pytest.raises(ValueError, match="Expected pred_masks of the GT shape"):
        M.greedy_iou_matching([np.zeros((2, 2), bool)], [g])
    with pytest.raises(ValueError, match="Expected all gt_masks to have shape"):
        M.greedy_iou_matching([g], [g, np.zeros((2, 2), bool)])
    with pytest.raises(ValueError, match=r"Expected pred_masks\[0\] to be a binary mask"):
        M.greedy_iou_matching([np.full((1, 8), 0.5)], [g])
