"""The one place that maps actions and points to grid cells and back (AlignSAM's patch grid).

The image is split into ``rows x cols`` patches (AlignSAM: 800x800 image, 80x80 patches, 10x10
grid, 100 actions). Action ``a`` picks the centre of patch ``(row, col) = (a // cols, a % cols)``:

    (x, y) = ((col + 0.5) * W / cols, (row + 0.5) * H / rows)

in original-image pixels (``x`` to the right, ``y`` down), and the ground-truth pixel read for the
reward is ``(floor(y), floor(x))`` as ``[row, col]``. Continuous points ``(u, v)`` in ``[0, 1]^2``
map to ``(x, y) = (u * W, v * H)``, clipped to the last pixel.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from numpy.typing import ArrayLike, NDArray

__all__ = ["PatchGrid", "cell_of_point"]


@dataclass(frozen=True)
class PatchGrid:
    """A ``rows x cols`` grid of patches over an ``H x W`` image.

    Args:
        rows: Number of patch rows (along ``y``).
        cols: Number of patch columns (along ``x``).
        height: Image height ``H`` in pixels.
        width: Image width ``W`` in pixels.
    """

    rows: int
    cols: int
    height: int
    width: int

    def __post_init__(self) -> None:
        for name in ("rows", "cols", "height", "width"):
            value = getattr(self, name)
            if not isinstance(value, (int, np.integer)) or value < 1:
                raise ValueError(f"Expected {name} to be a positive integer, got {value!r}")
        if self.rows > self.height or self.cols > self.width:
            raise ValueError(
                f"Expected a grid no finer than the image, got a {self.rows}x{self.cols} grid "
                f"on a {self.height}x{self.width} image"
            )

    @property
    def n_cells(self) -> int:
        """Number of patches (= number of discrete location actions)."""
        return self.rows * self.cols

    def cell_to_point(self, cell: int) -> tuple[float, float]:
        """Return the ``(x, y)`` centre, in image pixels, of patch ``cell``."""
        cell = int(cell)
        if not 0 <= cell < self.n_cells:
            raise ValueError(f"Expected a cell index in [0, {self.n_cells}), got {cell}")
        row, col = divmod(cell, self.cols)
        return (col + 0.5) * self.width / self.cols, (row + 0.5) * self.height / self.rows

    def point_to_cell(self, x: float, y: float) -> int:
        """Return the index of the patch that contains the ``(x, y)`` point."""
        row, col = cell_of_point(x, y, self.rows, self.cols, self.height, self.width)
        return row * self.cols + col

    def points_to_row_col(self, points: ArrayLike) -> NDArray[np.int64]:
        """Return the ``(row, col)`` patch of each ``(x, y)`` point: the vectorised :meth:`point_to_cell`.

        ``row = floor(y * rows / H)`` and ``col = floor(x * cols / W)``, clipped to the grid, computed
        in float64.

        Args:
            points: ``(N, 2)`` (or anything that reshapes to it, ``N`` may be 0) ``(x, y)`` points in
                image pixels.

        Returns:
            ``(N, 2)`` int64 array of ``(row, col)`` patches.

        >>> PatchGrid(rows=2, cols=4, height=20, width=40).points_to_row_col([(5.0, 15.0), (39.9, 0.0)])
        array([[1, 0],
               [0, 3]])
        """
        pts = np.asarray(points, dtype=np.float64).reshape(-1, 2)
        rows = np.clip(np.floor(pts[:, 1] * self.rows / self.height), 0, self.rows - 1)
        cols = np.clip(np.floor(pts[:, 0] * self.cols / self.width), 0, self.cols - 1)
        return np.stack([rows, cols], axis=1).astype(np.int64)

    def pixel(self, x: float, y: float) -> tuple[int, int]:
        """Return the ``(row, col)`` pixel that the ``(x, y)`` point falls on, clipped to the image."""
        row = min(max(int(np.floor(y)), 0), self.height - 1)
        col = min(max(int(np.floor(x)), 0), self.width - 1)
        return row, col

    def normalized_to_point(self, u: float, v: float) -> tuple[float, float]:
        """Map a normalised ``(u, v)`` in ``[0, 1]^2`` to an ``(x, y)`` point in image pixels."""
        if not (np.isfinite(u) and np.isfinite(v)):
            raise ValueError(f"Expected a finite normalised point, got ({u}, {v})")
        u = float(np.clip(u, 0.0, 1.0))
        v = float(np.clip(v, 0.0, 1.0))
        # Keep the point on the last pixel, not on the image's far border.
        return min(u * self.width, self.width - 0.5), min(v * self.height, self.height - 0.5)

    def centers(self) -> np.ndarray:
        """Return all patch centres as an ``(n_cells, 2)`` float array of ``(x, y)`` points."""
        return np.array([self.cell_to_point(a) for a in range(self.n_cells)], dtype=np.float32)


def cell_of_point(x: float, y: float, rows: int, cols: int, height: int, width: int) -> tuple[int, int]:
    """Return the ``(row, col)`` cell of a ``rows x cols`` grid over an ``H x W`` image holding point ``(x, y)``.

    ``(floor(y * rows / H), floor(x * cols / W))``, clamped to the grid. Unlike :class:`PatchGrid`
    the grid may be finer than the image (e.g. a ``64 x 64`` feature map over a small image).
    """
    row = min(max(int(np.floor(y * rows / height)), 0), rows - 1)
    col = min(max(int(np.floor(x * cols / width)), 0), cols - 1)
    return row, col
