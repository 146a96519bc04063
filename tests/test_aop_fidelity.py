"""AoP-SAM as published: ASF's defaults and PEM, the policy's fallback, the env's joint decoding, SAM's AMG rows."""

from __future__ import annotations

import importlib.util
import sys
from pathlib import Path
from types import ModuleType

import numpy as np
import pytest

torch = pytest.importorskip("torch")

from agents.aop.predictor import PredictorConfig, PromptPredictor  # noqa: E402
from agents.aop.sampling import ASFConfig, PromptEliminator  # noqa: E402
from agents.aop_sam import AoPPolicy  # noqa: E402
from sam_gym.backends import make_backend  # noqa: E402
from sam_gym.data.scenes import MultiInstanceScenes  # noqa: E402
from sam_gym.envs import SamPromptEnv  # noqa: E402
from sam_gym.evaluation import run_episodes  # noqa: E402
from sam_gym.metrics import iou  # noqa: E402

TINY = {"image_side": 32, "map_size": 16, "width": 8}


def bump(shape: tuple[int, int], row: int, col: int, amplitude: float, sigma: float = 1.5) -> np.ndarray:
    rr, cc = np.mgrid[0 : shape[0], 0 : shape[1]]
    return amplitude * np.exp(-((rr - row) ** 2 + (cc - col) ** 2) / (2 * sigma**2))


class MapPredictor(PromptPredictor):
    """A predictor that returns a fixed confidence map."""

    def __init__(self, config: PredictorConfig, conf: np.ndarray) -> None:
        super().__init__(config)
        self.conf = conf.astype(np.float32)

    def confidence_map(self, image, backend, embedding):  # noqa: ANN001, ANN201, D102
        return self.conf


def benchmark(monkeypatch: pytest.MonkeyPatch) -> ModuleType:
    """``benchmarks/aop_efficiency.py`` as a module (registered for its dataclasses while the test runs)."""
    path = Path(__file__).resolve().parents[1] / "benchmarks" / "aop_efficiency.py"
    spec = importlib.util.spec_from_file_location("aop_efficiency", path)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    monkeypatch.setitem(sys.modules, spec.name, module)
    spec.loader.exec_module(module)
    return module


# ------------------------------------------------------------------------------------------ ASF
def test_asf_defaults_are_the_papers() -> None:
    config = ASFConfig()
    assert (config.threshold, config.smooth_sigma, config.spacing) == (0.2, 2.0, 2)
    assert config.max_prompts is None  # the paper caps nothing
    assert (config.elimination_threshold, config.aggregate) == (1.3, "mean")
    with pytest.raises(ValueError, match="Expected aggregate to be one of"):
        ASFConfig(aggregate="any")


def test_pem_averages_the_masks_where_max_takes_any() -> None:
    feats = np.zeros((4, 16, 16), dtype=np.float32)
    feats[0, :, :8] = 1.0
    feats[1, :, 8:] = 1.0
    left = np.zeros((64, 64), dtype=bool)
    left[8:40, 4:28] = True
    right = np.zeros((64, 64), dtype=bool)
    right[8:40, 36:60] = True
    mean, most = PromptEliminator(feats, (64, 64)), PromptEliminator(feats, (64, 64), aggregate="max")
    for eliminator in (mean, most):
        eliminator.add(left, predicted_iou=0.9)
        eliminator.add(right, predicted_iou=0.5)
    # Inside the left mask: scores 1 + 0.9 (left) and 0 + 0.5 (right, orthogonal features).
    assert mean.score(16.0, 20.0) == pytest.approx((1.9 + 0.5) / 2)
    assert most.score(16.0, 20.0) == pytest.approx(1.9)
    assert most.eliminated(16.0, 20.0) and not mean.eliminated(16.0, 20.0)


# ---------------------------------------------------------------------------------------- policy
def test_a_policy_with_nothing_to_propose_clicks_its_next_best_candidates() -> None:
    env = SamPromptEnv(dataset=MultiInstanceScenes(n=1, seed=3), action_mode="point", init_prompts="none",
                       max_clicks=4)
    config = PredictorConfig.for_backend(env.backend, **TINY)
    height, width = env.dataset[0].target.shape
    # Two maxima, both below the confidence threshold 0.2: ASF proposes nothing.
    weak = MapPredictor(config, np.maximum(bump((16, 16), 4, 4, 0.15), bump((16, 16), 11, 12, 0.1)))
    policy = AoPPolicy(predictor=weak)
    (record,) = run_episodes(policy, env, [0])
    assert policy.result is not None and len(policy.result.prompts) == 0
    np.testing.assert_allclose(record.points[0], (4.5 * width / 16, 4.5 * height / 16), atol=1e-3)
    np.testing.assert_allclose(record.points[1], (12.5 * width / 16, 11.5 * height / 16), atol=1e-3)
    assert (width / 2, height / 2) not in record.points
    # A flat map (a predictor that sees nothing at all): still a different point on every step.
    flat = AoPPolicy(predictor=MapPredictor(config, np.zeros((16, 16))))
    (record,) = run_episodes(flat, env, [0])
    assert len({tuple(point) for point in record.points}) == 4


def test_env_click_one_is_aops_first_mask_and_later_clicks_decode_jointly() -> None:
    env = SamPromptEnv(dataset=MultiInstanceScenes(n=2, seed=3), action_mode="point", init_prompts="none",
                       max_clicks=2)
    planted = np.maximum(bump((16, 16), 4, 4, 0.9), bump((16, 16), 11, 12, 0.7))
    policy = AoPPolicy(predictor=MapPredictor(PredictorConfig.for_backend(env.backend, **TINY), planted),
                       config=ASFConfig(filter=False))
    for index in (0, 1):
        (record,) = run_episodes(policy, env, [index])
        assert policy.result is not None and len(policy.result.masks) == 2
        target = env.dataset[index].target
        assert record.ious[0] == pytest.approx(iou(policy.result.masks[0], target), abs=1e-6)
        # Click 2 is SAM's joint decode of both prompts (previous logits as mask input), which the env
        # scores, not a union of AoP's separately decoded masks.
        backend, points = env.backend, np.asarray(record.points, dtype=np.float32)
        embedding = backend.encode(env.dataset[index].image)
        first = backend.decode(embedding, points[:1], np.array([1]), multimask=True)
        joint = backend.decode(embedding, points, np.array([1, 1]), mask_input=first.logits(first.best))
        assert record.ious[1] == pytest.approx(iou(joint.mask(), target), abs=1e-6)


# ---------------------------------------------------------------------------------------- AMG rows
def test_amg_rows_run_on_the_tiny_sam_and_produce_masks_and_timing(monkeypatch: pytest.MonkeyPatch) -> None:
    pytest.importorskip("segment_anything")
    from sam_gym.testing import tiny_sam_backend

    bench = benchmark(monkeypatch)
    assert bench.AMG_ROWS == {"AMG-S": 16, "AMG-D": 32}  # the paper's sparse and dense grids
    monkeypatch.setattr(bench, "AMG_ROWS", {"AMG-S": 4, "AMG-D": 8})  # the same rows, cut short for the CPU
    backend = tiny_sam_backend()
    scene = MultiInstanceScenes(n=1, size=(48, 64), seed=5).scenes()[0]
    predictor = PromptPredictor(PredictorConfig.for_backend(backend, **TINY))
    open_filters = bench.AMGSettings(pred_iou_thresh=0.0, stability_score_thresh=0.0)
    figures = bench.run_methods(backend, predictor, scene, backend.encode(scene.image), [4], open_filters)
    assert set(figures) == {"AoP (ASF)", "grid 4x4", "AMG-S", "AMG-D"}
    for name, side in (("AMG-S", 4), ("AMG-D", 8)):
        prompts, masks, seconds, passes, _, miou = figures[name]
        assert prompts == side * side and passes == 1  # one crop: the whole image, encoded once by AMG
        assert masks >= 1 and seconds > 0.0 and 0.0 <= miou <= 1.0
    masks, passes, seconds = bench.amg_masks(backend, scene.image, 4, open_filters)
    assert masks and all(m.shape == scene.image.shape[:2] and m.dtype == bool for m in masks)
    assert passes == 1 and seconds > 0.0
    # SAM's own filters (predicted IoU 0.88, stability 0.95, box NMS 0.7) can only remove masks.
    filtered, _, _ = bench.amg_masks(backend, scene.image, 4)
    assert len(filtered) <= len(masks)
    # Crop layers: the whole image plus 4 crops, each encoded and sampled with the same grid.
    cropped, passes, _ = bench.amg_masks(backend, scene.image, 4,
                                         bench.AMGSettings(pred_iou_thresh=0.0, stability_score_thresh=0.0,
                                                           crop_n_layers=1))
    assert passes == 5 and bench.amg_prompts(4, 1) == 5 * 16 and cropped
    with pytest.raises(ValueError, match="Expected a SAM backend"):
        bench.amg_masks(make_backend("classical"), scene.image, 4)
