"""Input checks shared by the metric modules: masks, maps, void, numbers, IoU curves.

Every check raises ``ValueError("Expected ..., got ...")`` naming the offending argument.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Any

import numpy as np
from numpy.typing import ArrayLike, NDArray


def _as_2d(name: str, arr: ArrayLike) -> NDArray[Any]:
    a = np.asarray(arr)
    if a.ndim != 2:
        raise ValueError(f"Expected {name} to be a 2-D (H, W) array, got shape {a.shape}")
    if a.size == 0:
        raise ValueError(f"Expected {name} to be non-empty, got shape {a.shape}")
    if not (a.dtype == np.bool_ or np.issubdtype(a.dtype, np.integer) or np.issubdtype(a.dtype, np.floating)):
        raise ValueError(f"Expected {name} to have a bool, integer or float dtype, got {a.dtype}")
    return a


def _as_bool(name: str, arr: ArrayLike) -> NDArray[np.bool_]:
    a = _as_2d(name, arr)
    if a.dtype == np.bool_:
        return a
    if not np.all((a == 0) | (a == 1)):
        bad = a[(a != 0) & (a != 1)].ravel()[0]
        raise ValueError(
            f"Expected {name} to be a binary mask (bool, or values in {{0, 1}}), got a value {bad!r}"
        )
    return a.astype(bool)


def _as_unit_float(name: str, arr: ArrayLike) -> NDArray[np.float64]:
    a = _as_2d(name, arr)
    f = a.astype(np.float64)
    if a.dtype != np.bool_:
        if not np.all(np.isfinite(f)):
            raise ValueError(f"Expected {name} to contain only finite values, got NaN or inf")
        lo, hi = float(f.min()), float(f.max())
        if lo < 0.0 or hi > 1.0:
            raise ValueError(f"Expected {name} values in [0, 1], got range [{lo}, {hi}]")
    return f


def _valid_mask(shape: tuple[int, ...], void: ArrayLike | None) -> NDArray[np.bool_] | None:
    """Return the boolean mask of non-void pixels, or None when there is no void."""
    if void is None:
        return None
    v = _as_bool("void", void)
    if v.shape != shape:
        raise ValueError(f"Expected void to have shape {shape}, got {v.shape}")
    if v.all():
        raise ValueError("Expected at least one non-void pixel, got a void mask covering every pixel")
    return ~v


def _check_same_shape(pred: NDArray[Any], target: NDArray[Any]) -> None:
    if pred.shape != target.shape:
        raise ValueError(f"Expected pred and target of the same shape, got {pred.shape} and {target.shape}")


def _pixels(
    pred: ArrayLike, target: ArrayLike, void: ArrayLike | None, soft: bool
) -> tuple[NDArray[Any], NDArray[np.bool_]]:
    """Validate a (pred, binary target, void) triple and return the 1-D non-void pixels.

    ``pred`` is binary, or with ``soft`` a float map in ``[0, 1]``.
    """
    p = _as_unit_float("pred", pred) if soft else _as_bool("pred", pred)
    t = _as_bool("target", target)
    _check_same_shape(p, t)
    valid = _valid_mask(p.shape, void)
    if valid is None:
        return p.ravel(), t.ravel()
    return p[valid], t[valid]


def _check_number(
    name: str,
    value: object,
    *,
    low: int,
    high: float = math.inf,
    low_open: bool = False,
    high_open: bool = False,
    integer: bool = False,
    kind: str | None = None,
) -> float:
    """Validate a scalar parameter against a range and return it as a float (an int with ``integer``).

    Args:
        name: Parameter name for the error message.
        value: The value to check; ``bool`` is rejected, numpy scalars are accepted.
        low: Lower bound.
        high: Upper bound (``math.inf``: none; ``inf`` itself is accepted only if ``high_open`` is off).
        low_open: Exclude ``low`` (``value > low``) instead of including it.
        high_open: Exclude ``high``.
        integer: Require an integer.
        kind: What the value should be, for the type error (default: derived from the range).

    Raises:
        ValueError: ``"Expected {name} to be {kind}, got ..."`` on a wrong type, ``"Expected {name}
            {range}, got ..."`` (NaN included) when out of range.
    """
    if math.isinf(high):
        interval = f"{'>' if low_open else '>='} {low}"
    else:
        interval = f"in {'(' if low_open else '['}{low}, {high}{')' if high_open else ']'}"
    if (
        isinstance(value, bool)
        or not isinstance(value, (int, float, np.integer, np.floating))
        or (integer and not isinstance(value, (int, np.integer)))
    ):
        what = kind or f"{'an int' if integer else 'a float'} {interval}"
        raise ValueError(f"Expected {name} to be {what}, got {value!r}")
    number = int(value) if integer else float(value)
    above = number > low if low_open else number >= low
    below = number < high if high_open else number <= high
    if not (above and below):
        raise ValueError(f"Expected {name} {interval}, got {number}")
    return number


def _episode(ious: Sequence[float] | ArrayLike, max_clicks: int) -> NDArray[np.float64]:
    """Validate one episode's IoU curve and truncate it to ``max_clicks`` entries."""
    try:
        a = np.asarray(ious, dtype=np.float64)
    except (TypeError, ValueError) as exc:
        raise ValueError(f"Expected ious to be a 1-D sequence of floats, got {ious!r}") from exc
    if a.ndim != 1:
        raise ValueError(f"Expected ious to be a 1-D sequence of floats, got shape {a.shape}")
    if a.size == 0:
        raise ValueError("Expected ious to hold at least one IoU (one per click), got an empty sequence")
    if not np.all(np.isfinite(a)) or a.min() < 0.0 or a.max() > 1.0:
        raise ValueError(f"Expected ious values in [0, 1], got {a.tolist()}")
    return a[:max_clicks]


def _episodes(list_of_ious: Sequence[Sequence[float]] | ArrayLike) -> list[Any]:
    if isinstance(list_of_ious, np.ndarray):
        if list_of_ious.ndim != 2:
            raise ValueError(
                f"Expected list_of_ious to be a sequence of IoU sequences, got an array of shape "
                f"{list_of_ious.shape}"
            )
        eps = list(list_of_ious)
    else:
        eps = list(list_of_ious)  # type: ignore[arg-type]
    if len(eps) == 0:
        raise ValueError("Expected at least one episode in list_of_ious, got an empty sequence")
    return eps
