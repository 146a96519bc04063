"""Tests of AoP-SAM: confidence-map sampling, elimination, the predictor, save/load, the policy, train-aop."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

torch = pytest.importorskip("torch")

from agents.aop.frame import frame_features  # noqa: E402
from agents.aop.predictor import (  # noqa: E402
    PredictorConfig,
    PromptPredictor,
    confidence_target,
    load_predictor,
    object_points,
    save_predictor,
    train_predictor,
)
from agents.aop.sampling import ASFConfig, PromptEliminator, generate_masks, sample_prompts  # noqa: E402
from agents.aop_sam import AoPPolicy  # noqa: E402
from sam_gym.backends import make_backend  # noqa: E402
from sam_gym.data.scenes import MultiInstanceScenes, coco_mval_key, group_scenes  # noqa: E402
from sam_gym.envs import SamPromptEnv  # noqa: E402
from sam_gym.evaluation import run_episodes  # noqa: E402
from sam_gym.policies import make_policy  # noqa: E402

TINY = {"image_side": 32, "map_size": 16, "width": 8}


def tiny_sam_backend():  # noqa: ANN201 - SamBackend, imported lazily
    """A real ``Sam`` with a 256-pixel input and random weights: (256, 16, 16) embedding."""
    pytest.importorskip("segment_anything")
    from sam_gym.testing import tiny_sam_backend as build

    return build()


def bump(shape: tuple[int, int], row: int, col: int, amplitude: float, sigma: float = 1.5) -> np.ndarray:
    rr, cc = np.mgrid[0 : shape[0], 0 : shape[1]]
    return amplitude * np.exp(-((rr - row) ** 2 + (cc - col) ** 2) / (2 * sigma**2))


# ------------------------------------------------------------------------------------------- sampling
def test_sampler_finds_planted_maxima_with_threshold_and_spacing() -> None:
    shape, image_size = (32, 40), (64, 100)  # map cells are 2 x 2.5 image pixels
    conf = np.maximum.reduce([
        bump(shape, 5, 7, 0.9), bump(shape, 20, 30, 0.6),
        bump(shape, 25, 8, 0.15),  # below the threshold
        bump(shape, 5, 12, 0.5),  # within the spacing (6) of the strongest one
    ])
    points, scores = sample_prompts(conf, image_size, threshold=0.2, smooth_sigma=0.0, spacing=6)
    np.testing.assert_allclose(points, [[7.5 * 2.5, 5.5 * 2.0], [30.5 * 2.5, 20.5 * 2.0]])
    np.testing.assert_allclose(scores, [0.9, 0.6], atol=1e-6)
    # With the paper's smoothing (sigma 2) the symmetric peaks stay where they were planted.
    smoothed, _ = sample_prompts(conf, image_size, threshold=0.2, smooth_sigma=2.0, spacing=6)
    np.testing.assert_allclose(smoothed[:2], points)
    # A spacing of 1 lets the close, weaker maximum through, most confident first.
    loose, loose_scores = sample_prompts(conf, image_size, threshold=0.2, smooth_sigma=0.0, spacing=1)
    assert len(loose) == 3 and np.all(np.diff(loose_scores) <= 0)
    np.testing.assert_allclose(loose[2], (12.5 * 2.5, 5.5 * 2.0))
    assert len(sample_prompts(conf, image_size, threshold=0.95, smooth_sigma=0.0)[0]) == 0
    with pytest.raises(ValueError, match="2-D"):
        sample_prompts(np.zeros(5), image_size)


def test_elimination_removes_a_duplicate_candidate_only() -> None:
    feats = np.zeros((4, 16, 16), dtype=np.float32)
    feats[0, :, :8] = 1.0  # left half: one kind of region
    feats[1, :, 8:] = 1.0  # right half: another
    eliminator = PromptEliminator(feats, (64, 64), threshold=1.3)
    mask = np.zeros((64, 64), dtype=bool)
    mask[8:40, 4:28] = True  # an object in the left half
    assert not eliminator.eliminated(10.0, 20.0)
    eliminator.add(mask, predicted_iou=0.9)
    assert eliminator.eliminated(20.0, 30.0)  # a second prompt on the same object
    assert not eliminator.eliminated(50.0, 30.0)  # another object
    # Same features outside the mask: E = 0.5, score 1.4 > 1.3 (the paper's scale: the feature term
    # eliminates too; the former threshold 1 - 0.5 * IoU kept it).
    assert eliminator.eliminated(10.0, 60.0)
    weak = PromptEliminator(feats, (64, 64), threshold=1.3)
    weak.add(mask, predicted_iou=-3.0)  # clipped to 0: scores <= 1 < 1.3, nothing eliminated
    assert not weak.eliminated(20.0, 30.0)


# ------------------------------------------------------------------------------------------ predictor
def test_targets_peak_at_object_points() -> None:
    mask = np.zeros((40, 60), dtype=bool)
    mask[10:31, 20:41] = True
    (x, y), = object_points([mask])
    assert (x, y) == (30.5, 20.5)
    target = confidence_target([mask], 20, box=3, sigma=1.0)
    assert target.max() == pytest.approx(1.0) and np.unravel_index(target.argmax(), target.shape) == (10, 10)


def test_predictor_trains_and_round_trips(tmp_path: Path) -> None:
    backend = make_backend("classical")
    scenes = MultiInstanceScenes(n=4, size=(48, 64), seed=1).scenes()
    config = PredictorConfig.for_backend(backend, **TINY)
    model, losses = train_predictor(backend, scenes, epochs=12, lr=3e-3, batch_size=2, config=config)
    assert losses[-1] < 0.8 * losses[0]
    path = save_predictor(model, tmp_path / "run", extra={"losses": losses})
    assert path.is_file() and (tmp_path / "run" / "aop_predictor.json").is_file()
    assert not list((tmp_path / "run").glob(".*tmp"))
    loaded = load_predictor(tmp_path / "run", backend)
    image = scenes[0].image
    emb = backend.encode(image)
    np.testing.assert_allclose(loaded.confidence_map(image, backend, emb), model.confidence_map(image, backend, emb))


def test_load_errors(tmp_path: Path) -> None:
    with pytest.raises(FileNotFoundError, match="train-aop"):
        load_predictor(tmp_path / "missing")
    bad = tmp_path / "bad"
    bad.mkdir()
    (bad / "aop_predictor.pt").write_bytes(b"not a torch file")
    with pytest.raises(ValueError, match="cannot be read"):
        load_predictor(bad)
    classical = make_backend("classical")
    save_predictor(PromptPredictor(PredictorConfig.for_backend(classical, **TINY)), tmp_path / "ok")
    fake = PredictorConfig(embed_channels=256, embedding_shape=(256, 64, 64), backend_name="sam_vit_b",
                           backend_model_id="x", **TINY)
    save_predictor(PromptPredictor(fake), tmp_path / "sam")
    with pytest.raises(ValueError, match="256-channel"):
        load_predictor(tmp_path / "sam", classical)
    with pytest.raises(ValueError, match="trained AoP predictor"):
        AoPPolicy(str(tmp_path / "nowhere"))


# ------------------------------------------------------------------------------------------- policy
class PlantedPredictor(PromptPredictor):
    """A predictor whose map has two known maxima (for exact assertions on the clicks)."""

    def confidence_map(self, image, backend, embedding):  # noqa: ANN001, ANN201, D102
        return np.maximum(bump((16, 16), 4, 4, 0.9), bump((16, 16), 11, 12, 0.7))


def test_aop_policy_runs_in_env_on_classical() -> None:
    env = SamPromptEnv(dataset=MultiInstanceScenes(n=2, seed=3), action_mode="point", init_prompts="none",
                       max_clicks=3)
    predictor = PlantedPredictor(PredictorConfig.for_backend(env.backend, **TINY))
    policy = AoPPolicy(predictor=predictor, config=ASFConfig(filter=False))
    records = run_episodes(policy, env, [0, 1])
    height, width = env.dataset[1].target.shape
    assert len(records) == 2 and all(len(r.ious) == 3 for r in records)
    assert all(label == 1 for r in records for label in r.labels)
    np.testing.assert_allclose(records[1].points[0], (4.5 * width / 16, 4.5 * height / 16), atol=1e-3)
    np.testing.assert_allclose(records[1].points[1], (12.5 * width / 16, 11.5 * height / 16), atol=1e-3)
    assert records[1].points[2] == records[1].points[1] and records[1].rewards[2] == -1.0  # prompts ran out
    with pytest.raises(ValueError, match="action_mode"):
        AoPPolicy(predictor=predictor).bind(SamPromptEnv(dataset=MultiInstanceScenes(n=1)))


def test_aop_on_tiny_random_sam_maps_the_padded_embedding() -> None:
    backend = tiny_sam_backend()
    image = np.random.default_rng(0).integers(0, 256, (40, 100, 3), dtype=np.uint8)
    emb = backend.encode(image)
    feats = frame_features(backend, emb)
    assert tuple(feats.shape) == (256, 64, 64)
    # Only the 7 valid rows (of 16) of the padded square reach the frame: poisoning the padding changes nothing.
    poisoned = type(emb)(features=emb.features.clone(), image_size=emb.image_size, extras=emb.extras)
    poisoned.features[:, :, 7:, :] = 1e6
    torch.testing.assert_close(frame_features(backend, poisoned), feats)
    predictor = PromptPredictor(PredictorConfig.for_backend(backend, **TINY))
    assert predictor.confidence_map(image, backend, emb).shape == (16, 16)
    result = generate_masks(predictor, backend, image, emb, ASFConfig(threshold=0.0, max_prompts=3))
    assert len(result.prompts) >= 1 and result.masks[0].shape == (40, 100)
    env = SamPromptEnv(dataset=MultiInstanceScenes(n=1, seed=2), backend=backend, action_mode="point",
                       init_prompts="none", max_clicks=2)
    records = run_episodes(AoPPolicy(predictor=predictor, config=ASFConfig(threshold=0.0, max_prompts=2)), env, [0])
    assert len(records[0].ious) == 2 and records[0].labels == [1, 1]


# ------------------------------------------------------------------------------------ data and command
def test_scene_grouping() -> None:
    assert coco_mval_key("baseball bat00_000000057232") == ("000000057232", "baseball bat")
    dataset = MultiInstanceScenes(n=3, seed=4)
    scenes = group_scenes(dataset)
    assert len(scenes) == 3 and sum(len(s.masks) for s in scenes) == len(dataset)
    assert [len(s.masks) for s in scenes] == [len(s.masks) for s in dataset.scenes()]
    assert all(s.classes[k] is not None for s in scenes for k in range(len(s.masks)))


def test_voc_instances_group_by_image(shared_data: Path) -> None:
    from sam_gym.data import make_dataset

    scenes = group_scenes(make_dataset(shared_data / "VOC-instances"))
    assert len(scenes) == 3 and sum(len(s.masks) for s in scenes) == 12


def test_train_aop_command(tmp_path: Path) -> None:
    from sam_gym.cli import main

    out = tmp_path / "aop"
    assert main(["train-aop", "--scenes", "2", "--epochs", "1", "--out", str(out)]) == 0
    predictor = load_predictor(out, make_backend("classical"))
    assert predictor.config.backend_name == "classical"
    assert isinstance(make_policy(f"aop:{out}"), AoPPolicy)
    assert main(["train-aop", "--epochs", "0", "--out", str(out)]) == 2
