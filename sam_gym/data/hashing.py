"""Content hashes of samples: the same image and masks give the same hash, whatever the dataset's name or path.

Used to tell whether an evaluation dataset holds a learned policy's training samples
(:mod:`sam_gym.holdout`): a run records the hashes of its training samples, and ``sam-gym eval``
hashes the samples it is asked to score.
"""

from __future__ import annotations

import hashlib

import numpy as np

from sam_gym.data.base import Sample

__all__ = ["image_hash", "sample_digests", "sample_hash"]


def image_hash(image: np.ndarray) -> str:
    """Return the content hash of an image: hex SHA-256 of its shape, dtype and bytes (the embedding cache's key)."""
    digest = hashlib.sha256(f"{image.shape}|{image.dtype}|".encode())
    digest.update(np.ascontiguousarray(image).data)
    return digest.hexdigest()


def sample_digests(sample: Sample) -> tuple[str, str]:
    """Return ``(image_hash, sample_hash)`` of a sample, hashing its image once.

    ``sample_hash`` covers the image's hash and the two ``(H, W)`` bool masks (target and void,
    indexed ``[row, col]``); names (``image_id``, the dataset's name or folder) are not hashed, so a
    copy of a dataset under another name hashes alike, and two instances of one image (other
    targets) differ. Results of two runs are joined on it (``sam-gym compare``), and a learned
    policy's training samples are recognised by it (:mod:`sam_gym.holdout`).

    Raises:
        TypeError: If ``sample`` is not a :class:`~sam_gym.data.base.Sample`.
    """
    if not isinstance(sample, Sample):
        raise TypeError(f"Expected a Sample, got {type(sample).__name__}")
    image = image_hash(sample.image)
    digest = hashlib.sha256(image.encode())
    for name in ("target", "void"):
        mask = np.asarray(getattr(sample, name), dtype=bool)
        digest.update(f"|{name}|{mask.shape}|".encode())
        digest.update(np.packbits(mask, axis=None).tobytes())
    return image, digest.hexdigest()


def sample_hash(sample: Sample) -> str:
    """Return the content hash of a sample (see :func:`sample_digests`)."""
    return sample_digests(sample)[1]
