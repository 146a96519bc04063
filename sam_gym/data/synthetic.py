"""Built-in, seeded, procedural datasets (no files, no downloads).

``"synthetic-shapes"``: each image is a textured background with two to four coloured shapes
(ellipses, rectangles, triangles). **The target is always the red shape** (drawn last, so never
occluded); the other shapes and the background's base colour are never red (its gradients and
stripes can redden a few background pixels). The task therefore has a learnable
semantic, like the "salient object" or an object class of AlignSAM's tasks: a prompting policy can
learn where the object is, rather than guess which of several shapes was picked. Gradients,
stripes and noise keep it from being trivial for a colour threshold, and distractors can share the
target's shape.

``"synthetic-multi"``: the same scenes with **two or three smaller red shapes, all of them the
target** (one to three distractors). A click selects one connected shape (the classical backend's
star-convexity prior is centred on each positive click; SAM, too, usually segments the object under
a point), so one good click is not enough: every red shape needs a click of its own, as for
multi-instance classes ("all polyps", "the shadows") in AlignSAM's tasks. This is where *where to
click* matters after the first click.

``"synthetic-clutter"`` (the default data of ``SamPrompt-v0`` since sam_gym 0.2.0): **three to five
small red shapes, all of them the target**, among three to six larger distractors of any colour but
red. The initial ground-truth pair selects about one red shape of several (mean IoU about 0.4 at reset),
so the clicks decide the episode: uniformly random patches rarely find every red shape in 15 clicks,
and the click simulator does in a few (figures: ``docs/evaluation.md``, "The default task"). Each red
shape is a whole, unoccluded, uniformly red object set off from what surrounds it, the kind of thing
a point prompt selects, in SAM as in the classical backend.

Sample ``i`` depends only on ``(seed, i)``.
"""

from __future__ import annotations

import numpy as np

from sam_gym.data.base import Sample

__all__ = ["SyntheticShapes", "shape_mask", "synthetic_clutter", "synthetic_multi"]

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

    Masks are ``(H, W)`` bool arrays indexed ``[row, col]``; images are ``(H, W, 3)`` uint8 RGB.

    Args:
        n: Number of samples.
        size: Image size ``(H, W)``.
        seed: Base seed; sample ``i`` uses ``(seed, i)``.
        name: Dataset name used in reports.
        targets: Inclusive range ``(low, high)`` of the number of red shapes, which together form the
            target. ``(1, 1)`` is ``"synthetic-shapes"``; :func:`synthetic_multi` uses ``(2, 3)``.
        target_radius: Inclusive range of the red shapes' half-extents, as fractions of ``H`` and ``W``
            (distractors always use ``(0.1, 0.3)``).
        distractors: Inclusive range ``(low, high)`` of the number of shapes that are not red, drawn
            before the red ones (which may cover them). ``(1, 3)`` is ``"synthetic-shapes"`` and
            ``"synthetic-multi"``; :func:`synthetic_clutter` uses ``(3, 6)``.
    """

    def __init__(
        self,
        n: int = 64,
        size: tuple[int, int] = (128, 160),
        seed: int = 0,
        name: str = "synthetic-shapes",
        targets: tuple[int, int] = (1, 1),
        target_radius: tuple[float, float] = (0.1, 0.3),
        distractors: tuple[int, int] = (1, 3),
    ) -> None:
        if not isinstance(n, int) or n < 1:
            raise ValueError(f"Expected n to be a positive integer, got {n!r}")
        if len(size) != 2 or min(size) < 32:
            raise ValueError(f"Expected size (H, W) with both at least 32, got {size!r}")
        low, high = (int(t) for t in targets)
        if not 1 <= low <= high:
            raise ValueError(f"Expected targets (low, high) with 1 <= low <= high, got {targets!r}")
        r_low, r_high = (float(r) for r in target_radius)
        if not 0.0 < r_low <= r_high <= 0.5:
            raise ValueError(f"Expected target_radius (low, high) with 0 < low <= high <= 0.5, got {target_radius!r}")
        d_low, d_high = (int(d) for d in distractors)
        if not 0 <= d_low <= d_high:
            raise ValueError(f"Expected distractors (low, high) with 0 <= low <= high, got {distractors!r}")
        self.n = n
        self.size = (int(size[0]), int(size[1]))
        self.seed = int(seed)
        self.name = name
        self.targets = (low, high)
        self.target_radius = (r_low, r_high)
        self.distractors = (d_low, d_high)

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

        # Drawn as integers(low, high + 1): with (1, 3) the same draw as the former integers(2, 5) - 1.
        n_distractors = int(rng.integers(self.distractors[0], self.distractors[1] + 1))
        for _ in range(n_distractors):  # any colour but red
            shape = self._shape(rng, yy, xx, h, w)
            image[shape] = _not_red(rng) + rng.normal(0, 6, size=(int(shape.sum()), 3))
        # (1, 1) draws nothing here, so "synthetic-shapes" samples stay what they were.
        low, high = self.targets
        n_targets = low if low == high else int(rng.integers(low, high + 1))
        target = np.zeros((h, w), dtype=bool)
        for _ in range(n_targets):
            shape = self._shape(rng, yy, xx, h, w, self.target_radius)
            red = np.array([rng.uniform(170, 250), rng.uniform(10, 80), rng.uniform(10, 80)])
            image[shape] = red + rng.normal(0, 6, size=(int(shape.sum()), 3))
            target |= shape
        image += rng.normal(0, 5, size=image.shape)
        image = np.clip(image, 0, 255).astype(np.uint8)
        return Sample(
            image=image,
            target=target,
            void=np.zeros((h, w), dtype=bool),
            image_id=f"{self.name}-{self.seed}-{index:05d}",
        )

    @staticmethod
    def _shape(
        rng: np.random.Generator, yy: np.ndarray, xx: np.ndarray, h: int, w: int,
        radius: tuple[float, float] = (0.1, 0.3),
    ) -> np.ndarray:
        cy, cx = rng.uniform(0.2, 0.8) * h, rng.uniform(0.2, 0.8) * w
        ry, rx = rng.uniform(*radius) * h, rng.uniform(*radius) * w
        kind = int(rng.integers(0, 3))
        angle = rng.uniform(0, 2 * np.pi) if kind == TRIANGLE else 0.0
        return shape_mask(kind, (cy, cx), (ry, rx), yy, xx, angle)


def synthetic_multi(n: int = 64, size: tuple[int, int] = (128, 160), seed: int = 0) -> SyntheticShapes:
    """Return ``"synthetic-multi"``: two or three red shapes per image, all of them the target.

    Args:
        n: Number of samples.
        size: Image size ``(H, W)``.
        seed: Base seed; sample ``i`` uses ``(seed, i)``.
    """
    return SyntheticShapes(n=n, size=size, seed=seed, name="synthetic-multi", targets=(2, 3),
                           target_radius=(0.07, 0.16))


def synthetic_clutter(n: int = 64, size: tuple[int, int] = (128, 160), seed: int = 0) -> SyntheticShapes:
    """Return ``"synthetic-clutter"``: three to five small red shapes (the target) among three to six distractors.

    The default data of ``SamPrompt-v0`` (see the module docstring).

    Args:
        n: Number of samples.
        size: Image size ``(H, W)``.
        seed: Base seed; sample ``i`` uses ``(seed, i)``.
    """
    return SyntheticShapes(n=n, size=size, seed=seed, name="synthetic-clutter", targets=(3, 5),
                           target_radius=(0.05, 0.12), distractors=(3, 6))
