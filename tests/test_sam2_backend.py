"""Tests of the SAM 2 / SAM 2.1 backend against Meta's SAM2ImagePredictor, and of its checkpoints.

Everything runs offline on the CPU with random weights: the real ``sam2.1_hiera_t`` architecture
composed from the ``sam2`` package's config at a 256-pixel input (so its feature maps are 16x16,
64x64 and 32x32 instead of 64x64, 256x256 and 128x128), and, marked slow, at its real 1024 pixels.
"""

from __future__ import annotations

import hashlib
import pickle
from pathlib import Path

import numpy as np
import pytest

torch = pytest.importorskip("torch")
pytest.importorskip("sam2")

from sam2.sam2_image_predictor import SAM2ImagePredictor  # noqa: E402

from sam_gym.backends import backend_entry, make_backend  # noqa: E402
from sam_gym.backends import weights as W  # noqa: E402
from sam_gym.backends.base import Embedding  # noqa: E402
from sam_gym.backends.sam2 import LOGIT_CLAMP, Sam2Backend, Sam2Embedding  # noqa: E402
from sam_gym.backends.sam2_build import CONFIGS, compose_sam2  # noqa: E402
from sam_gym.cache import EmbeddingCache  # noqa: E402

SMALL = ["++model.image_size=256"]


def make_image(h: int, w: int, seed: int = 0) -> np.ndarray:
    return np.random.default_rng(seed).integers(0, 256, (h, w, 3), dtype=np.uint8)


def small_model(seed: int = 0) -> torch.nn.Module:
    torch.manual_seed(seed)
    return compose_sam2("sam2.1_hiera_t", SMALL)


@pytest.fixture(scope="module")
def small() -> Sam2Backend:
    return Sam2Backend("sam2.1_hiera_t", model=small_model(0), device="cpu")


@pytest.fixture(scope="module")
def wide(small: Sam2Backend) -> tuple[np.ndarray, Sam2Embedding]:
    image = make_image(60, 90, seed=1)
    return image, small.encode(image)


def predictor_for(backend: Sam2Backend, image: np.ndarray) -> SAM2ImagePredictor:
    """Meta's predictor on the backend's own module (its feature sizes set for the model's input side)."""
    predictor = SAM2ImagePredictor(backend.model)
    side = backend.img_size // 4
    predictor._bb_feat_sizes = [(side, side), (side // 2, side // 2), (side // 4, side // 4)]
    predictor.set_image(image)
    return predictor


def assert_matches_predictor(backend: Sam2Backend, image: np.ndarray, emb: Sam2Embedding,
                             predictor: SAM2ImagePredictor) -> None:
    assert torch.equal(emb.features, predictor._features["image_embed"])
    for ours, theirs in zip(emb.high_res_features, predictor._features["high_res_feats"], strict=True):
        assert torch.equal(ours, theirs)
    h, w = image.shape[:2]
    rng = np.random.default_rng(7)
    for n in (1, 2, 5):
        for multimask in (True, False):
            ours_prev = theirs_prev = None
            for _ in range(2):  # without, then with the previous round's best logits
                points = rng.uniform([0, 0], [w, h], (n, 2))
                labels = np.r_[1, rng.integers(0, 2, n - 1)]
                ours = backend.decode(emb, points, labels, mask_input=ours_prev, multimask=multimask)
                masks, scores, low_res = predictor.predict(points, labels, mask_input=theirs_prev,
                                                           multimask_output=multimask)
                np.testing.assert_array_equal(ours.low_res_logits.numpy(), low_res)
                np.testing.assert_array_equal(ours.scores, scores)
                np.testing.assert_array_equal(np.stack([ours.mask(k) for k in range(len(ours))]), masks)
                ours_prev, theirs_prev = ours.logits(), low_res[ours.best][None]


# ---------------------------------------------------------------------------------------------- backend


def test_registry_names_and_shapes(small: Sam2Backend, wide: tuple[np.ndarray, Sam2Embedding]) -> None:
    names = ["sam2.1_hiera_t", "sam2.1_hiera_s", "sam2.1_hiera_b+", "sam2.1_hiera_l",
             "sam2_hiera_t", "sam2_hiera_s", "sam2_hiera_b+", "sam2_hiera_l"]
    assert sorted(CONFIGS) == sorted(names)
    for name in names:
        entry = backend_entry(name)
        assert entry.checkpoint and entry.kwargs == {"model_type": name}
        assert entry.target == "sam_gym.backends.sam2:Sam2Backend"
    _, emb = wide
    assert small.is_sam and small.name == "sam2.1_hiera_t" and small.model_id.startswith("sam2.1_hiera_t-")
    assert small.embedding_shape == (256, 16, 16) and small.low_res_shape == (64, 64)
    assert small.high_res_shapes == ((32, 64, 64), (64, 32, 32)) and "injected" in small.description
    assert emb.image_size == (60, 90) and tuple(emb.features.shape) == (1, 256, 16, 16)
    assert [tuple(t.shape) for t in emb.high_res_features] == [(1, 32, 64, 64), (1, 64, 32, 32)]
    assert small.image_region(emb, (16, 16)) == (16, 16)  # stretched to the square: no padding


def test_decode_matches_sam2_image_predictor_bit_for_bit(
    small: Sam2Backend, wide: tuple[np.ndarray, Sam2Embedding]
) -> None:
    image, emb = wide
    assert_matches_predictor(small, image, emb, predictor_for(small, image))


def test_low_res_logits_are_clamped_but_masks_use_the_raw_logits(
    small: Sam2Backend, wide: tuple[np.ndarray, Sam2Embedding]
) -> None:
    _, emb = wide
    pred = small.decode(emb, np.array([[10.0, 20.0]]), np.array([1]), multimask=True)
    raw = pred._full_mask.logits
    torch.testing.assert_close(pred.low_res_logits, raw.clamp(-LOGIT_CLAMP, LOGIT_CLAMP), rtol=0, atol=0)
    assert pred.mask().shape == (60, 90) and pred.mask().dtype == bool


def test_decode_batch_matches_decode(small: Sam2Backend, wide: tuple[np.ndarray, Sam2Embedding]) -> None:
    embs = [wide[1], small.encode(make_image(40, 40, seed=2)), small.encode(make_image(90, 30, seed=3))]
    points = [np.array([[5.0, 5.0], [60.0, 30.0]]), np.array([[10.0, 20.0], [3.0, 3.0]]), np.array([[15.0, 80.0]])]
    labels = [np.array([1, 0]), np.array([1, 1]), np.array([1])]
    first = small.decode(embs[1], points[1], labels[1])
    embs.append(embs[1])
    points.append(np.array([[30.0, 20.0], [7.0, 9.0]]))
    labels.append(np.array([0, 1]))
    mask_inputs = [None, first.logits(), None, first.logits()]
    before = [e.features.clone() for e in embs]
    for multimask in (False, True):
        batch = small.decode_batch(embs, points, labels, mask_inputs, multimask=multimask)
        for i, got in enumerate(batch):
            want = small.decode(embs[i], points[i], labels[i], mask_inputs[i], multimask=multimask)
            torch.testing.assert_close(got.low_res_logits, want.low_res_logits, rtol=0, atol=1e-4)
            np.testing.assert_allclose(got.scores, want.scores, atol=1e-5)
    for e, f in zip(embs, before, strict=True):
        assert torch.equal(e.features, f)
    with pytest.raises(ValueError, match="one length"):
        small.decode_batch(embs, points[:2], labels)


def test_decode_rejects_bad_inputs(small: Sam2Backend, wide: tuple[np.ndarray, Sam2Embedding]) -> None:
    _, emb = wide
    with pytest.raises(ValueError, match="inside the image"):
        small.decode(emb, np.array([[91.0, 5.0]]), np.array([1]))
    with pytest.raises(ValueError, match=r"mask_input of shape \(1, 64, 64\)"):
        small.decode(emb, np.array([[1.0, 5.0]]), np.array([1]), mask_input=np.zeros((1, 256, 256)))
    plain = Embedding(features=emb.features, image_size=emb.image_size)  # no high-resolution levels
    with pytest.raises(ValueError, match="Expected a Sam2Embedding from sam2.1_hiera_t.encode"):
        small.decode(plain, np.array([[1.0, 5.0]]), np.array([1]))


def test_observe(small: Sam2Backend, wide: tuple[np.ndarray, Sam2Embedding]) -> None:
    _, emb = wide
    features = emb.features[0].numpy()
    state, mask = small.observe(emb, None, (16, 16), (20, 30))
    np.testing.assert_allclose(state, features, rtol=1e-6)
    assert mask.shape == (20, 30) and np.all(mask == 1.0)
    full, _ = small.observe(emb, None, None, (8, 8))
    np.testing.assert_array_equal(full, features)
    logits = torch.full((1, 64, 64), -20.0)
    logits[:, :32, :] = 20.0  # previous mask: the top half of the image
    state, mask = small.observe(emb, logits, (4, 1), (10, 4))  # cell r: embedding rows 4r .. 4r + 3
    assert np.all(mask[:4] > 0.99) and np.all(mask[-4:] < 0.01)
    np.testing.assert_allclose(state[:, 0, 0], features[:, :4].mean(axis=(1, 2)), rtol=1e-2, atol=1e-5)
    np.testing.assert_allclose(state[:, 3, 0], 0.0, atol=1e-3 * np.abs(features).max())
    with pytest.raises(ValueError, match="grid_hw"):
        small.observe(emb, None, (0, 3), (8, 8))


def test_embedding_round_trip_through_the_disk_cache(
    small: Sam2Backend, wide: tuple[np.ndarray, Sam2Embedding], tmp_path: Path
) -> None:
    image, emb = wide
    arrays = small.embedding_to_arrays(emb)
    assert {k: v.shape for k, v in arrays.items()} == {
        "features": (1, 256, 16, 16), "high_res_0": (1, 32, 64, 64), "high_res_1": (1, 64, 32, 32),
        "image_size": (2,)}
    restored = small.embedding_from_arrays({k: v.copy() for k, v in arrays.items()})
    points, labels = np.array([[30.0, 12.0], [5.0, 50.0]]), np.array([1, 0])
    a, b = small.decode(emb, points, labels, multimask=True), small.decode(restored, points, labels, multimask=True)
    assert torch.equal(a.low_res_logits, b.low_res_logits) and np.array_equal(a.scores, b.scores)
    with pytest.raises(ValueError, match="cached high_res_0"):
        small.embedding_from_arrays({**arrays, "high_res_0": arrays["high_res_0"][:, :16]})
    with pytest.raises(ValueError, match="cached high_res_1 .* got missing"):
        small.embedding_from_arrays({k: v for k, v in arrays.items() if k != "high_res_1"})

    writer = EmbeddingCache(small, cache_dir=tmp_path)
    writer.get(image)
    reader = EmbeddingCache(small, cache_dir=tmp_path)
    cached = reader.get(image)
    assert reader.stats.disk_hits == 1 and reader.stats.encoder_calls == 0
    c = small.decode(cached, points, labels, multimask=True)
    assert torch.equal(a.low_res_logits, c.low_res_logits)


def test_model_id_tracks_weights(small: Sam2Backend) -> None:
    assert Sam2Backend("sam2.1_hiera_t", model=small_model(0), device="cpu").model_id == small.model_id
    assert Sam2Backend("sam2.1_hiera_t", model=small_model(1), device="cpu").model_id != small.model_id


def test_env_and_vector_env_run_and_pickle(small: Sam2Backend) -> None:
    from sam_gym.data import make_dataset
    from sam_gym.envs import SamPromptEnv
    from sam_gym.envs.vector_env import SamPromptVectorEnv

    data = make_dataset("synthetic-shapes", n=3, seed=0)
    env = SamPromptEnv(dataset=data, backend=small, max_clicks=4)
    obs, _ = env.reset(seed=0)
    assert obs["state"].size == 256 * 10 * 10  # the 256 channels pooled to the 10 x 10 action grid
    env.step(int(np.flatnonzero(env.action_masks())[0]))
    restored = pickle.loads(pickle.dumps(env))
    action = int(np.flatnonzero(env.action_masks())[0])
    a, b = env.step(action), restored.step(action)
    np.testing.assert_array_equal(a[0]["state"], b[0]["state"])
    assert a[1] == b[1]
    vec = SamPromptVectorEnv(num_envs=2, dataset=data, backend=small, max_clicks=3)
    obs, _ = vec.reset(seed=1)
    for _ in range(3):
        masks = vec.action_masks()
        obs, rewards, *_ = vec.step(np.array([int(np.flatnonzero(m)[0]) for m in masks]))
    assert obs["state"].shape[0] == 2 and obs["state"][0].size == 256 * 10 * 10 and rewards.shape == (2,)


def test_constructor_errors() -> None:
    with pytest.raises(ValueError, match="half=False"):
        Sam2Backend("sam2.1_hiera_t", model=small_model(), device="cpu", half=True)
    with pytest.raises(ValueError, match="model_type"):
        Sam2Backend("sam2.1_hiera_x", checkpoint="random")
    with pytest.raises(ValueError, match="injected model"):
        Sam2Backend("sam2.1_hiera_t", model=small_model(), checkpoint="random")
    with pytest.raises(ValueError, match="no-such.pt"):
        Sam2Backend("sam2.1_hiera_t", checkpoint="/nonexistent/no-such.pt")


def test_checkpoint_file_is_loaded_and_bad_files_are_one_line(tmp_path: Path) -> None:
    with pytest.warns(UserWarning, match="RANDOM weights"):
        rand = make_backend("sam2.1_hiera_t", checkpoint="random", device="cpu")
    assert isinstance(rand, Sam2Backend) and "RANDOM" in rand.description and rand.img_size == 1024
    path = tmp_path / "my_sam2.pt"
    torch.save({"model": rand.model.state_dict()}, path)  # Meta's layout
    loaded = Sam2Backend("sam2.1_hiera_t", checkpoint=path, device="cpu")
    assert hashlib.sha256(path.read_bytes()).hexdigest()[:16] in loaded.model_id
    assert "my_sam2.pt" in loaded.description and "not the official checkpoint" in loaded.description
    for (_, a), (_, b) in zip(sorted(rand.model.state_dict().items()), sorted(loaded.model.state_dict().items()),
                              strict=True):
        assert torch.equal(a, b)
    torch.save({"not": torch.zeros(1)}, path)
    with pytest.raises(ValueError, match="do not fit"):
        Sam2Backend("sam2.1_hiera_t", checkpoint=path, device="cpu")
    state = rand.model.state_dict()
    state["sam_mask_decoder.iou_token.weight"] = torch.zeros(1, 8)
    torch.save(state, path)  # a bare state dict is read too; this one has a mis-shaped tensor
    with pytest.raises(ValueError, match="1 mis-shaped"):
        Sam2Backend("sam2.1_hiera_t", checkpoint=path, device="cpu")
    path.write_bytes(b"\x00\x01not a checkpoint\xff" * 64)
    with pytest.raises(ValueError, match="could not read it"):
        Sam2Backend("sam2.1_hiera_t", checkpoint=path, device="cpu")


# ---------------------------------------------------------------------------------------------- weights


def test_official_sam2_specs() -> None:
    for name in CONFIGS:
        spec = W.weights_spec(name)
        assert spec.model_type == name and len(spec.sha256) == 64 and int(spec.sha256, 16) >= 0
    assert W.WEIGHTS["sam2.1_hiera_t"].url == (
        "https://dl.fbaipublicfiles.com/segment_anything_2/092824/sam2.1_hiera_tiny.pt")
    assert W.WEIGHTS["sam2_hiera_b+"].url == (
        "https://dl.fbaipublicfiles.com/segment_anything_2/072824/sam2_hiera_base_plus.pt")
    assert W.WEIGHTS["sam2.1_hiera_t"].sha256 == "7402e0d864fa82708a20fbd15bc84245c2f26dff0eb43a4b5b93452deb34be69"


def test_auto_offline_is_a_clear_error(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    import urllib.error

    home = tmp_path / "weights"
    monkeypatch.setenv("SAM_GYM_HOME", str(home))

    def offline(url: str, timeout: float) -> None:
        raise urllib.error.URLError("no network")

    monkeypatch.setattr(W, "_urlopen", offline)
    with pytest.raises(W.WeightsUnavailableError) as info:
        Sam2Backend("sam2.1_hiera_l", checkpoint="auto", device="cpu")
    message = str(info.value)
    assert W.WEIGHTS["sam2.1_hiera_l"].url in message and str(home / "sam2.1_hiera_large.pt") in message
    assert "checkpoint='random'" in message and list(home.iterdir()) == []


# ---------------------------------------------------------------------------------------------- full size


@pytest.mark.slow
def test_full_size_hiera_t_matches_the_predictor() -> None:
    with pytest.warns(UserWarning, match="RANDOM weights"):
        backend = Sam2Backend("sam2.1_hiera_t", checkpoint="random", device="cpu")
    assert backend.embedding_shape == (256, 64, 64) and backend.low_res_shape == (256, 256)
    assert backend.high_res_shapes == ((32, 256, 256), (64, 128, 128))
    image = make_image(48, 64, seed=4)
    emb = backend.encode(image)
    predictor = SAM2ImagePredictor(backend.model)  # its own 1024-pixel feature sizes
    predictor.set_image(image)
    assert_matches_predictor(backend, image, emb, predictor)


def test_cache_counts_the_high_resolution_levels(small: Sam2Backend, wide: tuple[np.ndarray, Sam2Embedding]) -> None:
    from sam_gym.cache import embedding_nbytes

    _, emb = wide
    levels = sum(t.element_size() * t.numel() for t in (emb.features, *emb.high_res_features))
    assert embedding_nbytes(emb) == levels + sum(v.nbytes for v in emb.extras.values())
    assert embedding_nbytes(emb) > emb.features.element_size() * emb.features.numel()
