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
