"""Multi-mask matching: greedy one-to-one IoU matching of predicted masks to ground-truth masks.

Masks are binary ``(H, W)`` arrays indexed ``[row, col]``. Invalid user input raises
``ValueError("Expected ..., got ...")``.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
from numpy.typing import ArrayLike, NDArray

from sam_gym.metrics._validate import _as_bool

__all__ = ["greedy_iou_matching"]


def _stack_masks(
    name: str, masks: Sequence[ArrayLike] | ArrayLike
) -> tuple[NDArray[np.bool_], tuple[int, ...] | None]:
    """Validate masks and return them flattened to ``(K, H*W)`` with their common ``(H, W)``."""
    items = list(masks)  # type: ignore[arg-type]
    if not items:
        return np.zeros((0, 0), dtype=bool), None
    arrs = [_as_bool(f"{name}[{i}]", m) for i, m in enumerate(items)]
    shape = arrs[0].shape
    for i, a in enumerate(arrs):
        if a.shape != shape:
            raise ValueError(f"Expected all {name} to have shape {shape}, got {a.shape} at index {i}")
    return np.stack(arrs).reshape(len(arrs), -1), shape


def _pairwise_iou(p: NDArray[np.bool_], g: NDArray[np.bool_]) -> NDArray[np.float64]:
    """(P, HW) x (G, HW) bool -> (P, G) IoU via one matrix product; empty-vs-empty IoU is 1."""
    # float32 counts are exact up to 2**24 pixels; fall back to float64 beyond that.
    dt: type[np.floating] = np.float32 if p.shape[1] <= 2**24 else np.float64
    pf: np.ndarray = p.astype(dt)
    gf: np.ndarray = g.astype(dt)
    inter = (pf @ gf.T).astype(np.float64)
    area_p = p.sum(axis=1, dtype=np.float64)
    area_g = g.sum(axis=1, dtype=np.float64)
    union = area_p[:, None] + area_g[None, :] - inter
    with np.errstate(divide="ignore", invalid="ignore"):
        return np.where(union > 0, inter / union, 1.0)


def greedy_iou_matching(
    pred_masks: Sequence[ArrayLike] | ArrayLike, gt_masks: Sequence[ArrayLike] | ArrayLike
) -> tuple[float, list[tuple[int, int, float]]]:
    """Greedy one-to-one matching of predicted masks to GT masks by IoU (multi-mask / AMG scoring).

    The pairwise IoU matrix ``M[i, j] = IoU(pred_i, gt_j)`` is computed with one matrix product on
    the flattened ``(P, H*W)`` and ``(G, H*W)`` masks. Then the globally highest-IoU pair whose pred
    and GT are both unmatched is taken, repeatedly (ties: lower pred index, then lower GT index).
    Each GT and each pred is matched at most once; pairs with IoU 0 are never matched. The score is::

        mIoU = (1 / G) * sum_j IoU(matched pred of gt_j, gt_j)     (0 for an unmatched GT)

    This differs from the per-GT argmax ("best pred for each GT", which may reuse a pred).

    Reference: greedy matching used to score automatic mask generation, e.g. AoP-SAM (
    "AoP-SAM: Automation of Prompts for Efficient Segmentation", AAAI 2025) and SAM-AMG evaluations.

    Args:
        pred_masks: ``P >= 0`` binary masks of the same shape ``(H, W)`` (list or ``(P, H, W)`` array).
        gt_masks: ``G >= 1`` binary masks of that shape.

    Returns:
        ``(mean_iou_over_gts, matches)`` where ``matches`` is a list of ``(pred_idx, gt_idx, iou)``
        in the order they were chosen (decreasing IoU).

    Raises:
        ValueError: On no GT masks, non-binary or non-2-D masks, or mismatched shapes.
    """
    g, gt_shape = _stack_masks("gt_masks", gt_masks)
    if gt_shape is None:
        raise ValueError("Expected at least one mask in gt_masks, got an empty sequence")
    p, pred_shape = _stack_masks("pred_masks", pred_masks)
    if pred_shape is None:
        return 0.0, []
    if pred_shape != gt_shape:
        raise ValueError(f"Expected pred_masks of the GT shape {gt_shape}, got {pred_shape}")

    m = _pairwise_iou(p, g)
    n_p, n_g = m.shape
    order = np.argsort(-m, axis=None, kind="stable")  # row-major tie-break: pred index, then gt index
    pred_used = np.zeros(n_p, dtype=bool)
    gt_used = np.zeros(n_g, dtype=bool)
    best = np.zeros(n_g, dtype=np.float64)
    matches: list[tuple[int, int, float]] = []
    for flat in order:
        i, j = divmod(int(flat), n_g)
        v = float(m[i, j])
        if v <= 0.0:
            break
        if pred_used[i] or gt_used[j]:
            continue
        pred_used[i] = gt_used[j] = True
        best[j] = v
        matches.append((i, j, v))
        if len(matches) == min(n_p, n_g):
            break
    return float(best.mean()), matches
