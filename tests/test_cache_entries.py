"""The on-disk entry format shared by every writer, and ``sam-gym cache``'s argument errors (no Ray needed)."""

import sys
import zipfile

import numpy as np
import pytest

from sam_gym.backends import make_backend
from sam_gym.cache import EmbeddingCache, cache_key, entry_bytes, parse_entry
from sam_gym.cli import main
from sam_gym.data import SyntheticShapes


def test_entry_bytes_depend_on_content_only(tmp_path):
    # np.savez stamps each zip member with the current time, so two writers of one image wrote
    # different bytes; the entry writer fixes the stamp, and the cache writes exactly its bytes.
    backend = make_backend("classical")
    image = SyntheticShapes(n=1)[0].image
    EmbeddingCache(backend, cache_dir=tmp_path).get(image)
    (path,) = tmp_path.rglob("*.npz")
    with zipfile.ZipFile(path) as archive:
        assert {info.date_time for info in archive.infolist()} == {(1980, 1, 1, 0, 0, 0)}
        assert archive.namelist()[0] == "__meta__.npy"
    key = cache_key(image, backend.model_id)
    assert path.stem == key
    arrays = backend.embedding_to_arrays(backend.encode(image))
    assert path.read_bytes() == entry_bytes(key, backend.model_id, arrays)
    parsed = parse_entry(path.read_bytes(), key, backend.model_id)
    assert sorted(parsed) == sorted(arrays) and all(np.array_equal(parsed[k], arrays[k]) for k in arrays)


def test_parse_entry_names_the_problem():
    arrays = {"features": np.arange(6, dtype=np.float32).reshape(2, 3)}
    data = entry_bytes("k" * 40, "model-a", arrays)
    with pytest.raises(ValueError, match="key or model id mismatch"):
        parse_entry(data, "k" * 40, "model-b")
    with pytest.raises(ValueError, match="key or model id mismatch"):
        parse_entry(data, "j" * 40, "model-a")
    flipped = bytearray(data)
    flipped[-200] ^= 0xFF  # inside the features payload (the zip's central directory is the last ~150 bytes)
    with pytest.raises(ValueError):
        parse_entry(bytes(flipped), "k" * 40, "model-a")
    with pytest.raises(ValueError):
        parse_entry(b"not a zip", "k" * 40, "model-a")


@pytest.mark.parametrize("extra, message", [
    (["--address", "localhost:6379"], "Expected --address only with --ray"),
    (["--num-actors", "2"], "Expected --num-actors only with --ray"),
])
def test_ray_options_without_ray_are_refused(tmp_path, capsys, extra, message):
    argv = ["cache", "--dataset", "synthetic-shapes", "--limit", "1", "--cache-dir", str(tmp_path), *extra]
    assert main(argv) == 2
    err = capsys.readouterr().err.strip()
    assert message in err and "\n" not in err
    assert not list(tmp_path.rglob("*.npz"))


def test_uri_cache_dir_without_ray_is_refused(capsys):
    # Path("s3://bucket/x") would silently be a local folder named "s3:"
    assert main(["cache", "--dataset", "synthetic-shapes", "--limit", "1", "--cache-dir", "s3://bucket/x"]) == 2
    assert "Expected a local --cache-dir without --ray, got the URI s3://bucket/x" in capsys.readouterr().err


@pytest.mark.parametrize("ray_flag", [[], ["--ray"]], ids=["local", "ray"])
def test_unwritable_cache_dir_is_one_line_error(capsys, ray_flag):
    assert main(["cache", "--dataset", "synthetic-shapes", "--limit", "1", "--cache-dir", "/proc/sam_gym_cache",
                 *ray_flag]) == 2
    err = capsys.readouterr().err.strip()
    assert "Expected --cache-dir /proc/sam_gym_cache in a writable folder" in err and "\n" not in err


def test_ray_not_installed_names_the_extra(tmp_path, capsys, monkeypatch):
    monkeypatch.setitem(sys.modules, "ray", None)  # `import ray` raises ImportError, installed or not
    assert main(["cache", "--dataset", "synthetic-shapes", "--limit", "1", "--cache-dir", str(tmp_path), "--ray"]) == 2
    err = capsys.readouterr().err.strip()
    assert 'pip install "sam-gym[ray]"' in err and "\n" not in err
