"""Checkpoint resolution for the SAM / MobileSAM / SAM 2 backends: where the weights live, download, checks.

``resolve_checkpoint(model_type, checkpoint)`` turns the user's ``checkpoint`` argument into a file:

* a path: used as is (it must exist); any weights of the right architecture are accepted;
* ``"auto"``: the official file in the weights folder (``$SAM_GYM_HOME``, else
  ``~/.cache/sam_gym``), downloaded from the official URL when absent;
* ``"random"``: no file (``None``), the model keeps its random initialisation; a loud warning says
  that its masks are meaningless.

What is checked: the **full SHA-256** of every official file, both after a download and when an
existing file in the weights folder is used. A download goes to a temporary file in the weights
folder and is moved into place with ``os.replace`` only after its hash matched, so a partial or
corrupt download is never left at the final path (it is deleted and reported).

Note on the SAM file names: the hex suffix of ``sam_vit_h_4b8939.pth`` / ``sam_vit_l_0b3195.pth`` /
``sam_vit_b_01ec64.pth`` is the start of the file's **MD5** (``4b8939a88964f0f4ff5f5b2642c598a6``,
``0b3195507c641ddb6910d2bb5adee89c``, ``01ec64d29a2fca3f0661936605ae66f8``), not of its SHA-256.
The SHA-256 values below are the ones used by independent projects that verify these files
(e.g. micro-sam's pooch registry).

Meta gives no digest for the SAM 2 / SAM 2.1 files (its ``checkpoints/download_ckpts.sh`` only
downloads them); their SHA-256 values are those of micro-sam's pooch registry
(``micro_sam/v2/util.py``, ``HASHES``), and the SAM 2.1 tiny one is also recorded, with its size of
156,008,466 bytes, by several independent projects.
"""

from __future__ import annotations

import hashlib
import http.client
import logging
import os
import tempfile
import urllib.request
import warnings
from dataclasses import dataclass
from os import PathLike
from pathlib import Path

from tqdm.auto import tqdm

__all__ = [
    "WEIGHTS",
    "WeightsChecksumError",
    "WeightsSpec",
    "WeightsUnavailableError",
    "download_weights",
    "file_sha256",
    "resolve_checkpoint",
    "weights_home",
    "weights_spec",
]

logger = logging.getLogger(__name__)

#: Indirection so that tests can replace the network access (``monkeypatch.setattr``).
_urlopen = urllib.request.urlopen

_CHUNK = 1 << 20
_TIMEOUT_S = 60.0


class WeightsUnavailableError(RuntimeError):
    """Pretrained weights could not be obtained (no network, bad download, corrupt cached file)."""


class WeightsChecksumError(WeightsUnavailableError):
    """A file's SHA-256 does not match the official checkpoint's."""


@dataclass(frozen=True)
class WeightsSpec:
    """An official checkpoint.

    Attributes:
        model_type: Architecture name: ``"vit_h"``, ``"vit_l"``, ``"vit_b"``, ``"vit_t"`` or a SAM 2
            name such as ``"sam2.1_hiera_t"``.
        filename: File name in the weights folder (the official one).
        url: Official download URL.
        sha256: Full lowercase hex SHA-256 of the file.
    """

    model_type: str
    filename: str
    url: str
    sha256: str


_SAM_URL = "https://dl.fbaipublicfiles.com/segment_anything/"
_SAM2_URL = "https://dl.fbaipublicfiles.com/segment_anything_2/072824/"
_SAM2_1_URL = "https://dl.fbaipublicfiles.com/segment_anything_2/092824/"

#: Official checkpoints by model type.
WEIGHTS: dict[str, WeightsSpec] = {
    "vit_h": WeightsSpec(
        "vit_h",
        "sam_vit_h_4b8939.pth",
        _SAM_URL + "sam_vit_h_4b8939.pth",
        "a7bf3b02f3ebf1267aba913ff637d9a2d5c33d3173bb679e46d9f338c26f262e",
    ),
    "vit_l": WeightsSpec(
        "vit_l",
        "sam_vit_l_0b3195.pth",
        _SAM_URL + "sam_vit_l_0b3195.pth",
        "3adcc4315b642a4d2101128f611684e8734c41232a17c648ed1693702a49a622",
    ),
    "vit_b": WeightsSpec(
        "vit_b",
        "sam_vit_b_01ec64.pth",
        _SAM_URL + "sam_vit_b_01ec64.pth",
        "ec2df62732614e57411cdcf32a23ffdf28910380d03139ee0f4fcbe91eb8c912",
    ),
    "vit_t": WeightsSpec(
        "vit_t",
        "mobile_sam.pt",
        "https://github.com/ChaoningZhang/MobileSAM/raw/master/weights/mobile_sam.pt",
        "6dbb90523a35330fedd7f1d3dfc66f995213d81b29a5ca8108dbcdd4e37d6c2f",
    ),
    **{
        name: WeightsSpec(name, filename, url + filename, sha256)
        for name, filename, url, sha256 in [
            ("sam2.1_hiera_t", "sam2.1_hiera_tiny.pt", _SAM2_1_URL,
             "7402e0d864fa82708a20fbd15bc84245c2f26dff0eb43a4b5b93452deb34be69"),
            ("sam2.1_hiera_s", "sam2.1_hiera_small.pt", _SAM2_1_URL,
             "6d1aa6f30de5c92224f8172114de081d104bbd23dd9dc5c58996f0cad5dc4d38"),
            ("sam2.1_hiera_b+", "sam2.1_hiera_base_plus.pt", _SAM2_1_URL,
             "a2345aede8715ab1d5d31b4a509fb160c5a4af1970f199d9054ccfb746c004c5"),
            ("sam2.1_hiera_l", "sam2.1_hiera_large.pt", _SAM2_1_URL,
             "2647878d5dfa5098f2f8649825738a9345572bae2d4350a2468587ece47dd318"),
            ("sam2_hiera_t", "sam2_hiera_tiny.pt", _SAM2_URL,
             "65b50056e05bcb13694174f51bb6da89c894b57b75ccdf0ba6352c597c5d1125"),
            ("sam2_hiera_s", "sam2_hiera_small.pt", _SAM2_URL,
             "95949964d4e548409021d47b22712d5f1abf2564cc0c3c765ba599a24ac7dce3"),
            ("sam2_hiera_b+", "sam2_hiera_base_plus.pt", _SAM2_URL,
             "d0bb7f236400a49669ffdd1be617959a8b1d1065081789d7bbff88eded3a8071"),
            ("sam2_hiera_l", "sam2_hiera_large.pt", _SAM2_URL,
             "7442e4e9b732a508f80e141e7c2913437a3610ee0c77381a66658c3a445df87b"),
        ]
    },
}

#: (resolved path, size, mtime_ns) -> sha256, so that a large file is hashed once per process.
_SHA256_MEMO: dict[tuple[str, int, int], str] = {}


def weights_home() -> Path:
    """Return the weights folder: ``$SAM_GYM_HOME`` if set and non-empty, else ``~/.cache/sam_gym``."""
    home = os.environ.get("SAM_GYM_HOME")
    return Path(home).expanduser() if home else Path.home() / ".cache" / "sam_gym"


def weights_spec(model_type: str) -> WeightsSpec:
    """Return the official checkpoint of ``model_type``.

    Raises:
        ValueError: If ``model_type`` has no official checkpoint.
    """
    if model_type not in WEIGHTS:
        raise ValueError(f"Expected model_type to be one of {sorted(WEIGHTS)}, got {model_type!r}")
    return WEIGHTS[model_type]


def file_sha256(path: str | PathLike[str]) -> str:
    """Return the lowercase hex SHA-256 of a file (memoised on path, size and modification time)."""
    p = Path(path).resolve()
    st = p.stat()
    key = (str(p), st.st_size, st.st_mtime_ns)
    if key not in _SHA256_MEMO:
        digest = hashlib.sha256()
        with p.open("rb") as f:
            while chunk := f.read(_CHUNK):
                digest.update(chunk)
        _SHA256_MEMO[key] = digest.hexdigest()
    return _SHA256_MEMO[key]


def _how_to_get(spec: WeightsSpec, target: Path) -> str:
    return (
        f"Download {spec.url} yourself and place it at {target} (set SAM_GYM_HOME to use another folder), "
        f"or pass checkpoint=PATH to a local copy. Without weights: use checkpoint='random' for tests "
        f"(untrained model, meaningless masks) or backend='classical' for offline use."
    )


def download_weights(
    model_type: str, directory: str | PathLike[str] | None = None, progress: bool = True
) -> Path:
    """Download the official checkpoint of ``model_type`` and verify its SHA-256.

    The bytes go to a temporary file in ``directory``, which is moved to its final name with
    ``os.replace`` (atomic on one file system) only after the hash matched; on any failure the
    temporary file is deleted.

    Args:
        model_type: A key of :data:`WEIGHTS`, e.g. ``"vit_b"``, ``"vit_t"`` or ``"sam2.1_hiera_t"``.
        directory: Target folder; default :func:`weights_home`.
        progress: Show a tqdm progress bar.

    Returns:
        The path of the verified file, ``directory / spec.filename``.

    Raises:
        WeightsUnavailableError: If the download failed; the message names the URL, the path to
            place the file at, and the offline alternatives.
        WeightsChecksumError: If the downloaded bytes have the wrong SHA-256 (nothing is kept).
    """
    spec = weights_spec(model_type)
    folder = Path(directory).expanduser() if directory is not None else weights_home()
    target = folder / spec.filename
    try:
        folder.mkdir(parents=True, exist_ok=True)
        fd, tmp_name = tempfile.mkstemp(prefix=f".{spec.filename}.", suffix=".part", dir=folder)
    except OSError as exc:
        raise WeightsUnavailableError(
            f"Could not create the weights folder {folder} ({exc}). {_how_to_get(spec, target)}"
        ) from exc
    tmp = Path(tmp_name)
    try:
        digest = hashlib.sha256()
        with os.fdopen(fd, "wb") as out:
            logger.info("Downloading %s to %s", spec.url, target)
            try:
                with _urlopen(spec.url, timeout=_TIMEOUT_S) as response:
                    total = int(response.headers.get("Content-Length") or 0) or None
                    with tqdm(
                        total=total, unit="B", unit_scale=True, desc=spec.filename, disable=not progress
                    ) as bar:
                        while chunk := response.read(_CHUNK):
                            out.write(chunk)
                            digest.update(chunk)
                            bar.update(len(chunk))
            except (OSError, http.client.HTTPException) as exc:
                raise WeightsUnavailableError(
                    f"Could not download the {model_type} weights from {spec.url} ({exc}). "
                    f"{_how_to_get(spec, target)}"
                ) from exc
            out.flush()
            os.fsync(out.fileno())
        actual = digest.hexdigest()
        if actual != spec.sha256:
            raise WeightsChecksumError(
                f"Expected the download of {spec.url} to have SHA-256 {spec.sha256}, got {actual}; "
                f"the corrupt file was deleted. Try again, or {_how_to_get(spec, target)}"
            )
        os.chmod(tmp, 0o644)
        os.replace(tmp, target)
    finally:
        tmp.unlink(missing_ok=True)
    logger.info("Saved verified %s weights at %s", model_type, target)
    return target


def resolve_checkpoint(model_type: str, checkpoint: str | PathLike[str]) -> Path | None:
    """Resolve a backend's ``checkpoint`` argument to a weights file.

    Args:
        model_type: A key of :data:`WEIGHTS`, e.g. ``"vit_b"``, ``"vit_t"`` or ``"sam2.1_hiera_t"``.
        checkpoint: A path to a state-dict file; ``"auto"`` for the official file in
            :func:`weights_home` (downloaded and SHA-256-verified when absent; an existing file is
            verified too); or ``"random"`` for no weights.

    Returns:
        The checkpoint file, or ``None`` for ``"random"`` (a ``logging`` warning and a
        ``UserWarning`` are emitted: the model's segmentations are meaningless).

    Raises:
        ValueError: If ``model_type`` is unknown, or the given path does not exist.
        WeightsUnavailableError: If ``"auto"`` cannot download the file.
        WeightsChecksumError: If the official file in the weights folder is corrupt (it is not
            deleted: it may be the user's own copy; the message says what to do).
    """
    spec = weights_spec(model_type)
    if checkpoint == "random":
        message = (
            f"sam_gym: the {model_type} model uses RANDOM weights (checkpoint='random'): its masks and "
            f"scores are meaningless for segmentation quality. Use it only for tests and plumbing."
        )
        logger.warning(message)
        warnings.warn(message, UserWarning, stacklevel=3)
        return None
    if checkpoint == "auto":
        target = weights_home() / spec.filename
        if not target.is_file():
            return download_weights(model_type, target.parent)
        actual = file_sha256(target)
        if actual != spec.sha256:
            raise WeightsChecksumError(
                f"Expected {target} to have SHA-256 {spec.sha256} (official {spec.filename}), got {actual}. "
                f"Delete it so that it is downloaded again, or {_how_to_get(spec, target)}"
            )
        return target
    path = Path(checkpoint).expanduser()
    if not path.is_file():
        raise ValueError(
            f"Expected checkpoint to be 'auto', 'random' or an existing weights file, "
            f"got {str(checkpoint)!r} (no such file)"
        )
    return path
