import numpy as np
import pytest

from sam_gym.backends import make_backend
from sam_gym.cache import EmbeddingCache
from sam_gym.data import SyntheticShapes


class CountingBackend:
    """Wraps a backend's encode to count calls (a test spy, not a fake segmenter)."""

    def __init__(self, backend):
        self.inner = backend
        self.calls = 0
        backend_encode = backend.encode

        def encode(image):
            self.calls += 1
            return backend_encode(image)

        backend.encode = encode


@pytest.fixture()
def backend():
    return make_backend("classical")


def test_memory_hit_and_lru(backend):
    spy = CountingBackend(backend)
    cache = EmbeddingCache(backend, max_items=2)
    imgs = [SyntheticShapes(n=3)[i].image for i in range(3)]
    cache.get(imgs[0])
    cache.get(imgs[0])
    assert spy.calls == 1 and cache.stats.memory_hits == 1
    cache.get(imgs[1])
    cache.get(imgs[2])  # evicts imgs[0]
    assert len(cache) == 2
    cache.get(imgs[0])
    assert spy.calls == 4


def test_disk_hit_across_instances_and_identical_decode(backend, tmp_path):
    image = SyntheticShapes(n=1)[0].image
    first = EmbeddingCache(backend, cache_dir=tmp_path)
    emb1 = first.get(image)
    spy = CountingBackend(backend)
    second = EmbeddingCache(backend, cache_dir=tmp_path)
    emb2 = second.get(image)
    assert spy.calls == 0 and second.stats.disk_hits == 1
    pts, lab = np.array([[80.0, 64.0]]), np.array([1])
    assert np.array_equal(backend.decode(emb1, pts, lab).mask(), backend.decode(emb2, pts, lab).mask())
    assert not list(tmp_path.rglob("*.tmp"))  # atomic writes leave no temporary file


@pytest.mark.parametrize("damage", ["truncate", "garbage", "flip"])
def test_corrupt_entry_is_recomputed(backend, tmp_path, damage):
    image = SyntheticShapes(n=1)[0].image
    cache = EmbeddingCache(backend, cache_dir=tmp_path)
    cache.get(image)
    (path,) = list(tmp_path.rglob("*.npz"))
    data = bytearray(path.read_bytes())
    if damage == "truncate":
        data = data[: len(data) // 2]
    elif damage == "garbage":
        data = bytearray(b"\x00" * 64)
    else:  # a flipped byte inside the array payload: caught by the checksum or the zip CRC
        data[len(data) // 2] ^= 0xFF
    path.write_bytes(bytes(data))
    spy = CountingBackend(backend)
    fresh = EmbeddingCache(backend, cache_dir=tmp_path)
    with pytest.warns(UserWarning, match="invalid"):
        fresh.get(image)
    assert spy.calls == 1 and fresh.stats.corrupt == 1
    # the entry was rewritten and is valid again
    again = EmbeddingCache(backend, cache_dir=tmp_path)
    again.get(image)
    assert again.stats.disk_hits == 1


def test_key_depends_on_content_and_model(backend):
    image = SyntheticShapes(n=1)[0].image
    cache = EmbeddingCache(backend)
    other = image.copy()
    other[0, 0, 0] ^= 1
    assert cache.key(image) != cache.key(other)
    assert cache.key(image) == cache.key(image.copy())


def test_bad_arguments(backend):
    with pytest.raises(ValueError, match="max_items"):
        EmbeddingCache(backend, max_items=0)
    with pytest.raises(ValueError, match=r"\(H, W, 3\)"):
        EmbeddingCache(backend).get(np.zeros((10, 10), np.uint8))


def test_cache_command_precomputes_then_hits(tmp_path, capsys):
    from sam_gym.cli import main

    args = ["cache", "--dataset", "synthetic-shapes", "--limit", "3", "--cache-dir", str(tmp_path)]
    assert main(args) == 0
    assert "3 encoded" in capsys.readouterr().out
    assert len(list(tmp_path.rglob("*.npz"))) == 3
    assert main(args) == 0
    assert "0 encoded, 3 already cached" in capsys.readouterr().out


def test_cache_command_bad_dataset_is_one_line_error(tmp_path, capsys):
    from sam_gym.cli import main

    assert main(["cache", "--dataset", str(tmp_path / "missing"), "--cache-dir", str(tmp_path)]) == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith("sam-gym cache: error:") and "\n" not in err


# ----------------------------------------------------------------------------- bytes, dtype and device


def test_byte_bound_evicts_least_recent(backend):
    from sam_gym.cache import embedding_nbytes

    spy = CountingBackend(backend)
    imgs = [SyntheticShapes(n=3)[i].image for i in range(3)]
    size = embedding_nbytes(backend.encode(imgs[0]))
    spy.calls = 0
    cache = EmbeddingCache(backend, max_items=10, max_bytes=2 * size + size // 2)
    for image in imgs:
        cache.get(image)
    assert len(cache) == 2 and cache.nbytes == 2 * size <= cache.max_bytes
    cache.get(imgs[2])
    cache.get(imgs[1])
    assert spy.calls == 3  # both still held
    cache.get(imgs[0])  # was evicted by the byte bound, not by max_items
    assert spy.calls == 4 and len(cache) == 2
    cache.clear_memory()
    assert len(cache) == 0 and cache.nbytes == 0


def test_newest_entry_is_kept_even_above_the_byte_bound(backend):
    cache = EmbeddingCache(backend, max_bytes=1)
    imgs = [SyntheticShapes(n=2)[i].image for i in range(2)]
    first = cache.get(imgs[0])
    assert len(cache) == 1 and cache.get(imgs[0]) is first
    cache.get(imgs[1])
    assert len(cache) == 1 and cache.stats.memory_hits == 1


@pytest.mark.parametrize("value", [0, -5, 1.5, True])
def test_bad_max_bytes(backend, value):
    with pytest.raises(ValueError, match="max_bytes"):
        EmbeddingCache(backend, max_bytes=value)


@pytest.fixture()
def tiny_sam():
    pytest.importorskip("torch")
    pytest.importorskip("segment_anything")
    from sam_gym.testing import tiny_sam_backend

    return tiny_sam_backend()


def _as_bf16(backend):
    """What ``half=True`` does to a SAM backend on CUDA (bf16 encoder, decoder and embeddings), here on the CPU."""
    import torch

    backend.model.image_encoder.to(torch.bfloat16)
    backend.model.mask_decoder.to(torch.bfloat16)
    backend._dense_pe = backend._dense_pe.to(torch.bfloat16)
    backend.dtype = torch.bfloat16
    backend.model_id = backend.model_id.replace("-fp32", "-bf16")
    return backend


@pytest.mark.parametrize("bf16", [False, True], ids=["fp32", "bf16"])
def test_sam_entries_keep_dtype_and_device_in_memory_and_on_disk(tiny_sam, tmp_path, bf16):
    import torch

    from sam_gym.cache import embedding_nbytes

    backend = _as_bf16(tiny_sam) if bf16 else tiny_sam
    dtype = torch.bfloat16 if bf16 else torch.float32
    image = SyntheticShapes(n=1)[0].image
    cache = EmbeddingCache(backend, cache_dir=tmp_path)
    emb = cache.get(image)
    assert emb.features.dtype == dtype and emb.features.device == backend.device
    assert cache.get(image) is emb  # a memory hit is the very tensor, no copy
    c, h, w = backend.embedding_shape
    assert embedding_nbytes(emb) == cache.nbytes == c * h * w * (2 if bf16 else 4) + 2 * 8  # + extras input_size

    (path,) = list(tmp_path.rglob("*.npz"))
    with np.load(path) as stored:
        name = "features_bf16" if bf16 else "features"
        assert stored[name].dtype == (np.uint16 if bf16 else np.float32)  # stored in the backend's dtype
    fresh = EmbeddingCache(backend, cache_dir=tmp_path)
    loaded = fresh.get(image)
    assert fresh.stats.disk_hits == 1 and fresh.stats.encoder_calls == 0
    assert loaded.features.dtype == dtype and loaded.features.device == backend.device
    assert torch.equal(loaded.features, emb.features)  # exact round trip, bf16 bits included
    assert loaded.image_size == emb.image_size and np.array_equal(loaded.extras["input_size"], emb.extras["input_size"])
    pts, lab = np.array([[80.0, 64.0]]), np.array([1])
    assert torch.equal(backend.decode(emb, pts, lab).low_res_logits, backend.decode(loaded, pts, lab).low_res_logits)


def test_float32_entry_loads_into_a_bf16_backend(tiny_sam):
    import torch

    image = SyntheticShapes(n=1)[0].image
    arrays = tiny_sam.embedding_to_arrays(tiny_sam.encode(image))
    loaded = _as_bf16(tiny_sam).embedding_from_arrays(arrays)
    assert loaded.features.dtype == torch.bfloat16
    assert torch.equal(loaded.features, torch.from_numpy(arrays["features"]).to(torch.bfloat16))
    with pytest.raises(ValueError, match="Expected cached features_bf16 of shape"):
        tiny_sam.embedding_from_arrays({**arrays, "features_bf16": arrays["features"][:, :1]})


def test_half_without_bf16_is_refused_not_run_in_fp16(monkeypatch):
    torch = pytest.importorskip("torch")
    pytest.importorskip("segment_anything")
    from sam_gym.backends.sam import SamBackend
    from sam_gym.testing import tiny_sam

    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    monkeypatch.setattr(torch.cuda, "is_bf16_supported", lambda *a, **k: False)
    with pytest.raises(ValueError, match=r"^Expected a GPU with bf16 for half=True, got device 'cuda'.*fp16") as info:
        SamBackend(model=tiny_sam(), device="cuda", half=True)
    assert "\n" not in str(info.value)
