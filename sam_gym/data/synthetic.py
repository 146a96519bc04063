"""``"synthetic-shapes"``: a built-in, seeded, procedural dataset (no files, no downloads).

Each image is a textured background with two to four coloured shapes (ellipses, rectangles,
triangles). **The target is always the red shape** (drawn last, so never occluded); the other
shapes and the background are never red. The task therefore has a learnable semantic, like the
"salient object" or an object class of AlignSAM's tasks: a prompting policy can learn where the
object is, rather than guess which of several shapes was picked. Gradients, stripes and noise keep
it from being trivial for a colour threshold, and distractors can share the target's shape.
Sample ``i`` depends only on ``(seed, i)``.
"""

from __future__ import annotations

import numpy as np

from sam_gym.data.base import Sample

__all__ = ["SyntheticShapes", "shape_mask"]

#: Shape kinds drawn by :func:`shape_mask`.
ELLIPSE, RECTANGLE, TRIANGLE = 0, 1, 2


def shape_mask(
    kind: int, centre: tuple[float, float], radii: tuple[float, float], yy: np.ndarray, xx: np.ndarray,
    angle: float = 0.0, triangle_scale: float = 1.0,
) -> np.ndarray:
    """Return the ``(H, W)`` bool mask of an axis-aligned ellipse or rectangle, or a triangle.

    Args:
        kind: :data:`ELLIPSE`, :data:`RECTANGLE` or :data:`TRIANGLE`.
        centre: ``(cy, cx)`` in pixels (row, col).
        radii: ``(ry, rx)`` half-extents in pixels.
        yy: Row coordinate of every pixel (``np.mgrid``).
        xx: Column coordinate of every pixel.
        angle: Rotation of the triangle's first vertex, radians.
        triangle_scale: Distance of the triangle's vertices from the centre, in radii.
    """
    (cy, cx), (ry, rx) = centre, radii
    if kind == ELLIPSE:
        return ((yy - cy) / ry) ** 2 + ((xx - cx) / rx) ** 2 <= 1.0
    if kind == RECTANGLE:
        return (np.abs(yy - cy) <= ry) & (np.abs(xx - cx) <= rx)
    # triangle: three half-planes, each keeping the side of the centre
    angles = angle + np.array([0, 2 * np.pi / 3, 4 * np.pi / 3])
    pts = np.stack([cx + triangle_scale * rx * np.cos(angles), cy + triangle_scale * ry * np.sin(angles)], axis=1)
    inside = np.ones(yy.shape, dtype=bool)
    for i in range(3):
        (x0, y0), (x1, y1) = pts[i], pts[(i + 1) % 3]
        cross = (x1 - x0) * (yy - y0) - (y1 - y0) * (xx - x0)
        centre_side = (x1 - x0) * (cy - y0) - (y1 - y0) * (cx - x0)
        inside &= cross * np.sign(centre_side) >= 0
    return inside


def _not_red(rng: np.random.Generator, low: float = 0, high: float = 255) -> np.ndarray:
    """Draw an RGB colour that is not red (red: R > 130 and R exceeds both G and B by more than 60)."""
    while True:
        colour = rng.uniform(low, high, size=3)
        if not (colour[0] > 130 and colour[0] - max(colour[1], colour[2]) > 60):
            return colour


class SyntheticShapes:
    """Procedural shapes on textured backgrounds.

    Args:
        n: Number of samples.
        size: Image size ``(H, W)``.
        seed: Base seed; sample ``i`` uses ``(seed, i)``.
        name: Dataset name used in reports.
    """

    def __init__(
        self, n: int = 64, size: tuple[int, int] = (128, 160), seed: int = 0, name: str = "synthetic-shapes"
    ) -> None:
        if not isinstance(n, int) or n < 1:
            raise ValueError(f"Expected n to be a positive integer, got {n!r}")
        if len(size) != 2 or min(size) < 32:
            raise ValueError(f"Expected size (H, W) with both at least 32, got {size!r}")
        self.n = n
        self.size = (int(size[0]), int(size[1]))
        self.seed = int(seed)
        self.name = name

    def __len__(self) -> int:
        return self.n

    def __getitem__(self, index: int) -> Sample:
        index = int(index)
        if not 0 <= index < self.n:
            raise IndexError(f"Expected an index in [0, {self.n}), got {index}")
        rng = np.random.default_rng([self.seed, index])
        h, w = self.size
        yy, xx = np.mgrid[0:h, 0:w].astype(np.float32)

        base = _not_red(rng, low=40, high=215)
        tilt = rng.uniform(-60, 60, size=(2, 3))
        image = base + tilt[0] * (xx[..., None] / w - 0.5) + tilt[1] * (yy[..., None] / h - 0.5)
        freq = rng.uniform(0.05, 0.3)
        image += 12 * np.sin(freq * xx + rng.uniform(0, 6))[..., None] * rng.uniform(0, 1, size=3)

        n_shapes = int(rng.integers(2, 5))
        for _ in range(n_shapes - 1):  # distractors: any colour but red
            shape = self._shape(rng, yy, xx, h, w)
            image[shape] = _not_red(rng) + rng.normal(0, 6, size=(int(shape.sum()), 3))
        target = self._shape(rng, yy, xx, h, w)
        red = np.array([rng.uniform(170, 250), rng.uniform(10, 80), rng.uniform(10, 80)])
        image[target] = red + rng.normal(0, 6, size=(int(target.sum()), 3))
        image += rng.normal(0, 5, size=image.shape)
        image = np.clip(image, 0, 255).astype(np.uint8)
        return Sample(
            image=image,
            target=target,
            void=np.zeros((h, w), dtype=bool),
            image_id=f"{self.name}-{self.seed}-{index:05d}",
        )

    @staticmethod
    def _shape(rng: np.random.Generator, yy: np.ndarray, xx: np.ndarray, h: int, w: int) -> np.ndarray:
        cy, cx = rng.uniform(0.2, 0.8) * h, rng.uniform(0.2, 0.8) * w
        ry, rx = rng.uniform(0.1, 0.3) * h, rng.uniform(0.1, 0.3) * w
        kind = int(rng.integers(0, 3))
        angle = rng.uniform(0, 2 * np.pi) if kind == TRIANGLE else 0.0
        return shape_mask(kind, (cy, cx), (ry, rx), yy, xx, angle)
