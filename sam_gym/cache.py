"""Embedding cache: each image is encoded once per backend, then served from memory or disk.

Keys are content hashes: ``sha256(image bytes, shape)`` together with the backend's ``model_id``
(which names the weights and the preprocessing), so a changed image or model never hits a stale
entry. Two levels:

* an in-memory LRU of backend-native embeddings, bounded in entries (``max_items``) and in bytes
  (``max_bytes``). Entries stay on the backend's device in the backend's dtype: a GPU-resident SAM
  embedding is never copied back to the host on a hit, and with ``half=True`` it is bf16, 2 MiB
  instead of float32's 4 MiB;
* an optional on-disk store under ``cache_dir/<model_id>/<key>.npz``, written atomically (temporary
  file then ``os.replace``) and validated on read (format version, key, model id and a sha256 of
  the arrays). A corrupt or mismatched entry is recomputed with a warning, never a crash. The
  backend's ``embedding_from_arrays`` puts an entry read from disk straight onto its device, in its
  dtype (``sam-gym cache`` precomputes the store).

An entry's bytes depend only on its key, model id and arrays (:func:`entry_bytes`: an ``.npz`` with
fixed zip timestamps), so every writer, this cache or ``sam-gym cache --ray``'s encoder actors
(:mod:`sam_gym.ray_cache`), writes the same file for the same image; :func:`cache_key`,
:func:`model_folder` and :func:`parse_entry` are the key, the folder and the check they share.
"""

from __future__ import annotations

import hashlib
import io
import json
import logging
import re
import warnings
import zipfile
from collections import OrderedDict
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from sam_gym.atomic import atomic_write_bytes
from sam_gym.backends.base import Embedding, PromptableSegmenter, validate_image
from sam_gym.data.hashing import image_hash

__all__ = ["DEFAULT_MAX_BYTES", "CacheStats", "EmbeddingCache", "cache_key", "embedding_nbytes", "entry_bytes",
           "model_folder", "parse_entry"]

logger = logging.getLogger(__name__)

_FORMAT_VERSION = 1
#: Default byte bound of the in-memory LRU: 4 GiB, 1024 float32 SAM embeddings (2048 in bf16).
DEFAULT_MAX_BYTES = 4 * 2**30


def embedding_nbytes(embedding: Embedding) -> int:
    """Bytes held by an embedding: every array of :meth:`~sam_gym.backends.base.Embedding.arrays`.

    Arrays may be numpy arrays or torch tensors on any device. Storage shared between embeddings
    (the null backend's one zero map) is counted for each of them.
    """
    size = 0
    for array in embedding.arrays():
        if hasattr(array, "element_size") and hasattr(array, "numel"):  # a torch tensor, without importing torch
            size += int(array.element_size()) * int(array.numel())
        else:
            size += int(np.asarray(array).nbytes)
    return size


def _arrays_digest(arrays: dict[str, np.ndarray]) -> str:
    h = hashlib.sha256()
    for name in sorted(arrays):
        arr = np.ascontiguousarray(arrays[name])
        h.update(f"{name}|{arr.shape}|{arr.dtype}|".encode())
        h.update(arr.data)
    return h.hexdigest()


def cache_key(image: np.ndarray, model_id: str) -> str:
    """The cache key of an ``(H, W, 3)`` uint8 image for a backend's ``model_id`` (40 hex digits)."""
    return hashlib.sha256(f"{image_hash(image)}|{model_id}".encode()).hexdigest()[:40]


def model_folder(model_id: str) -> str:
    """The name of the store's sub-folder for a backend's ``model_id`` (safe on every filesystem)."""
    return re.sub(r"[^A-Za-z0-9._-]+", "_", model_id)[:120]


#: Timestamp of every member of an entry's zip (the earliest zip allows), so that its bytes depend on content only.
_ZIP_TIME = (1980, 1, 1, 0, 0, 0)


def entry_bytes(key: str, model_id: str, arrays: dict[str, np.ndarray]) -> bytes:
    """The bytes of an on-disk entry: an ``.npz`` of ``arrays`` plus ``__meta__`` (version, key, model id, sha256).

    The layout is ``np.savez``'s (one uncompressed ``NAME.npy`` member per array, ``__meta__`` first,
    then ``arrays`` in order), read back with ``np.load``; unlike ``np.savez`` the members carry a
    fixed timestamp, so the same arrays always give the same bytes, whoever writes them.

    Args:
        key: The entry's :func:`cache_key`.
        model_id: The backend's ``model_id``.
        arrays: ``backend.embedding_to_arrays(embedding)``.
    """
    meta = {"version": _FORMAT_VERSION, "key": key, "model_id": model_id, "sha256": _arrays_digest(arrays)}
    members = {"__meta__": np.frombuffer(json.dumps(meta).encode(), dtype=np.uint8), **arrays}
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, mode="w", compression=zipfile.ZIP_STORED, allowZip64=True) as archive:
        for name, value in members.items():
            info = zipfile.ZipInfo(f"{name}.npy", date_time=_ZIP_TIME)
            with archive.open(info, "w", force_zip64=True) as member:  # force_zip64 as np.savez (numpy gh-10776)
                np.lib.format.write_array(member, np.asanyarray(value), allow_pickle=False)
    return buffer.getvalue()


def parse_entry(data: bytes, key: str, model_id: str) -> dict[str, np.ndarray]:
    """The arrays of an entry's bytes, after checking its format version, key, model id and checksum.

    Raises:
        ValueError: Naming the problem, if the bytes are not a valid entry of ``key`` for ``model_id``.
    """
    try:
        with np.load(io.BytesIO(data), allow_pickle=False) as archive:
            arrays = {name: archive[name] for name in archive.files}
        meta = json.loads(arrays.pop("__meta__").tobytes().decode())
    except Exception as exc:  # noqa: BLE001 - any unreadable file is reported the same way
        raise ValueError(f"{type(exc).__name__}: {exc}") from exc
    if not isinstance(meta, dict) or meta.get("version") != _FORMAT_VERSION:
        version = meta.get("version") if isinstance(meta, dict) else None
        raise ValueError(f"format version {version} != {_FORMAT_VERSION}")
    if meta.get("key") != key or meta.get("model_id") != model_id:
        raise ValueError("key or model id mismatch")
    if meta.get("sha256") != _arrays_digest(arrays):
        raise ValueError("checksum mismatch")
    return arrays


@dataclass
class CacheStats:
    """Counters of an :class:`EmbeddingCache`.

    Attributes:
        memory_hits: Lookups served from the in-memory LRU.
        disk_hits: Lookups served from the on-disk store.
        encoder_calls: Lookups that ran the backend's encoder.
        corrupt: On-disk entries found corrupt or mismatched (and recomputed).
    """

    memory_hits: int = 0
    disk_hits: int = 0
    encoder_calls: int = 0
    corrupt: int = 0


class EmbeddingCache:
    """Serve ``backend.encode(image)`` from memory or disk when possible.

    Args:
        backend: The backend whose embeddings are cached.
        cache_dir: Folder of the on-disk store, or ``None`` for memory only.
        max_items: Most embeddings in the in-memory LRU.
        max_bytes: Most bytes in the in-memory LRU (:func:`embedding_nbytes`: a SAM embedding is
            4 MiB in float32, 2 MiB in bf16), or ``None`` for no byte bound. The least recently used
            entries are evicted until both bounds hold; the newest entry is always kept, even if it
            alone is larger than ``max_bytes``.

    Example:
        >>> from sam_gym.backends import make_backend
        >>> from sam_gym.data import make_dataset
        >>> cache = EmbeddingCache(make_backend("classical"))
        >>> image = make_dataset("synthetic-shapes", n=1)[0].image
        >>> _ = cache.get(image); _ = cache.get(image)
        >>> cache.stats.encoder_calls, cache.stats.memory_hits
        (1, 1)
    """

    def __init__(
        self,
        backend: PromptableSegmenter,
        cache_dir: str | Path | None = None,
        max_items: int = 64,
        max_bytes: int | None = DEFAULT_MAX_BYTES,
    ) -> None:
        if not isinstance(max_items, int) or isinstance(max_items, bool) or max_items < 1:
            raise ValueError(f"Expected max_items to be a positive integer, got {max_items!r}")
        if max_bytes is not None and (not isinstance(max_bytes, int) or isinstance(max_bytes, bool) or max_bytes < 1):
            raise ValueError(f"Expected max_bytes to be a positive integer or None, got {max_bytes!r}")
        self.backend = backend
        self.max_items = max_items
        self.max_bytes = max_bytes
        self.stats = CacheStats()
        self._memory: OrderedDict[str, Embedding] = OrderedDict()
        self._sizes: dict[str, int] = {}
        self._nbytes = 0
        self.directory: Path | None = None
        if cache_dir is not None:
            self.directory = Path(cache_dir).expanduser() / model_folder(backend.model_id)
            try:
                self.directory.mkdir(parents=True, exist_ok=True)
            except OSError as exc:
                raise ValueError(
                    f"Expected cache_dir to be a writable folder, could not create {self.directory}: {exc}"
                ) from exc

    def __len__(self) -> int:
        return len(self._memory)

    @property
    def nbytes(self) -> int:
        """Bytes of the embeddings in the in-memory LRU (:func:`embedding_nbytes`, on whatever device)."""
        return self._nbytes

    def key(self, image: np.ndarray) -> str:
        """Return the cache key of ``image`` for this cache's backend."""
        return cache_key(image, self.backend.model_id)

    def contains(self, image: np.ndarray) -> bool:
        """Whether ``image`` is cached in memory or on disk (without loading it)."""
        key = self.key(image)
        return key in self._memory or (self.directory is not None and self._path(key).is_file())

    def get(self, image: np.ndarray, key: str | None = None) -> Embedding:
        """Return the embedding of ``image``, encoding it only on a miss.

        Args:
            image: ``(H, W, 3)`` uint8 RGB image.
            key: A precomputed :meth:`key` of the image, to skip hashing it again.
        """
        key = key or self.key(validate_image(image))
        hit = self._memory.get(key)
        if hit is not None:
            self._memory.move_to_end(key)
            self.stats.memory_hits += 1
            return hit
        embedding = self._read(key) if self.directory is not None else None
        if embedding is not None:
            self.stats.disk_hits += 1
        else:
            embedding = self.backend.encode(image)
            self.stats.encoder_calls += 1
            if self.directory is not None:
                self._write(key, embedding)
        self._remember(key, embedding)
        return embedding

    def clear_memory(self) -> None:
        """Drop the in-memory entries (the on-disk store is kept)."""
        self._memory.clear()
        self._sizes.clear()
        self._nbytes = 0

    def _remember(self, key: str, embedding: Embedding) -> None:
        if key in self._memory:
            self._nbytes -= self._sizes[key]
        self._memory[key] = embedding
        self._memory.move_to_end(key)
        self._sizes[key] = embedding_nbytes(embedding)
        self._nbytes += self._sizes[key]
        while len(self._memory) > 1 and (
            len(self._memory) > self.max_items or (self.max_bytes is not None and self._nbytes > self.max_bytes)
        ):
            old, _ = self._memory.popitem(last=False)
            self._nbytes -= self._sizes.pop(old)

    def _path(self, key: str) -> Path:
        assert self.directory is not None  # internal invariant, not user input
        return self.directory / f"{key}.npz"

    def _write(self, key: str, embedding: Embedding) -> None:
        path = self._path(key)
        data = entry_bytes(key, self.backend.model_id, self.backend.embedding_to_arrays(embedding))
        try:
            atomic_write_bytes(path, data)
        except OSError as exc:
            warnings.warn(f"Could not write the embedding cache entry {path}: {exc}", stacklevel=3)

    def _read(self, key: str) -> Embedding | None:
        path = self._path(key)
        if not path.is_file():
            return None
        try:
            arrays = parse_entry(path.read_bytes(), key, self.backend.model_id)
        except (OSError, ValueError) as exc:
            problem = str(exc)
        else:
            try:
                return self.backend.embedding_from_arrays(arrays)
            except Exception as exc:  # noqa: BLE001 - arrays the backend refuses are recomputed, never fatal
                problem = f"{type(exc).__name__}: {exc}"
        self.stats.corrupt += 1
        warnings.warn(f"Embedding cache entry {path} is invalid ({problem}); recomputing it", stacklevel=3)
        path.unlink(missing_ok=True)
        return None
