"""The saliency metrics against the reference implementation, PySODMetrics 1.6 (``py_sod_metrics``).

PySODMetrics (Pang et al., https://github.com/lartpang/PySODMetrics) is the evaluation package of
the SOD / COD literature and reproduces the authors' MATLAB code. It is a test-only dependency (the
``dev`` extra). Every score is compared per image, on random maps and on real masks of
``../shared/data`` (SOD, CAMO) against a blurred, noisy and shifted copy, to 1e-12.

Where the two differ by definition, the relation is stated and tested:

* a binary prediction is used as it is (see :mod:`sam_gym.metrics.saliency`); PySODMetrics
  thresholds it at ``min(2 * mean, 1)``. The two agree on every binary map but the empty one, which
  PySODMetrics scores as an all-foreground map;
* PySODMetrics' binary BER counts ``pred > 0.5``, ours ``pred >= threshold``: the same pixels at the
  next float above 0.5, and on binary maps at 0.5 itself; on a ground truth with one class only,
  PySODMetrics counts the absent class's rate as 0 where we leave it out, so ``theirs = 50 + ours / 2``.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from sam_gym import metrics as M

psm = pytest.importorskip("py_sod_metrics", reason="the reference needs pysodmetrics (pip install -e '.[dev]')")

TOL = 1e-12
ABOVE_HALF = float(np.nextafter(0.5, 1.0))


def _reference(pred: np.ndarray, gt: np.ndarray, normalize: bool) -> dict[str, float]:
    """PySODMetrics' per-image scores through its public evaluators (one set per image)."""
    fm = psm.FmeasureV2(metric_handlers={
        "fm": psm.FmeasureHandler(with_dynamic=True, with_adaptive=True, beta=0.3),
        "ber": psm.BERHandler(with_dynamic=False, with_adaptive=False, with_binary=True, sample_based=True),
    })
    others = {"mae": psm.MAE(), "em": psm.Emeasure(), "sm": psm.Smeasure(alpha=0.5),
              "wfm": psm.WeightedFmeasure(beta=1)}
    fm.step(pred, gt, normalize=normalize)
    for evaluator in others.values():
        evaluator.step(pred, gt, normalize=normalize)
    f = fm.get_results()
    return {
        "mae": float(others["mae"].get_results()["mae"]),
        "f_beta": float(f["fm"]["adaptive"]),
        "max_f_beta": float(np.max(f["fm"]["dynamic"])),
        "e_measure": float(others["em"].get_results()["em"]["adp"]),
        "s_measure": float(others["sm"].get_results()["sm"]),
        "weighted_f": float(others["wfm"].get_results()["wfm"]),
        "ber": 100.0 * float(f["ber"]["binary"]),
    }


def _ours(pred: np.ndarray, gt: np.ndarray) -> dict[str, float]:
    return {
        "mae": M.mae(pred, gt),
        "f_beta": M.f_beta(pred, gt),
        "max_f_beta": M.max_f_beta(pred, gt),
        "e_measure": M.e_measure(pred, gt),
        "s_measure": M.s_measure(pred, gt),
        "weighted_f": M.weighted_f_measure(pred, gt),
        "ber": M.ber(pred, gt, threshold=ABOVE_HALF),
    }


def _assert_close(ours: dict[str, float], ref: dict[str, float], what: str) -> None:
    bad = {k: (ours[k], ref[k]) for k in ref if not abs(ours[k] - ref[k]) <= TOL}
    assert not bad, f"{what}: differs from PySODMetrics in {bad}"


def _random_case(rng: np.random.Generator, kind: str) -> tuple[np.ndarray, np.ndarray]:
    from scipy import ndimage

    h, w = (int(v) for v in rng.integers(8, 70, size=2))
    gt = ndimage.gaussian_filter(rng.random((h, w)), 3) > 0.5  # blobs, not salt and pepper
    if not gt.any() or gt.all():
        gt = np.zeros((h, w), bool)
        gt[h // 4 : h // 2 + 1, w // 3 : w - 2] = True
    if kind == "uniform":
        pred = rng.random((h, w))
    elif kind == "blurred":
        pred = np.clip(ndimage.gaussian_filter(gt.astype(float), 2) + 0.2 * rng.standard_normal((h, w)), 0, 1)
    else:  # binary
        pred = np.roll(gt, int(rng.integers(-3, 4)), axis=1) ^ (rng.random((h, w)) < 0.05)
        if not pred.any():
            pred[0, 0] = True
    return pred, gt


@pytest.mark.parametrize("kind", ["uniform", "blurred", "binary"])
def test_random_maps_match_pysodmetrics(kind: str) -> None:
    rng = np.random.default_rng({"uniform": 0, "blurred": 1, "binary": 2}[kind])
    for i in range(25):
        pred, gt = _random_case(rng, kind)
        ref = _reference(pred.astype(np.float64), gt, normalize=False)
        _assert_close(_ours(pred, gt), ref, f"{kind} map {i} {pred.shape}")


def test_pooled_ber_matches_pysodmetrics_dataset_ber() -> None:
    rng = np.random.default_rng(7)
    handler = psm.BERHandler(with_dynamic=False, with_adaptive=False, with_binary=True, sample_based=False)
    fm = psm.FmeasureV2(metric_handlers={"ber": handler})
    counts, per_image = [], []
    for _ in range(12):
        pred, gt = _random_case(rng, "blurred")
        fm.step(pred, gt, normalize=False)
        counts.append(M.ber_counts(pred, gt, threshold=ABOVE_HALF))
        per_image.append(M.ber(pred, gt, threshold=ABOVE_HALF))
    pooled = M.pooled_ber(counts)
    assert pooled == pytest.approx(100.0 * float(fm.get_results()["ber"]["binary"]), abs=1e-10)
    assert abs(pooled - np.mean(per_image)) > 0.01  # pooling is not the mean of the per-image BERs


def test_documented_differences() -> None:
    gt = np.zeros((10, 12), bool)
    gt[2:5, 3:9] = True
    empty, full = np.zeros(gt.shape, bool), np.ones(gt.shape, bool)
    # The empty binary map: PySODMetrics thresholds it at 0, i.e. scores the all-foreground map.
    theirs, ours_full = _reference(empty.astype(float), gt, normalize=False), _ours(full, gt)
    assert theirs["f_beta"] == pytest.approx(ours_full["f_beta"], abs=TOL) and ours_full["f_beta"] > 0.1
    assert theirs["e_measure"] == pytest.approx(ours_full["e_measure"], abs=TOL)
    assert M.f_beta(empty, gt) == 0.0 and M.max_f_beta(empty, gt) == 0.0
    # ... the maps that do not threshold agree on it
    ours_empty = _ours(empty, gt)
    for key in ("mae", "s_measure", "weighted_f"):
        assert ours_empty[key] == pytest.approx(theirs[key], abs=TOL), key
    # BER: `>` 0.5 in PySODMetrics, `>=` here; equal on binary maps at 0.5 itself.
    pred = np.roll(gt, 1, axis=0)
    assert M.ber(pred, gt) == pytest.approx(_reference(pred.astype(float), gt, normalize=False)["ber"], abs=TOL)
    # BER on a one-class (all-background) GT: theirs = 50 + ours / 2.
    soft = np.linspace(0, 1, gt.size).reshape(gt.shape)
    theirs_one = _reference(soft, np.zeros_like(gt), normalize=False)["ber"]
    assert theirs_one == pytest.approx(50.0 + M.ber(soft, np.zeros_like(gt), threshold=ABOVE_HALF) / 2, abs=1e-10)


def _read_mask(path: Path) -> np.ndarray:
    from PIL import Image

    a = np.asarray(Image.open(path).convert("L"))
    return np.where(a > 128, 255, 0).astype(np.uint8)


def _perturbed(gt_u8: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """A plausible saliency map: the mask shifted, blurred and noisy, as an 8-bit image."""
    from scipy import ndimage

    shifted = np.roll(gt_u8.astype(float) / 255.0, (int(rng.integers(-6, 7)), int(rng.integers(-6, 7))), axis=(0, 1))
    soft = ndimage.gaussian_filter(shifted, float(rng.uniform(1.5, 6.0))) + 0.1 * rng.standard_normal(gt_u8.shape)
    return np.round(255 * np.clip(soft, 0, 1)).astype(np.uint8)


def _as_pysodmetrics_prepares(pred_u8: np.ndarray, gt_u8: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """The float map and bool GT PySODMetrics derives from 8-bit files (MATLAB's mapminmax(im2double))."""
    pred = pred_u8 / 255.0
    if pred.max() != pred.min():
        pred = (pred - pred.min()) / (pred.max() - pred.min())
    return pred, gt_u8 > 128


@pytest.mark.shared_data
@pytest.mark.parametrize(("dataset", "n"), [("SOD", 8), ("CAMO", 4)])
def test_real_maps_match_pysodmetrics(shared_data: Path, dataset: str, n: int) -> None:
    masks = sorted((shared_data / dataset / "masks").glob("*.png"))[:n]
    if not masks:
        pytest.skip(f"no masks in {shared_data / dataset}")
    rng = np.random.default_rng(11)
    for path in masks:
        gt_u8 = _read_mask(path)
        pred_u8 = _perturbed(gt_u8, rng)
        ref = _reference(pred_u8, gt_u8, normalize=True)  # PySODMetrics' own file conventions
        pred, gt = _as_pysodmetrics_prepares(pred_u8, gt_u8)
        _assert_close(_ours(pred, gt), ref, f"{dataset}/{path.name}")
        binary_u8 = np.where(pred_u8 >= 128, 255, 0).astype(np.uint8)  # a binary prediction of the same image
        _assert_close(_ours(binary_u8 > 0, gt), _reference(binary_u8, gt_u8, normalize=True), f"{path.name} binary")
