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
"""

from __future__ import annotations

import hashlib
import json
import logging
import re
import warnings
from collections import OrderedDict
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from sam_gym.atomic import atomic_write
from sam_gym.backends.base import Embedding, PromptableSegmenter, validate_image
from sam_gym.data.hashing import image_hash

__all__ = ["DEFAULT_MAX_BYTES", "CacheStats", "EmbeddingCache", "embedding_nbytes"]

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
            safe_model = re.sub(r"[^A-Za-z0-9._-]+", "_", backend.model_id)[:120]
            self.directory = Path(cache_dir).expanduser() / safe_model
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
        return hashlib.sha256(f"{image_hash(image)}|{self.backend.model_id}".encode()).hexdigest()[:40]

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
        arrays = self.backend.embedding_to_arrays(embedding)
        meta = {"version": _FORMAT_VERSION, "key": key, "model_id": self.backend.model_id,
                "sha256": _arrays_digest(arrays)}
        path = self._path(key)
        meta_bytes = np.frombuffer(json.dumps(meta).encode(), dtype=np.uint8)
        try:
            payload: dict[str, Any] = {"__meta__": meta_bytes, **arrays}
            atomic_write(path, lambda fh: np.savez(fh, **payload))
        except OSError as exc:
            warnings.warn(f"Could not write the embedding cache entry {path}: {exc}", stacklevel=3)

    def _read(self, key: str) -> Embedding | None:
        path = self._path(key)
        if not path.is_file():
            return None
        try:
            with np.load(path, allow_pickle=False) as data:
                arrays = {name: data[name] for name in data.files}
            meta = json.loads(arrays.pop("__meta__").tobytes().decode())
            problem = None
            if meta.get("version") != _FORMAT_VERSION:
                problem = f"format version {meta.get('version')} != {_FORMAT_VERSION}"
            elif meta.get("key") != key or meta.get("model_id") != self.backend.model_id:
                problem = "key or model id mismatch"
            elif meta.get("sha256") != _arrays_digest(arrays):
                problem = "checksum mismatch"
            if problem is None:
                return self.backend.embedding_from_arrays(arrays)
        except Exception as exc:  # noqa: BLE001 - any unreadable file is recomputed, never fatal
            problem = f"{type(exc).__name__}: {exc}"
        self.stats.corrupt += 1
        warnings.warn(f"Embedding cache entry {path} is invalid ({problem}); recomputing it", stacklevel=3)
        path.unlink(missing_ok=True)
        return None
