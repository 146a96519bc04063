"""Tests of the weight-free classical graph-cut backend (not SAM).

Points are ``(x, y)`` image pixels (x right, y down); masks are ``(H, W)`` indexed ``[row, col]``.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from sam_gym.backends.classical import ClassicalBackend
from sam_gym.clicker import simulate_clicks
from sam_gym.data import SyntheticShapes


def _disk_image(h: int = 96, w: int = 128) -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(0)
    image = rng.normal(90, 8, (h, w, 3))
    yy, xx = np.mgrid[0:h, 0:w]
    target = (yy - 50) ** 2 + (xx - 60) ** 2 <= 22**2
    image[target] = rng.normal((200, 60, 40), 8, (int(target.sum()), 3))
    return np.clip(image, 0, 255).astype(np.uint8), target


def _iou(a: np.ndarray, b: np.ndarray) -> float:
    return float((a & b).sum()) / float((a | b).sum())


@pytest.fixture(scope="module")
def backend() -> ClassicalBackend:
    return ClassicalBackend()


def test_shapes_dtypes_and_multimask(backend: ClassicalBackend) -> None:
    image, _ = _disk_image()
    emb = backend.encode(image)
    assert emb.features.shape == backend.embedding_shape and emb.features.dtype == np.float32
    assert emb.image_size == (96, 128)
    one = backend.decode(emb, np.array([[60.5, 50.5]]), np.array([1]))
    assert one.low_res_logits.shape == (1, *backend.low_res_shape) and one.low_res_logits.dtype == np.float32
    assert one.mask().shape == (96, 128) and one.mask().dtype == bool
    three = backend.decode(emb, np.array([[60.5, 50.5]]), np.array([1]), multimask=True)
    assert len(three) == 3 and three.scores.shape == (3,)
    assert np.all((three.scores >= 0) & (three.scores <= 1))


def test_click_in_a_coloured_disk(backend: ClassicalBackend) -> None:
    image, target = _disk_image()
    emb = backend.encode(image)
    out = backend.decode(emb, np.array([[60.5, 50.5]]), np.array([1]), multimask=True)
    assert _iou(out.mask(out.best), target) > 0.9
    # A second decode with a background click and the previous logits keeps the disk.
    again = backend.decode(emb, np.array([[60.5, 50.5], [10.5, 10.5]]), np.array([1, 0]),
                           mask_input=out.logits(out.best))
    assert _iou(again.mask(), target) > 0.9


@pytest.mark.parametrize("index", [4, 6, 7])
def test_synthetic_shapes_within_three_clicks(backend: ClassicalBackend, index: int) -> None:
    sample = SyntheticShapes(n=8)[index]
    ious = simulate_clicks(backend, sample.image, sample.target, sample.void, max_clicks=3)
    assert max(ious) > 0.85


def test_observe_shapes_and_zero_mask(backend: ClassicalBackend) -> None:
    image, _ = _disk_image()
    emb = backend.encode(image)
    state, mask = backend.observe(emb, None, (4, 5), (64, 64))
    assert state.shape == (backend.embedding_shape[0], 4, 5) and state.dtype == np.float32
    assert mask.shape == (64, 64) and np.all(mask == 1.0)
    zero = np.full((1, 256, 256), -50.0, np.float32)
    state, mask = backend.observe(emb, zero, None, (32, 32))
    assert state.shape == backend.embedding_shape
    assert np.abs(state).max() < 1e-6 and mask.max() < 1e-6


def test_embedding_round_trip_decodes_identically(backend: ClassicalBackend) -> None:
    image, _ = _disk_image()
    emb = backend.encode(image)
    arrays = {k: np.array(v) for k, v in backend.embedding_to_arrays(emb).items()}
    back = backend.embedding_from_arrays(arrays)
    pts, labels = np.array([[60.5, 50.5], [5.5, 90.5]]), np.array([1, 0])
    a = backend.decode(emb, pts, labels)
    b = backend.decode(back, pts, labels)
    np.testing.assert_array_equal(a.low_res_logits, b.low_res_logits)
    np.testing.assert_array_equal(a.mask(), b.mask())


def test_model_id_keys_the_settings() -> None:
    assert ClassicalBackend().model_id != ClassicalBackend(geo_weight=0.0).model_id
    assert ClassicalBackend().model_id.startswith("classical-v3-")
    assert ClassicalBackend.is_sam is False


def test_points_inside_one_image_pixel_decode_alike() -> None:
    """A point selects the image pixel ``[floor(y), floor(x)]``, whatever its fraction (work scale 0.4 here)."""
    backend = ClassicalBackend(work_size=128)
    image, _ = _disk_image(96, 320)
    emb = backend.encode(image)
    labels = np.array([1])
    for col in (2, 7, 63):  # 2.0 * 0.4 and 2.99 * 0.4 truncate to different working pixels
        first = backend.decode(emb, np.array([[col, 50.0]], np.float32), labels).low_res_logits
        last = backend.decode(emb, np.array([[col + 0.99, 50.99]], np.float32), labels).low_res_logits
        assert np.array_equal(first, last)


def test_bad_inputs_raise(backend: ClassicalBackend) -> None:
    with pytest.raises(ValueError, match="work_size"):
        ClassicalBackend(work_size=4)
    with pytest.raises(ValueError, match="bins"):
        ClassicalBackend(bins=1)
    with pytest.raises(ValueError, match="context_mix"):
        ClassicalBackend(context_mix=1.5)
    with pytest.raises(ValueError, match="geo_reach"):
        ClassicalBackend(geo_reach=0.0)
    image, _ = _disk_image()
    emb = backend.encode(image)
    with pytest.raises(ValueError, match="mask_input"):
        backend.decode(emb, np.array([[5.0, 5.0]]), np.array([1]), mask_input=np.zeros((2, 3, 4, 5)))
    with pytest.raises(ValueError):
        backend.encode(np.zeros((8, 8), np.uint8))


@pytest.mark.shared_data
def test_grabcut_five_images(grabcut: Path) -> None:
    ious_at_10 = []
    for mask_path in sorted((grabcut / "masks").iterdir())[:5]:
        image_path = next(p for p in (grabcut / "images").iterdir() if p.stem == mask_path.stem)
        image = np.array(Image.open(image_path).convert("RGB"))
        raw = np.array(Image.open(mask_path))
        raw = raw[..., 0] if raw.ndim == 3 else raw
        ious = simulate_clicks(ClassicalBackend(), image, raw == 255, raw == 128, max_clicks=10)
        ious_at_10.append(max(ious))
    assert np.mean(ious_at_10) > 0.85


def test_model_id_is_derived_from_every_setting_of_the_config() -> None:
    from dataclasses import field, fields, make_dataclass, replace

    from sam_gym.backends.classical import ClassicalConfig

    default = ClassicalConfig()
    # The published cache key of the defaults (cache entries written before the config object stay valid).
    published = "classical-v3-ws256-b16-s3-c1-p0.25-r2-star1-m0.5-g3-1-3-f5"
    assert ClassicalBackend().model_id == default.model_id == published
    changed = {"work_size": 128, "bins": 8, "star": False, "context_mix": 0.25}
    for f in fields(ClassicalConfig):
        other = replace(default, **{f.name: changed.get(f.name, getattr(default, f.name) + 0.5)})
        assert other.model_id != default.model_id, f.name
    assert ClassicalBackend(ClassicalConfig(work_size=128), geo_weight=0.0).model_id == ClassicalBackend(
        work_size=128.0, geo_weight=0).model_id
    with pytest.raises(AttributeError):
        default.bins = 8  # type: ignore[misc]
    extended = make_dataclass("Extended", [("new_setting", float, field(default=0.5))], bases=(ClassicalConfig,),
                              frozen=True)
    assert extended().model_id == default.model_id + "-new_setting=0.5"
