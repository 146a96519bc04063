"""Reference-free baselines that pick patches of the grid: uniformly at random, or in a fixed sweep.

Both act in the env's ``"patch"`` action mode (``Discrete(rows * cols)``): action ``a`` clicks the
centre ``(x, y) = ((col + 0.5) * W / cols, (row + 0.5) * H / rows)`` of patch
``(row, col) = (a // cols, a % cols)``, in image pixels (x right, y down; the pixel read is
``[floor(y), floor(x)]`` as ``[row, col]``), see :class:`sam_gym.grid.PatchGrid`. The click's label
comes from the env's ``label_mode``. Neither policy reads ground truth (``oracle = False``); both
skip patches that were already clicked (the observation's ``clicked`` vector), so they never
repeat a patch while an unclicked one is left.
"""

from __future__ import annotations

from typing import Any, ClassVar

import numpy as np

from sam_gym.policy import PromptPolicy

__all__ = ["GridPolicy", "RandomPolicy", "sweep_order"]


def _unclicked(observation: dict[str, np.ndarray]) -> np.ndarray:
    """Indices of the patches not clicked yet (all patches when every one was clicked)."""
    clicked = np.asarray(observation["clicked"]).reshape(-1) > 0.5
    free = np.flatnonzero(~clicked)
    return free if free.size else np.arange(clicked.size)


class RandomPolicy(PromptPolicy):
    """Click a uniformly random patch among those not clicked yet.

    The draw uses the env's ``np_random`` (through :meth:`~sam_gym.policy.PromptPolicy.view`), so an
    episode is reproducible from the ``reset`` seed alone. ``deterministic`` is ignored: the policy
    has no greedy mode (a fixed order is :class:`GridPolicy`).
    """

    name: ClassVar[str] = "random"
    oracle: ClassVar[bool] = False
    env_kwargs: ClassVar[dict[str, Any]] = {"action_mode": "patch"}

    def act(self, observation: dict[str, np.ndarray], deterministic: bool) -> int:
        """Return a patch index drawn uniformly among the unclicked patches."""
        free = _unclicked(observation)
        return int(free[int(self.view().np_random.integers(free.size))])


def sweep_order(rows: int, cols: int, points_per_side: int | None = None) -> np.ndarray:
    """Return the fixed order in which :class:`GridPolicy` visits the ``rows x cols`` patches.

    Without ``points_per_side``: every patch, row-major (``0, 1, ..., rows * cols - 1``), the order
    of SAM's automatic mask generator point grid (``build_point_grid``: x varies fastest).

    With ``points_per_side = n``: first the patches containing SAM's ``n x n`` point grid, i.e. the
    normalised points ``((i + 0.5) / n, (j + 0.5) / n)``, row-major and without duplicates; then
    the remaining patches, row-major.

    Args:
        rows: Patch rows.
        cols: Patch columns.
        points_per_side: Side ``n`` of the sparse point grid visited first, or ``None``.

    Returns:
        ``(rows * cols,)`` int64 permutation of the patch indices.

    Raises:
        ValueError: If a size is not a positive integer.
    """
    for label, value in (("rows", rows), ("cols", cols)):
        if not isinstance(value, (int, np.integer)) or value < 1:
            raise ValueError(f"Expected {label} to be a positive integer, got {value!r}")
    order: list[int] = []
    if points_per_side is not None:
        if not isinstance(points_per_side, (int, np.integer)) or points_per_side < 1:
            raise ValueError(f"Expected points_per_side to be a positive integer, got {points_per_side!r}")
        centres = (np.arange(points_per_side) + 0.5) / points_per_side
        for v in centres:
            for u in centres:
                cell = int(np.floor(v * rows)) * cols + int(np.floor(u * cols))
                if cell not in order:
                    order.append(cell)
    seen = set(order)
    order.extend(cell for cell in range(rows * cols) if cell not in seen)
    return np.asarray(order, dtype=np.int64)


class GridPolicy(PromptPolicy):
    """Click the patches in a fixed sweep (SAM automatic-mask-generator order), skipping clicked ones.

    The order is :func:`sweep_order`: row-major over all patches, or, with ``grid:N``, first the
    patches under SAM's ``N x N`` point grid (spread over the image), then the rest row-major.

    Args:
        arg: ``None`` (spec ``grid``) for the plain row-major sweep, or a positive integer string
            ``N`` (spec ``grid:N``) for the sparse ``N x N`` point grid first.

    Raises:
        ValueError: If ``arg`` is not a positive integer string.
    """

    name: ClassVar[str] = "grid"
    oracle: ClassVar[bool] = False
    env_kwargs: ClassVar[dict[str, Any]] = {"action_mode": "patch"}

    def __init__(self, arg: str | None = None) -> None:
        super().__init__()
        if arg is None:
            self.points_per_side: int | None = None
        elif isinstance(arg, str) and arg.isdigit() and int(arg) >= 1:
            self.points_per_side = int(arg)
        else:
            raise ValueError(f"Expected the grid policy argument to be a positive integer N (grid:N), got {arg!r}")

    def act(self, observation: dict[str, np.ndarray], deterministic: bool) -> int:
        """Return the first patch of the sweep that was not clicked yet."""
        env = self.env
        clicked = np.asarray(observation["clicked"]).reshape(-1) > 0.5
        order = sweep_order(env.rows, env.cols, self.points_per_side)
        free = order[~clicked[order]]
        return int(free[0] if free.size else order[0])
