"""The pseudo-labels and the loss of test-time adaptation: eroded masks, click maps, balanced BCE.

Masks are ``(H, W)`` indexed ``[row, col]``; points are ``(x, y)`` in image pixels.
"""

from __future__ import annotations

from typing import Any, Literal

import numpy as np
from scipy import ndimage

from agents.tta.config import EROSION_ITERATIONS

__all__ = ["balanced_bce", "click_label_map", "erode_cross", "pseudo_label"]


def erode_cross(mask: np.ndarray, iterations: int = EROSION_ITERATIONS) -> np.ndarray:
    """Erode a ``(H, W)`` bool mask ``iterations`` times with the 3x3 cross (4-connected) kernel.

    Outside the image counts as background, so a mask touching the border is eroded from it too
    (``scipy.ndimage.binary_erosion`` with ``border_value=0``, as ``wseseg``). Each iteration
    removes one pixel from every side of a square: a ``s x s`` square becomes
    ``(s - 2k) x (s - 2k)``.
    """
    arr = np.asarray(mask, dtype=bool)
    if arr.ndim != 2:
        raise ValueError(f"Expected a 2-D (H, W) mask, got shape {arr.shape}")
    if not isinstance(iterations, (int, np.integer)) or iterations < 1:
        raise ValueError(f"Expected iterations to be a positive integer, got {iterations!r}")
    return ndimage.binary_erosion(arr, structure=ndimage.generate_binary_structure(2, 1),
                                  iterations=int(iterations), border_value=0)


def click_label_map(shape: tuple[int, int], points: np.ndarray, labels: np.ndarray) -> np.ndarray:
    """Return an ``(H, W)`` int8 map: each click's label at its pixel ``[floor(y), floor(x)]``, -1 elsewhere.

    Points are ``(x, y)`` in image pixels; later clicks win on a shared pixel.
    """
    out = np.full(shape, -1, dtype=np.int8)
    for (x, y), label in zip(np.asarray(points).reshape(-1, 2), np.asarray(labels).reshape(-1), strict=True):
        row = min(max(int(np.floor(y)), 0), shape[0] - 1)
        col = min(max(int(np.floor(x)), 0), shape[1] - 1)
        out[row, col] = int(label)
    return out


def pseudo_label(
    result_mask: np.ndarray,
    points: np.ndarray,
    labels: np.ndarray,
    treatment: Literal["eroded", "untreated"],
    click_mask: bool = True,
    erosion_iterations: int = EROSION_ITERATIONS,
) -> np.ndarray:
    """Build the image-level pseudo-label from a result mask and the clicks.

    Args:
        result_mask: ``(H, W)`` bool final mask of the image, indexed ``[row, col]``.
        points: ``(N, 2)`` clicks ``(x, y)`` in image pixels.
        labels: ``(N,)`` click labels, 1 foreground / 0 background.
        treatment: ``"untreated"``: every pixel labelled by the mask; ``"eroded"``: foreground and
            background each eroded (:func:`erode_cross`), the band between them unlabelled.
        click_mask: Write each click's label at its pixel over the mask-derived label.
        erosion_iterations: ``k`` of the erosion.

    Returns:
        ``(H, W)`` int8: 1 foreground, 0 background, -1 unlabelled.
    """
    mask = np.asarray(result_mask, dtype=bool)
    if treatment == "untreated":
        dense = mask.astype(np.int8)
    elif treatment == "eroded":
        dense = np.full(mask.shape, -1, dtype=np.int8)
        dense[erode_cross(mask, erosion_iterations)] = 1
        dense[erode_cross(~mask, erosion_iterations)] = 0
    else:
        raise ValueError(f"Expected treatment 'eroded' or 'untreated', got {treatment!r}")
    if click_mask:
        clicks = click_label_map(mask.shape, points, labels)
        dense = np.where(clicks >= 0, clicks, dense).astype(np.int8)
    return dense


def balanced_bce(logits: Any, target: Any) -> Any:
    """Balanced binary cross-entropy with logits over the labelled entries (torch tensors).

    ``target`` holds 1 (foreground), 0 (background) or -1 (unlabelled, ignored). The mean BCE of the
    foreground entries and that of the background entries are averaged; when only one class is
    labelled its mean is returned.

    Raises:
        ValueError: If nothing is labelled.
    """
    import torch
    import torch.nn.functional as F

    losses = []
    for cls in (1, 0):
        sel = target == cls
        if bool(sel.any()):
            values = logits[sel]
            losses.append(F.binary_cross_entropy_with_logits(values, torch.full_like(values, float(cls))))
    if not losses:
        raise ValueError("Expected at least one labelled entry (0 or 1) in the target, got none")
    return torch.stack(losses).mean()
