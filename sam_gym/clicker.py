"""The standard interactive-segmentation click simulator (the RITM protocol).

This reproduces ``isegm/inference/clicker.py`` of RITM (Sofiiuk et al., "Reviving Iterative
Training with Mask Guidance for Interactive Segmentation", 2022), the protocol behind the
published NoC@85 / NoC@90 numbers:

* the false-negative region is ``target & ~pred & ~void``, the false-positive region
  ``~target & pred & ~void``;
* each error region is padded with one pixel of zeros, so that a region touching the image border
  is measured from the border too, and its exact Euclidean distance transform is taken
  (``cv2.distanceTransform(..., cv2.DIST_L2, cv2.DIST_MASK_PRECISE)``), then the padding is cropped;
* pixels that were already clicked are excluded;
* the click is positive iff the largest false-negative distance is larger than the largest
  false-positive distance, and it lands on the first pixel (row-major) reaching that distance.

Coordinate convention (as everywhere in ``sam_gym``): clicks are ``(x, y)`` in original-image
pixels, ``x`` to the right and ``y`` down. The simulator returns the **centre** of the chosen pixel,
``(x, y) = (col + 0.5, row + 0.5)``, so that ``(floor(y), floor(x))`` gives back ``(row, col)``.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import cv2
import numpy as np

from sam_gym.backends.base import Embedding, PromptableSegmenter
from sam_gym.metrics import iou

__all__ = ["next_click", "simulate_clicks"]


def _as_mask(name: str, mask: Any, shape: tuple[int, ...] | None) -> np.ndarray:
    """Return ``mask`` as a 2-D bool array, checking its shape against ``shape`` when given."""
    arr = np.asarray(mask)
    if arr.ndim != 2:
        raise ValueError(f"Expected {name} to be a 2-D (H, W) mask, got shape {arr.shape}")
    if shape is not None and arr.shape != shape:
        raise ValueError(f"Expected {name} to have the target's shape {shape}, got {arr.shape}")
    return arr.astype(bool, copy=False)


def _padded_distance(mask: np.ndarray) -> np.ndarray:
    """Exact Euclidean distance to the nearest zero, with the outside of the image counting as zero."""
    padded = np.pad(mask.astype(np.uint8), 1, mode="constant")
    return cv2.distanceTransform(padded, cv2.DIST_L2, cv2.DIST_MASK_PRECISE)[1:-1, 1:-1]


def _not_clicked_map(shape: tuple[int, ...], clicked: Sequence[Sequence[float]] | None) -> np.ndarray:
    """Return a float32 map that is 0 on the pixels of ``clicked`` and 1 elsewhere."""
    keep = np.ones(shape, dtype=np.float32)
    for click in clicked or ():
        if len(click) < 2:
            raise ValueError(f"Expected clicked to hold (x, y) or (x, y, label) tuples, got {click!r}")
        row, col = int(np.floor(click[1])), int(np.floor(click[0]))
        if 0 <= row < shape[0] and 0 <= col < shape[1]:
            keep[row, col] = 0.0
    return keep


def _first_argmax(dist: np.ndarray) -> tuple[float, float]:
    """Return the centre ``(x, y)`` of the first (row-major) pixel where ``dist`` is maximal."""
    row, col = np.unravel_index(int(np.argmax(dist)), dist.shape)
    return float(col) + 0.5, float(row) + 0.5


def next_click(
    target: np.ndarray,
    pred: np.ndarray,
    void: np.ndarray | None = None,
    clicked: Sequence[Sequence[float]] | None = None,
) -> tuple[float, float, int]:
    """Return the next simulated click that corrects ``pred`` towards ``target`` (RITM clicker).

    Args:
        target: ``(H, W)`` ground-truth mask (nonzero = object), indexed ``[row, col]``.
        pred: ``(H, W)`` current predicted mask (nonzero = object).
        void: Optional ``(H, W)`` mask of pixels to ignore (e.g. GrabCut's 128 band); they are
            never errors and never clicked.
        clicked: Previous clicks as ``(x, y)`` or ``(x, y, label)`` tuples in image pixels; the
            pixels they fall on (``(floor(y), floor(x))``) are not clicked again.

    Returns:
        ``(x, y, label)``: the centre of the chosen pixel, ``x = col + 0.5`` and ``y = row + 0.5``,
        and ``label`` 1 (positive, in a false-negative region) or 0 (negative, in a false-positive
        region). The chosen pixel is the one farthest from the boundary of the larger error
        region. When ``pred`` has no error at all, the click is a positive one at the innermost
        pixel of the target (a negative one at the innermost background pixel if the target is
        empty), so that a caller can always go on clicking without changing the mask.

    Raises:
        ValueError: If the masks are not 2-D or their shapes differ.
    """
    gt = _as_mask("target", target, None)
    pr = _as_mask("pred", pred, gt.shape)
    valid = ~_as_mask("void", void, gt.shape) if void is not None else np.ones_like(gt)
    keep = _not_clicked_map(gt.shape, clicked)

    fn_dist = _padded_distance(gt & ~pr & valid) * keep
    fp_dist = _padded_distance(~gt & pr & valid) * keep
    fn_max, fp_max = float(fn_dist.max()), float(fp_dist.max())
    if fn_max == 0.0 and fp_max == 0.0:
        if (gt & valid).any():
            return (*_first_argmax(_padded_distance(gt & valid) * keep), 1)
        return (*_first_argmax(_padded_distance(~gt & valid) * keep), 0)
    if fn_max > fp_max:
        return (*_first_argmax(fn_dist), 1)
    return (*_first_argmax(fp_dist), 0)


def simulate_clicks(
    backend: PromptableSegmenter,
    image: np.ndarray,
    target: np.ndarray,
    void: np.ndarray | None = None,
    max_clicks: int = 20,
    embedding: Embedding | None = None,
    stop_iou: float | None = None,
) -> list[float]:
    """Run the standard NoC protocol on a backend and return the IoU after each click.

    The image is encoded once (unless ``embedding`` is given). Click 1 is
    ``next_click(target, empty mask)``; every decode gets all clicks so far. The first decode asks
    for three proposals (``multimask=True``) and keeps the one with the highest score, as SAM
    evaluations do; later decodes ask for one proposal and get the previous prediction's
    low-resolution logits as ``mask_input``. Each next click corrects the previous mask.

    Args:
        backend: Any :class:`~sam_gym.backends.base.PromptableSegmenter`.
        image: ``(H, W, 3)`` uint8 RGB image.
        target: ``(H, W)`` ground-truth mask (nonzero = object).
        void: Optional ``(H, W)`` mask of pixels excluded from the IoU and from clicking.
        max_clicks: Maximum number of clicks (20 in the standard protocol).
        embedding: A precomputed embedding of ``image`` from ``backend.encode``.
        stop_iou: Stop as soon as the IoU reaches this value (e.g. 0.9 for NoC@90).

    Returns:
        The IoU (void excluded) after clicks ``1..n``; ``n == max_clicks`` unless ``stop_iou``
        was reached earlier.

    Raises:
        ValueError: If ``max_clicks < 1`` or the masks do not match the image.
    """
    if max_clicks < 1:
        raise ValueError(f"Expected max_clicks >= 1, got {max_clicks}")
    gt = _as_mask("target", target, None)
    if tuple(np.shape(image)[:2]) != gt.shape:
        raise ValueError(f"Expected target of the image's size {np.shape(image)[:2]}, got {gt.shape}")
    void_mask = _as_mask("void", void, gt.shape) if void is not None else None
    emb = backend.encode(image) if embedding is None else embedding
    pred = np.zeros_like(gt)
    clicks: list[tuple[float, float, int]] = []
    mask_input = None
    ious: list[float] = []
    for _ in range(max_clicks):
        clicks.append(next_click(gt, pred, void_mask, clicks))
        points = np.array([c[:2] for c in clicks], dtype=np.float32)
        labels = np.array([c[2] for c in clicks], dtype=np.int64)
        out = backend.decode(emb, points, labels, mask_input=mask_input, multimask=len(clicks) == 1)
        pred = out.mask(out.best)
        mask_input = out.logits(out.best)
        ious.append(iou(pred, gt, void_mask))
        if stop_iou is not None and ious[-1] >= stop_iou:
            break
    return ious
