"""Content hashes of samples: the same image and masks give the same hash, whatever the dataset's name or path.

Used to tell whether an evaluation dataset holds a learned policy's training samples
(:mod:`sam_gym.holdout`): a run records the hashes of its training samples, and ``sam-gym eval``
hashes the samples it is asked to score.
"""

from __future__ import annotations

import hashlib

import numpy as np

from sam_gym.data.base import Sample

__all__ = ["sample_hash"]


def sample_hash(sample: Sample) -> str:
    """Return the content hash of a sample: hex SHA-256 of its image, target and void masks.

    The image's shape, dtype and bytes and the two ``(H, W)`` bool masks (indexed ``[row, col]``)
    are hashed; names (``image_id``, the dataset's name or folder) are not, so a copy of a dataset
    under another name hashes alike, and two instances of one image (other targets) differ.

    Raises:
        TypeError: If ``sample`` is not a :class:`~sam_gym.data.base.Sample`.
    """
    if not isinstance(sample, Sample):
        raise TypeError(f"Expected a Sample, got {type(sample).__name__}")
    digest = hashlib.sha256()
    image = np.ascontiguousarray(sample.image)
    digest.update(f"image|{image.shape}|{image.dtype}|".encode())
    digest.update(image.data)
    for name in ("target", "void"):
        mask = np.asarray(getattr(sample, name), dtype=bool)
        digest.update(f"|{name}|{mask.shape}|".encode())
        digest.update(np.packbits(mask, axis=None).tobytes())
    return digest.hexdigest()
