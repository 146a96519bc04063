"""Drawing episodes: the image with the mask overlaid and the clicks marked.

Points are ``(x, y)`` in image pixels; masks are ``(H, W)`` bool indexed ``[row, col]``.
"""

from __future__ import annotations

import numpy as np

__all__ = ["draw_episode", "POSITIVE_RGB", "NEGATIVE_RGB"]

#: Colour of foreground (positive) clicks.
POSITIVE_RGB = (40, 220, 60)
#: Colour of background (negative) clicks.
NEGATIVE_RGB = (235, 40, 40)
_MASK_RGB = np.array([40, 120, 255], dtype=np.float32)


def draw_episode(
    image: np.ndarray,
    mask: np.ndarray,
    points: np.ndarray,
    labels: np.ndarray,
    n_init: int = 0,
    alpha: float = 0.45,
) -> np.ndarray:
    """Return an RGB ``uint8`` copy of ``image`` with ``mask`` tinted and the clicks drawn.

    Args:
        image: ``(H, W, 3)`` uint8 RGB.
        mask: ``(H, W)`` bool mask to tint.
        points: ``(N, 2)`` ``(x, y)`` clicks in image pixels.
        labels: ``(N,)`` 1 foreground (green) / 0 background (red).
        n_init: The first ``n_init`` points are initial prompts, drawn as rings instead of dots.
        alpha: Opacity of the mask tint.
    """
    import cv2

    out = image.astype(np.float32)
    out[mask] = (1 - alpha) * out[mask] + alpha * _MASK_RGB
    out = np.clip(out, 0, 255).astype(np.uint8)
    edges = cv2.morphologyEx(mask.astype(np.uint8), cv2.MORPH_GRADIENT, np.ones((3, 3), np.uint8)) > 0
    out[edges] = (255, 255, 255)
    radius = max(3, round(min(image.shape[:2]) / 80))
    for i, ((x, y), label) in enumerate(zip(np.asarray(points), np.asarray(labels), strict=True)):
        colour = POSITIVE_RGB if label == 1 else NEGATIVE_RGB
        centre = (int(x), int(y))
        thickness = 2 if i < n_init else -1
        cv2.circle(out, centre, radius + 1, (0, 0, 0), -1 if thickness < 0 else 3, lineType=cv2.LINE_AA)
        cv2.circle(out, centre, radius, colour, thickness, lineType=cv2.LINE_AA)
    return out
