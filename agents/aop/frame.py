"""A backend's image embedding resampled onto the image frame.

SAM's ``(C, 64, 64)`` embedding covers the *padded square* of its encoder input: the resized image
occupies the top-left ``input_size`` corner, the rest is padding; the backend says which part of a
map covers the image (:meth:`~sam_gym.backends.base.PromptableSegmenter.image_region`). The
classical backend's ``(C, 64, 64)`` map is stretched over the image. :func:`frame_features`
returns, for both, a ``(C, side, side)`` map whose cell ``(i, j)`` covers the image rows
``[i H / side, (i + 1) H / side)`` and columns ``[j W / side, (j + 1) W / side)`` (masks ``(H, W)``
indexed ``[row, col]``; a point ``(x, y)`` falls in cell ``(floor(y side / H), floor(x side / W))``,
:func:`sam_gym.grid.cell_of_point`).
"""

from __future__ import annotations

from typing import Any

import numpy as np
import torch
import torch.nn.functional as F

from sam_gym.backends.base import Embedding, PromptableSegmenter

__all__ = ["FRAME_SIDE", "frame_features"]

#: Default side of the image-frame feature map.
FRAME_SIDE = 64


def frame_features(backend: PromptableSegmenter, embedding: Embedding, side: int = FRAME_SIDE) -> torch.Tensor:
    """Return the embedding as a float32 CPU ``(C, side, side)`` map over the image frame.

    Args:
        backend: The backend that produced ``embedding`` (its ``embedding_shape`` gives ``C``).
        embedding: ``features`` ``(C, h, w)`` (numpy) or ``(1, C, h, w)`` (torch); for a padded
            backend (SAM), only the valid top-left region is kept, then resized bilinearly.
        side: Output side.

    Raises:
        ValueError: If the features do not have the backend's ``embedding_shape``.
    """
    feats: Any = embedding.features
    t = feats.detach().to("cpu", torch.float32) if isinstance(feats, torch.Tensor) else torch.as_tensor(
        np.asarray(feats, dtype=np.float32))
    t = t.reshape(t.shape[-3:]) if t.ndim == 4 and t.shape[0] == 1 else t
    if tuple(t.shape) != tuple(backend.embedding_shape):
        raise ValueError(f"Expected embedding features of shape {tuple(backend.embedding_shape)} "
                         f"(backend {backend.name}), got {tuple(t.shape)}")
    _, h, w = t.shape
    vh, vw = backend.image_region(embedding, (h, w))
    valid = t[:, :vh, :vw][None]
    return F.interpolate(valid, size=(side, side), mode="bilinear", align_corners=False)[0].contiguous()
