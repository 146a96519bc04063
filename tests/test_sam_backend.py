"""Tests of the SAM / MobileSAM backend and of checkpoint resolution.

Everything runs offline on CPU: a tiny ``Sam`` built from the real segment-anything classes, the real
ViT-B and MobileSAM architectures with random weights, and a monkeypatched network for downloads.
"""

from __future__ import annotations

import dataclasses
import hashlib
import io
import logging
import urllib.error
from pathlib import Path

import numpy as np
import pytest

torch = pytest.importorskip("torch")
pytest.importorskip("segment_anything")

from segment_anything import SamPredictor  # noqa: E402

from sam_gym.backends import make_backend  # noqa: E402
from sam_gym.backends import weights as W  # noqa: E402
from sam_gym.backends.base import Embedding  # noqa: E402
from sam_gym.backends.sam import SamBackend  # noqa: E402
from sam_gym.testing import tiny_sam  # noqa: E402


def make_image(h: int, w: int, seed: int = 0) -> np.ndarray:
    return np.random.default_rng(seed).integers(0, 256, (h, w, 3), dtype=np.uint8)


@pytest.fixture(scope="module")
def tiny() -> SamBackend:
    return SamBackend(model=tiny_sam(0), device="cpu")


@pytest.fixture(scope="module")
def wide(tiny: SamBackend) -> tuple[np.ndarray, Embedding]:
    """A 40x100 image: resized to 102x256, i.e. 7 of 16 embedding rows and 26 of 64 logit rows valid."""
    image = make_image(40, 100)
    return image, tiny.encode(image)


# ---------------------------------------------------------------------------------------------- backend


def test_shapes_dtypes_and_metadata(tiny: SamBackend, wide: tuple[np.ndarray, Embedding]) -> None:
    _, emb = wide
    assert tiny.is_sam and tiny.name == "sam_vit_b"
    assert tiny.embedding_shape == (256, 16, 16) and tiny.low_res_shape == (64, 64) and tiny.img_size == 256
    assert "injected" in tiny.description and tiny.model_id.startswith("vit_b-")
    assert emb.image_size == (40, 100)
    assert tuple(emb.features.shape) == (1, 256, 16, 16) and emb.features.dtype == torch.float32
    np.testing.assert_array_equal(emb.extras["input_size"], [102, 256])

    points, labels = np.array([[10.5, 20.0], [80.0, 5.0]]), np.array([1, 0])
    single = tiny.decode(emb, points, labels)
    assert len(single) == 1 and single.scores.dtype == np.float32
    assert tuple(single.low_res_logits.shape) == (1, 64, 64) and single.low_res_logits.dtype == torch.float32
    multi = tiny.decode(emb, points, labels, multimask=True)
    assert len(multi) == 3 and multi.scores.shape == (3,)
    for k in range(3):
        mask = multi.mask(k)
        assert mask.shape == (40, 100) and mask.dtype == bool
    assert tuple(multi.logits().shape) == (1, 64, 64)
    refined = tiny.decode(emb, points, labels, mask_input=multi.logits())
    refined_np = tiny.decode(emb, points, labels, mask_input=multi.logits().numpy())
    torch.testing.assert_close(refined.low_res_logits, refined_np.low_res_logits)
    assert not torch.equal(refined.low_res_logits, single.low_res_logits)


def test_decode_matches_sam_predictor(tiny: SamBackend) -> None:
    image = make_image(60, 90, seed=1)
    emb = tiny.encode(image)
    predictor = SamPredictor(tiny.model)
    predictor.set_image(image)
    torch.testing.assert_close(emb.features, predictor.features, rtol=0, atol=0)
    points, labels = np.array([[12.3, 40.7], [70.0, 10.0], [45.0, 30.0]]), np.array([1, 0, 1])
    ours = tiny.decode(emb, points, labels, multimask=True)
    masks, scores, low_res = predictor.predict(points, labels, multimask_output=True)
    np.testing.assert_allclose(ours.low_res_logits.numpy(), low_res, atol=1e-5)
    np.testing.assert_allclose(ours.scores, scores, atol=1e-5)
    np.testing.assert_array_equal(np.stack([ours.mask(k) for k in range(3)]), masks)
    ours = tiny.decode(emb, points, labels, mask_input=ours.logits(0))
    _, _, low_res = predictor.predict(points, labels, mask_input=low_res[:1], multimask_output=False)
    np.testing.assert_allclose(ours.low_res_logits.numpy(), low_res, atol=1e-5)


def test_decode_rejects_bad_inputs(tiny: SamBackend, wide: tuple[np.ndarray, Embedding]) -> None:
    _, emb = wide
    with pytest.raises(ValueError, match="inside the image"):
        tiny.decode(emb, np.array([[101.0, 5.0]]), np.array([1]))
    with pytest.raises(ValueError, match=r"mask_input of shape \(1, 64, 64\)"):
        tiny.decode(emb, np.array([[1.0, 5.0]]), np.array([1]), mask_input=np.zeros((1, 256, 256)))
    classical = Embedding(features=np.zeros((8, 16, 16), np.float32), image_size=(40, 100))
    with pytest.raises(ValueError, match="Expected an Embedding from sam_vit_b.encode"):
        tiny.decode(classical, np.array([[1.0, 5.0]]), np.array([1]))


def test_observe_shapes_and_zero_mask(tiny: SamBackend, wide: tuple[np.ndarray, Embedding]) -> None:
    _, emb = wide
    state, mask = tiny.observe(emb, None, (3, 5), (20, 30))
    assert state.shape == (256, 3, 5) and state.dtype == np.float32
    assert mask.shape == (20, 30) and mask.dtype == np.float32 and np.all(mask == 1.0)
    full, _ = tiny.observe(emb, None, None, (8, 8))
    np.testing.assert_array_equal(full, emb.features[0].numpy())

    zero_logits = torch.full((1, 64, 64), -1e4)
    state, mask = tiny.observe(emb, zero_logits, (3, 5), (20, 30))
    assert np.all(state == 0.0) and np.all(mask == 0.0)
    full, _ = tiny.observe(emb, zero_logits.numpy(), None, (8, 8))
    assert full.shape == (256, 16, 16) and np.all(full == 0.0)
    with pytest.raises(ValueError, match="grid_hw"):
        tiny.observe(emb, None, (0, 3), (8, 8))


def test_observe_grid_cells_cover_image_patches(tiny: SamBackend, wide: tuple[np.ndarray, Embedding]) -> None:
    _, emb = wide
    features = emb.features[0].numpy()
    # 7 x 16 valid embedding cells: a (7, 16) grid maps cell (r, c) to embedding cell (r, c).
    state, _ = tiny.observe(emb, None, (7, 16), (8, 8))
    np.testing.assert_allclose(state, features[:, :7, :16], rtol=1e-6)
    state, _ = tiny.observe(emb, None, (1, 1), (8, 8))
    np.testing.assert_allclose(state[:, 0, 0], features[:, :7, :].mean(axis=(1, 2)), rtol=1e-5, atol=1e-6)

    # Previous mask = top half of the image: the mask map is 1 at the top and 0 at the bottom.
    logits = torch.full((1, 64, 64), -20.0)
    logits[:, :13, :] = 20.0
    state, mask = tiny.observe(emb, logits, (7, 16), (10, 4))
    assert np.all(mask[:4] > 0.99) and np.all(mask[-4:] < 0.01)
    np.testing.assert_allclose(state[:, :2], features[:, :2, :16], rtol=1e-2, atol=1e-6)
    np.testing.assert_allclose(state[:, 5:], 0.0, atol=1e-3 * np.abs(features).max())


def test_observe_excludes_padded_region(tiny: SamBackend, wide: tuple[np.ndarray, Embedding]) -> None:
    _, emb = wide
    poisoned_features = emb.features.clone()
    poisoned_features[:, :, 7:, :] = 1e6  # rows 7.. of 16 lie in the bottom padding of the 102x256 input
    poisoned = Embedding(features=poisoned_features, image_size=emb.image_size, extras=emb.extras)
    logits = torch.randn((1, 64, 64), generator=torch.Generator().manual_seed(0))
    poisoned_logits = logits.clone()
    poisoned_logits[:, 26:, :] = 1e6  # rows 26.. of 64 are padding too
    for grid in [(2, 5), (7, 16)]:
        for clean, dirty in [(None, None), (logits, poisoned_logits)]:
            want_state, want_mask = tiny.observe(emb, clean, grid, (10, 25))
            got_state, got_mask = tiny.observe(poisoned, dirty, grid, (10, 25))
            np.testing.assert_array_equal(got_state, want_state)
            np.testing.assert_array_equal(got_mask, want_mask)
    # Padded-frame map: the padding is multiplied by probability 0 once there is a mask.
    full, _ = tiny.observe(poisoned, poisoned_logits, None, (10, 25))
    assert np.all(full[:, 7:, :] == 0.0)


def test_embedding_round_trip_decodes_identically(
    tiny: SamBackend, wide: tuple[np.ndarray, Embedding]
) -> None:
    _, emb = wide
    arrays = tiny.embedding_to_arrays(emb)
    assert arrays["features"].dtype == np.float32 and arrays["features"].shape == (1, 256, 16, 16)
    restored = tiny.embedding_from_arrays({k: v.copy() for k, v in arrays.items()})
    assert restored.image_size == emb.image_size
    points, labels = np.array([[30.0, 12.0]]), np.array([1])
    a = tiny.decode(emb, points, labels, multimask=True)
    b = tiny.decode(restored, points, labels, multimask=True)
    assert torch.equal(a.low_res_logits, b.low_res_logits)
    np.testing.assert_array_equal(a.scores, b.scores)
    np.testing.assert_array_equal(a.mask(), b.mask())
    with pytest.raises(ValueError, match="cached features"):
        tiny.embedding_from_arrays({**arrays, "features": arrays["features"][:, :128]})


def test_model_id_tracks_weights(tiny: SamBackend) -> None:
    same = SamBackend(model=tiny_sam(0), device="cpu")
    other = SamBackend(model=tiny_sam(1), device="cpu")
    assert same.model_id == tiny.model_id
    assert other.model_id != tiny.model_id


def test_decode_batch_matches_decode(tiny: SamBackend, wide: tuple[np.ndarray, Embedding]) -> None:
    embs = [wide[1], tiny.encode(make_image(64, 64, seed=2)), tiny.encode(make_image(90, 30, seed=3))]
    points = [
        np.array([[5.0, 5.0], [60.0, 30.0]]),
        np.array([[10.0, 50.0], [3.0, 3.0]]),
        np.array([[15.0, 80.0]]),
    ]
    labels = [np.array([1, 0]), np.array([1, 1]), np.array([1])]
    first = tiny.decode(embs[1], points[1], labels[1])
    embs.append(embs[1])
    points.append(np.array([[40.0, 20.0], [7.0, 9.0]]))
    labels.append(np.array([0, 1]))
    mask_inputs = [None, first.logits(), None, first.logits()]
    assert tiny.decoder_batch == 2  # the CPU default
    before = [e.features.clone() for e in embs]
    try:
        for size in (1, 2, 8):  # prompts per decoder call: 3 items have 2 points, so 3, 2 and 1 call(s) for them
            tiny.decoder_batch = size
            for multimask in (False, True):
                batch = tiny.decode_batch(embs, points, labels, mask_inputs, multimask=multimask)
                for i, got in enumerate(batch):
                    want = tiny.decode(embs[i], points[i], labels[i], mask_inputs[i], multimask=multimask)
                    torch.testing.assert_close(got.low_res_logits, want.low_res_logits, rtol=0, atol=1e-4)
                    np.testing.assert_allclose(got.scores, want.scores, atol=1e-4)
                    assert got.mask().shape == embs[i].image_size
    finally:
        tiny.decoder_batch = 2
    for e, f in zip(embs, before, strict=True):  # the (cached) embeddings are never changed in place
        assert torch.equal(e.features, f)
    with pytest.raises(ValueError, match="one length"):
        tiny.decode_batch(embs, points[:2], labels)


def test_constructor_errors() -> None:
    with pytest.raises(ValueError, match="half=True only on a CUDA device"):
        SamBackend(model=tiny_sam(), device="cpu", half=True)
    with pytest.raises(ValueError, match="model_type"):
        SamBackend(model_type="vit_x", checkpoint="random")
    with pytest.raises(ValueError, match="decoder_batch"):
        SamBackend(model=tiny_sam(), device="cpu", decoder_batch=0)
    with pytest.raises(ValueError, match="injected model"):
        SamBackend(model=tiny_sam(), checkpoint="random")
    with pytest.raises(ValueError, match="no-such.pth"):
        SamBackend(model_type="vit_b", checkpoint="/nonexistent/no-such.pth")
    if not torch.cuda.is_available():
        with pytest.raises(ValueError, match="torch.cuda.is_available"):
            SamBackend(model=tiny_sam(), device="cuda")


@pytest.mark.slow
def test_vit_b_random_weights_end_to_end() -> None:
    with pytest.warns(UserWarning, match="RANDOM weights"):
        backend = SamBackend(model_type="vit_b", checkpoint="random", device="cpu")
    assert backend.embedding_shape == (256, 64, 64) and backend.low_res_shape == (256, 256)
    assert "RANDOM" in backend.description and backend.model_id.startswith("vit_b-")
    emb = backend.encode(make_image(48, 64))
    np.testing.assert_array_equal(emb.extras["input_size"], [768, 1024])
    pred = backend.decode(emb, np.array([[20.0, 10.0]]), np.array([1]), multimask=True)
    assert len(pred) == 3 and tuple(pred.low_res_logits.shape) == (3, 256, 256)
    assert pred.mask().shape == (48, 64)
    state, mask = backend.observe(emb, pred.logits(), (4, 4), (64, 64))
    assert state.shape == (256, 4, 4) and mask.shape == (64, 64) and np.isfinite(state).all()


@pytest.fixture(scope="module")
def mobilesam() -> SamBackend:
    with pytest.warns(UserWarning, match="RANDOM weights"):
        backend = make_backend("mobilesam", checkpoint="random", device="cpu")
    assert isinstance(backend, SamBackend)
    return backend


def test_mobilesam_random_weights(mobilesam: SamBackend) -> None:
    assert mobilesam.name == "mobilesam_vit_t" and "MobileSAM" in mobilesam.description
    assert mobilesam.embedding_shape == (256, 64, 64) and mobilesam.low_res_shape == (256, 256)
    emb = mobilesam.encode(make_image(50, 40))
    pred = mobilesam.decode(emb, np.array([[20.0, 10.0], [5.0, 45.0]]), np.array([1, 0]), multimask=True)
    assert len(pred) == 3 and pred.mask(2).shape == (50, 40)
    refined = mobilesam.decode(emb, np.array([[20.0, 10.0]]), np.array([1]), mask_input=pred.logits())
    assert tuple(refined.low_res_logits.shape) == (1, 256, 256)
    state, _ = mobilesam.observe(emb, refined.logits(), (5, 4), (32, 32))
    assert state.shape == (256, 5, 4)


def test_checkpoint_file_is_loaded(mobilesam: SamBackend, tmp_path: Path) -> None:
    path = tmp_path / "my_mobile_sam.pt"
    torch.save(mobilesam.model.state_dict(), path)
    loaded = SamBackend(model_type="vit_t", checkpoint=path, device="cpu")
    digest = hashlib.sha256(path.read_bytes()).hexdigest()
    assert digest[:16] in loaded.model_id and loaded.checkpoint_path == path
    assert "my_mobile_sam.pt" in loaded.description and "not the official checkpoint" in loaded.description
    image, points, labels = make_image(32, 32), np.array([[16.0, 16.0]]), np.array([1])
    want = mobilesam.decode(mobilesam.encode(image), points, labels)
    got = loaded.decode(loaded.encode(image), points, labels)
    torch.testing.assert_close(got.low_res_logits, want.low_res_logits)
    torch.save({"not": torch.zeros(1)}, path)
    with pytest.raises(ValueError, match="do not fit"):
        SamBackend(model_type="vit_t", checkpoint=path, device="cpu")


# ---------------------------------------------------------------------------------------------- weights


class FakeResponse(io.BytesIO):
    def __init__(self, data: bytes, target: Path | None = None) -> None:
        super().__init__(data)
        self.headers = {"Content-Length": str(len(data))}
        self.target = target

    def read(self, size: int | None = -1) -> bytes:
        assert self.target is None or not self.target.exists(), "target written before verification"
        return super().read(size)


@pytest.fixture
def home(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    monkeypatch.setenv("SAM_GYM_HOME", str(tmp_path / "weights"))
    return tmp_path / "weights"


def test_weights_home(monkeypatch: pytest.MonkeyPatch, tmp_path: Path, home: Path) -> None:
    assert W.weights_home() == home
    monkeypatch.delenv("SAM_GYM_HOME")
    monkeypatch.setenv("HOME", str(tmp_path))
    assert W.weights_home() == tmp_path / ".cache" / "sam_gym"


def test_official_specs() -> None:
    for model_type, spec in W.WEIGHTS.items():
        assert len(spec.sha256) == 64 and int(spec.sha256, 16) >= 0
        assert spec.url.endswith("/" + spec.filename) and spec.model_type == model_type
    assert W.WEIGHTS["vit_b"].url == "https://dl.fbaipublicfiles.com/segment_anything/sam_vit_b_01ec64.pth"


def test_random_checkpoint_warns(caplog: pytest.LogCaptureFixture) -> None:
    with caplog.at_level(logging.WARNING), pytest.warns(UserWarning, match="meaningless"):
        assert W.resolve_checkpoint("vit_h", "random") is None
    assert "RANDOM weights" in caplog.text


def test_missing_checkpoint_path(tmp_path: Path) -> None:
    missing = tmp_path / "nope.pth"
    with pytest.raises(ValueError, match="nope.pth"):
        W.resolve_checkpoint("vit_b", missing)
    with pytest.raises(ValueError, match="model_type"):
        W.resolve_checkpoint("vit_z", "auto")


def test_auto_offline_raises_clear_error(home: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    def offline(url: str, timeout: float) -> FakeResponse:
        raise urllib.error.URLError("no network")

    monkeypatch.setattr(W, "_urlopen", offline)
    with pytest.raises(W.WeightsUnavailableError) as info:
        W.resolve_checkpoint("vit_b", "auto")
    message = str(info.value)
    assert W.WEIGHTS["vit_b"].url in message
    assert str(home / "sam_vit_b_01ec64.pth") in message
    assert "checkpoint='random'" in message and "backend='classical'" in message
    assert list(home.iterdir()) == []


def test_auto_hash_mismatch_deletes_download(home: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    target = home / "mobile_sam.pt"
    monkeypatch.setattr(W, "_urlopen", lambda url, timeout: FakeResponse(b"corrupt bytes", target))
    with pytest.raises(W.WeightsChecksumError, match="deleted"):
        W.resolve_checkpoint("vit_t", "auto")
    assert list(home.iterdir()) == []


def test_auto_download_lands_atomically(home: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    payload = b"fake weights " * 100_000
    spec = dataclasses.replace(W.WEIGHTS["vit_b"], sha256=hashlib.sha256(payload).hexdigest())
    monkeypatch.setitem(W.WEIGHTS, "vit_b", spec)
    target = home / spec.filename
    urls: list[str] = []

    def fake(url: str, timeout: float) -> FakeResponse:
        urls.append(url)
        return FakeResponse(payload, target)

    monkeypatch.setattr(W, "_urlopen", fake)
    assert W.resolve_checkpoint("vit_b", "auto") == target
    assert urls == [spec.url] and target.read_bytes() == payload
    assert [p.name for p in home.iterdir()] == [spec.filename]
    # A second resolution uses (and verifies) the cached file without downloading.
    assert W.resolve_checkpoint("vit_b", "auto") == target and len(urls) == 1


def test_auto_corrupt_cached_file_is_reported(home: Path) -> None:
    home.mkdir(parents=True)
    target = home / "sam_vit_l_0b3195.pth"
    target.write_bytes(b"truncated")
    with pytest.raises(W.WeightsChecksumError, match="sam_vit_l_0b3195.pth"):
        W.resolve_checkpoint("vit_l", "auto")
    assert target.exists()
