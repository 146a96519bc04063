"""What a dataset hands to the environment: :class:`Sample`, and the :class:`SegmentationDataset` protocol.

Masks are ``(H, W)`` bool arrays indexed ``[row, col]``, the same size as the ``(H, W, 3)`` uint8
RGB image. ``target`` is the object (foreground); ``void`` marks pixels that count neither as
foreground nor background (GrabCut's 128 band, VOC's 255): they are excluded from rewards and IoU.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Protocol, runtime_checkable

import numpy as np

__all__ = ["Sample", "SegmentationDataset", "check_sample", "sample_source", "skipped_files"]


@dataclass(frozen=True)
class Sample:
    """One episode's worth of data: an image and one target object.

    Attributes:
        image: ``(H, W, 3)`` uint8 RGB image.
        target: ``(H, W)`` bool ground-truth foreground.
        void: ``(H, W)`` bool pixels to ignore (never foreground, excluded from IoU and rewards).
        image_id: The file stem or dataset key of the image.
        instance_id: The object's id within the image in instance mode, else ``None``.
        class_id: The object's class id when known (VOC/COCO), else ``None``.
    """

    image: np.ndarray
    target: np.ndarray
    void: np.ndarray
    image_id: str
    instance_id: int | None = None
    class_id: int | None = None

    @property
    def key(self) -> str:
        """``image_id``, plus ``#instance_id`` in instance mode."""
        return self.image_id if self.instance_id is None else f"{self.image_id}#{self.instance_id}"


@runtime_checkable
class SegmentationDataset(Protocol):
    """A sized, indexable collection of :class:`Sample` objects."""

    name: str

    def __len__(self) -> int:
        """Number of samples (episodes)."""
        ...

    def __getitem__(self, index: int) -> Sample:
        """Return sample ``index`` (``0 <= index < len(self)``)."""
        ...


def sample_source(dataset: SegmentationDataset, index: int) -> str:
    """Where sample ``index`` comes from, for messages.

    Returns:
        The dataset's ``source(index)`` (a file) if it has that method, else ``"<name>[index]"``.
    """
    source = getattr(dataset, "source", None)
    return str(source(int(index))) if callable(source) else f"{dataset.name}[{int(index)}]"


def skipped_files(dataset: SegmentationDataset) -> list[tuple[str, str]]:
    """``(file, reason)`` of the files a dataset dropped when it was built (its ``skipped``; none if it has none)."""
    return [(str(file), str(reason)) for file, reason in getattr(dataset, "skipped", ())]


def check_sample(sample: Sample, where: str) -> Sample:
    """Validate a sample's arrays and raise a ``ValueError`` naming ``where`` if they are wrong."""
    img = sample.image
    if not isinstance(img, np.ndarray) or img.ndim != 3 or img.shape[2] != 3 or img.dtype != np.uint8:
        got = getattr(img, "shape", type(img).__name__), getattr(img, "dtype", None)
        raise ValueError(f"{where}: expected an (H, W, 3) uint8 RGB image, got {got}")
    for name in ("target", "void"):
        arr = getattr(sample, name)
        if not isinstance(arr, np.ndarray) or arr.dtype != bool or arr.shape != img.shape[:2]:
            got = getattr(arr, "shape", type(arr).__name__), getattr(arr, "dtype", None)
            raise ValueError(f"{where}: expected {name} to be an (H, W) = {img.shape[:2]} bool mask, got {got}")
    if not sample.target.any():
        raise ValueError(f"{where}: the target mask is empty (no foreground pixel)")
    if not (~sample.target & ~sample.void).any():
        raise ValueError(f"{where}: the target covers the whole image (no background pixel)")
    return sample
