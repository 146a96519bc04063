"""``sam-gym cache --ray``: encode a dataset's images with Ray Data into the embedding store.

Three steps, each where it belongs:

1. a probe task builds the backend once on the cluster (on a GPU when the actors get one) and
   reports its ``model_id``, the name of the store's sub-folder and part of every key;
2. Ray Data tasks read the images, compute their :func:`~sam_gym.cache.cache_key` and check
   whether the store already holds a valid entry (:func:`~sam_gym.cache.parse_entry`); the driver
   then keeps each distinct image once (instance datasets repeat images) and drops those already
   stored, so nothing is encoded twice and a second run encodes nothing;
3. ``map_batches`` with a pool of encoder actors (:class:`EncoderActor`), each of which builds the
   backend once (one GPU per actor when the backend runs on CUDA and the cluster has GPUs) and
   writes one entry per image with :func:`~sam_gym.cache.entry_bytes`, the writer of the
   single-process :class:`~sam_gym.cache.EmbeddingCache`, so both write the same bytes.

The cache folder is a local path (written with :mod:`sam_gym.atomic`, like the single-process
cache) or any URI that pyarrow or fsspec understands (``s3://bucket/prefix``, ``gs://...``,
``file:///abs/path``): an entry is written to a temporary name beside it, then moved into place,
so a reader never sees a partial entry. The dataset's files must be readable at the same path on
every node (a shared filesystem), since the tasks and actors read the images themselves.

Ray is imported only by these functions (``pip install "sam-gym[ray]"``); ``import sam_gym`` does
not import it.
"""

from __future__ import annotations

import socket
import uuid
import warnings
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from sam_gym.atomic import atomic_write_bytes
from sam_gym.cache import cache_key, entry_bytes, model_folder, parse_entry

__all__ = ["EncoderActor", "EntryStore", "RayCacheReport", "check_address", "check_cache_dir", "import_ray",
           "precompute"]

#: Entry states reported by the key step.
_VALID, _MISSING = "valid", "missing"


def import_ray() -> Any:
    """Import and return ``ray`` (with Ray Data).

    Raises:
        ImportError: In one line, naming the extra to install, when Ray is not installed.
    """
    try:
        import ray
        import ray.data  # noqa: F401 - Ray Data ships in ray[data]; ray alone lacks its dependencies
    except ImportError as exc:
        raise ImportError(f'sam-gym cache --ray needs Ray with Ray Data: pip install "sam-gym[ray]" ({exc})') from exc
    return ray


def check_address(address: str) -> None:
    """Check that a Ray cluster address answers before ``ray.init`` (which waits for minutes on a wrong one).

    Args:
        address: ``HOST:PORT`` of the head node's GCS, ``ray://HOST:PORT`` (Ray Client), or ``"auto"``
            / ``"local"`` (left to ``ray.init``).

    Raises:
        ValueError: If the address is malformed or nothing listens there.
    """
    if address in ("auto", "local"):
        return
    hostport = address.removeprefix("ray://")
    host, _, port = hostport.rpartition(":")
    if not host or not port.isdigit():
        raise ValueError(f"Expected --address to be HOST:PORT, ray://HOST:PORT or auto, got {address!r}")
    try:
        socket.create_connection((host.strip("[]"), int(port)), timeout=5).close()
    except OSError as exc:
        raise ValueError(f"Expected --address to be a running Ray cluster, could not reach {address} "
                         f"({exc.strerror or exc}); start one with `ray start --head` or pass its address") from exc


class EntryStore:
    """The entries of one backend in a cache folder: ``<root>/<model_folder(model_id)>/<key>.npz``.

    Picklable (it holds strings; each process resolves the filesystem on first use), so the same
    store goes to every task and actor.

    Args:
        root: A local folder, or a URI that pyarrow or fsspec understands.
        model_id: The backend's ``model_id``.
    """

    def __init__(self, root: str, model_id: str) -> None:
        self.root, self.model_id = root, model_id
        self._fs: Any = None
        self._base = ""

    def __getstate__(self) -> dict[str, Any]:
        return {"root": self.root, "model_id": self.model_id, "_fs": None, "_base": ""}

    @property
    def is_local(self) -> bool:
        """Whether :attr:`root` is a local path (not a URI)."""
        return "://" not in self.root

    @property
    def folder(self) -> str:
        """The folder of this backend's entries (a path, or a path on :attr:`root`'s filesystem)."""
        if self.is_local:
            return str(Path(self.root).expanduser() / model_folder(self.model_id))
        return f"{self._filesystem()[1].rstrip('/')}/{model_folder(self.model_id)}"

    @property
    def location(self) -> str:
        """:attr:`folder` as the user named it (a URI stays a URI), for messages."""
        return self.folder if self.is_local else f"{self.root.rstrip('/')}/{model_folder(self.model_id)}"

    def path(self, key: str) -> str:
        """Where the entry of ``key`` is stored."""
        return f"{self.folder}/{key}.npz"

    def _filesystem(self) -> tuple[Any, str]:
        if self._fs is None:
            self._fs, self._base = _resolve_filesystem(self.root)
        return self._fs, self._base

    def check_writable(self) -> None:
        """Create this backend's folder and write and remove a probe file in it.

        Raises:
            ValueError: If the folder cannot be created or written.
        """
        _check_folder(self._filesystem()[0] if not self.is_local else None, self.folder, self.location)

    def read(self, key: str) -> bytes | None:
        """The bytes of the entry of ``key``, or ``None`` when there is none."""
        path = self.path(key)
        if self.is_local:
            return Path(path).read_bytes() if Path(path).is_file() else None
        from pyarrow import fs as pafs

        fs = self._filesystem()[0]
        if fs.get_file_info(path).type != pafs.FileType.File:
            return None
        with fs.open_input_stream(path) as stream:
            return bytes(stream.read())

    def write(self, key: str, data: bytes) -> None:
        """Store ``data`` as the entry of ``key``: a temporary file beside it, then a rename."""
        path = self.path(key)
        if self.is_local:
            atomic_write_bytes(path, data)
            return
        fs = self._filesystem()[0]
        fs.create_dir(self.folder, recursive=True)
        temporary = f"{self.folder}/.{key}.npz.{uuid.uuid4().hex[:8]}.tmp"
        with fs.open_output_stream(temporary) as out:
            out.write(data)
        fs.move(temporary, path)


def check_cache_dir(root: str) -> None:
    """Check, before Ray starts, that a cache folder (a local path or a URI) can be created and written.

    Raises:
        ValueError: If ``root`` is a URI that neither pyarrow nor fsspec understands, or the folder
            cannot be created or written.
    """
    if "://" not in root:
        _check_folder(None, str(Path(root).expanduser()), root)
    else:
        filesystem, path = _resolve_filesystem(root)
        _check_folder(filesystem, path.rstrip("/"), root)


def _check_folder(filesystem: Any, folder: str, shown: str) -> None:
    """Create ``folder`` (local when ``filesystem`` is ``None``), then write and remove a probe file in it."""
    probe = f"{folder}/.write-probe-{uuid.uuid4().hex[:8]}.tmp"
    try:
        if filesystem is None:
            Path(folder).mkdir(parents=True, exist_ok=True)
            Path(probe).write_bytes(b"")
            Path(probe).unlink()
        else:
            filesystem.create_dir(folder, recursive=True)
            with filesystem.open_output_stream(probe) as out:
                out.write(b"")
            filesystem.delete_file(probe)
    except (OSError, ValueError) as exc:
        raise ValueError(f"Expected --cache-dir to be a writable folder, could not write to {shown} "
                         f"({getattr(exc, 'strerror', None) or exc})") from exc


def _resolve_filesystem(uri: str) -> tuple[Any, str]:
    """A pyarrow filesystem and the path on it for ``uri``: pyarrow's own, else fsspec's wrapped for pyarrow."""
    from pyarrow import fs as pafs

    try:
        return pafs.FileSystem.from_uri(uri)
    except Exception as arrow_exc:  # noqa: BLE001 - pyarrow raises ArrowInvalid or OSError; fsspec may know it
        try:
            import fsspec
        except ImportError:
            raise ValueError(f"Expected --cache-dir to be a local folder or a URI that pyarrow understands, "
                             f"got {uri!r} ({arrow_exc})") from arrow_exc
        try:
            filesystem, path = fsspec.core.url_to_fs(uri)
        except (ImportError, ValueError) as exc:
            raise ValueError(f"Expected --cache-dir to be a local folder or a URI that pyarrow or fsspec understands, "
                             f"got {uri!r} ({exc})") from exc
        return pafs.PyFileSystem(pafs.FSSpecHandler(filesystem)), path


def _key_batch(batch: dict[str, np.ndarray], dataset: Any, store: EntryStore) -> dict[str, np.ndarray]:
    """Key step (a Ray Data task): each sample's cache key, and whether a valid entry holds it.

    A sample that cannot be read gives its error in the ``error`` column (Ray Data would pass
    on only the text of a raised exception, with the remote traceback, not the exception).
    """
    keys, states, errors = [], [], []
    for index in batch["id"]:
        key, state, error = "", _MISSING, ""
        try:
            key = cache_key(dataset[int(index)].image, store.model_id)
            data = store.read(key)
        except (OSError, ValueError) as exc:
            error = str(exc) or type(exc).__name__
        else:
            if data is not None:
                try:
                    parse_entry(data, key, store.model_id)
                    state = _VALID
                except ValueError as exc:
                    state = f"invalid ({exc})"
        keys.append(key)
        states.append(state)
        errors.append(error)
    return {"index": np.asarray(batch["id"], dtype=np.int64), "key": np.asarray(keys), "state": np.asarray(states),
            "error": np.asarray(errors)}


class EncoderActor:
    """Encode step (a Ray Data actor): builds the backend once, then encodes and stores each batch's images.

    Args:
        dataset: The dataset (picklable; its files readable on this node).
        backend: :func:`~sam_gym.backends.make_backend` arguments (``backend``, ``checkpoint``, ...).
        store: Where to write.

    Raises:
        ValueError: If this actor's backend has another ``model_id`` than the probe's (random weights
            differ in every process).
    """

    def __init__(self, dataset: Any, backend: Mapping[str, Any], store: EntryStore) -> None:
        from sam_gym.backends import make_backend

        self.dataset, self.store = dataset, store
        self.backend = make_backend(**backend)
        if self.backend.model_id != store.model_id:
            raise ValueError(f"Expected every encoder actor's backend to have model id {store.model_id!r}, got "
                             f"{self.backend.model_id!r} (random weights differ in every process: use a weights file)")

    def __call__(self, batch: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
        """Encode and store the images of ``batch`` (columns ``index``, ``key``); ``error`` says which failed."""
        errors = []
        for index, key in zip(batch["index"], batch["key"], strict=True):
            try:
                embedding = self.backend.encode(self.dataset[int(index)].image)
                arrays = self.backend.embedding_to_arrays(embedding)
                self.store.write(str(key), entry_bytes(str(key), self.store.model_id, arrays))
            except (OSError, ValueError) as exc:  # returned, as in the key step, to reach the driver whole
                errors.append(str(exc) or type(exc).__name__)
            else:
                errors.append("")
        return {"index": np.asarray(batch["index"]), "key": np.asarray(batch["key"]), "error": np.asarray(errors)}


def _probe(backend: Mapping[str, Any]) -> tuple[str, str]:
    """The probe task: build the backend once, return its ``model_id`` and description."""
    from sam_gym.backends import make_backend

    built = make_backend(**backend)
    return built.model_id, built.description


@dataclass(frozen=True)
class RayCacheReport:
    """What :func:`precompute` did.

    Attributes:
        images: Distinct images in the dataset.
        encoded: Images encoded (and written) by this run.
        cached: Images whose valid entry was already stored.
        repaired: Stored entries found invalid, and rewritten.
        folder: Where the entries are.
        description: The backend's description.
        actors: Encoder actors started (0 when nothing needed encoding).
        gpus_per_actor: GPUs each actor held.
    """

    images: int
    encoded: int
    cached: int
    repaired: int
    folder: str
    description: str
    actors: int
    gpus_per_actor: float


def _raise_row_error(rows: list[dict[str, Any]], dataset: Any, step: str) -> None:
    """Raise the first error that the rows of a step report, naming the sample."""
    from sam_gym.data.base import sample_source

    failed = sorted((int(row["index"]), str(row["error"])) for row in rows if str(row["error"]))
    if failed:
        index, error = failed[0]
        raise ValueError(f"{error} ({step} of sample {index}, {sample_source(dataset, index)}; "
                         f"{len(failed)} sample(s) failed)")


def _wants_gpu(backend: Mapping[str, Any], resources: Mapping[str, float]) -> bool:
    """Whether the backend runs on CUDA: it has weights, and ``device`` is CUDA, or unset on a cluster with GPUs.

    Raises:
        ValueError: For a CUDA ``device`` on a cluster without GPUs.
    """
    from sam_gym.backends import backend_entry

    device = str(backend.get("device") or "")
    if not backend_entry(str(backend.get("backend", "classical"))).checkpoint or device == "cpu":
        return False
    if device.startswith("cuda") and resources.get("GPU", 0) < 1:
        raise ValueError(f"Expected GPUs in the Ray cluster for --device {device}, got none "
                         f"(resources {dict(resources)}); pass --device cpu")
    return device.startswith("cuda") or resources.get("GPU", 0) >= 1


def precompute(dataset: Any, backend: Mapping[str, Any], cache_dir: str, *, num_actors: int | None = None,
               batch_size: int = 16) -> RayCacheReport:
    """Encode every distinct image of ``dataset`` not yet stored, on the connected Ray cluster.

    ``ray.init`` must have been called (:mod:`sam_gym.commands.cache` does it).

    Args:
        dataset: A dataset (``len`` and ``[i].image``), picklable, its files readable on every node.
        backend: :func:`~sam_gym.backends.make_backend` arguments, e.g. ``{"backend": "sam_vit_h",
            "checkpoint": "/shared/sam_vit_h.pth"}``.
        cache_dir: The cache folder: a local path or a pyarrow/fsspec URI.
        num_actors: Encoder actors; default: the cluster's GPUs for a CUDA backend, else its CPUs.
        batch_size: Images per batch handed to an actor.

    The backend runs on CUDA, and the probe and each actor get one GPU, when it has weights and
    ``device`` is CUDA, or unset on a cluster with GPUs; otherwise each actor gets one CPU.

    Raises:
        ValueError: On a bad argument, an unwritable cache folder, or a backend error on the cluster.
    """
    ray = import_ray()
    for name, value in (("num_actors", num_actors), ("batch_size", batch_size)):
        if value is not None and (not isinstance(value, int) or isinstance(value, bool) or value < 1):
            raise ValueError(f"Expected {name} to be a positive integer, got {value!r}")
    resources = ray.cluster_resources()
    uses_gpu = _wants_gpu(backend, resources)
    gpus = 1.0 if uses_gpu else 0.0
    try:
        model_id, description = ray.get(ray.remote(num_cpus=1, num_gpus=gpus)(_probe).remote(dict(backend)))
    except ray.exceptions.RayTaskError as exc:
        if isinstance(exc.cause, (ValueError, ImportError, FileNotFoundError)):
            raise exc.cause from None  # the backend's own one-line error, not Ray's wrapper with the remote traceback
        raise
    store = EntryStore(str(cache_dir), model_id)
    store.check_writable()
    keyed = ray.data.range(len(dataset)).map_batches(
        _key_batch, fn_kwargs={"dataset": dataset, "store": store}, batch_size=batch_size).take_all()
    _raise_row_error(keyed, dataset, "reading")
    first: dict[str, tuple[int, str]] = {}
    for row in sorted(keyed, key=lambda r: int(r["index"])):
        first.setdefault(str(row["key"]), (int(row["index"]), str(row["state"])))
    todo = [(index, key) for key, (index, state) in first.items() if state != _VALID]
    repaired = 0
    for key, (_, state) in first.items():
        if state not in (_VALID, _MISSING):
            repaired += 1
            warnings.warn(f"Embedding cache entry {store.location}/{key}.npz is {state}; recomputing it", stacklevel=2)
    actors = 0
    if todo:
        actors = min(num_actors or max(1, int(resources.get("GPU" if uses_gpu else "CPU", 1))), len(todo))
        items = [{"index": index, "key": key} for index, key in todo]
        written = ray.data.from_items(items).map_batches(
            EncoderActor, fn_constructor_kwargs={"dataset": dataset, "backend": dict(backend), "store": store},
            batch_size=batch_size, compute=ray.data.ActorPoolStrategy(size=actors), num_gpus=gpus).take_all()
        _raise_row_error(written, dataset, "encoding")
        if sorted(str(row["key"]) for row in written) != sorted(key for _, key in todo):
            raise RuntimeError("Expected the encoder actors to write every missing entry, some are missing")
    return RayCacheReport(images=len(first), encoded=len(todo), cached=len(first) - len(todo), repaired=repaired,
                          folder=store.location, description=description, actors=actors, gpus_per_actor=gpus)
