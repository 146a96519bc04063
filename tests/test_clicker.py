"""Tests of the RITM click simulator (``sam_gym.clicker``) on hand-made masks.

Masks are ``(H, W)`` indexed ``[row, col]``; clicks are ``(x, y)`` image pixels, the centre of
pixel ``(row, col)`` being ``(col + 0.5, row + 0.5)``.
"""

from __future__ import annotations

import numpy as np
import pytest

from sam_gym.backends.classical import ClassicalBackend
from sam_gym.clicker import next_click, simulate_clicks


def _square(h: int = 21, w: int = 21, r0: int = 5, r1: int = 16, c0: int = 5, c1: int = 16) -> np.ndarray:
    mask = np.zeros((h, w), dtype=bool)
    mask[r0:r1, c0:c1] = True
    return mask


def test_first_click_is_the_centre_of_a_square() -> None:
    target = _square()
    assert next_click(target, np.zeros_like(target)) == (10.5, 10.5, 1)


def test_larger_false_positive_region_gives_a_negative_click() -> None:
    target = _square(40, 40, 2, 6, 2, 6)  # small false negative: 4x4
    pred = np.zeros_like(target)
    pred[20:36, 20:36] = True  # large false positive: 16x16
    x, y, label = next_click(target, pred)
    assert label == 0
    assert pred[int(np.floor(y)), int(np.floor(x))] and not target[int(np.floor(y)), int(np.floor(x))]


def test_clicked_pixels_are_excluded() -> None:
    target = _square()
    first = next_click(target, np.zeros_like(target))
    second = next_click(target, np.zeros_like(target), clicked=[first])
    assert second[:2] != first[:2]
    assert second[2] == 1


def test_border_padding_measures_regions_from_the_image_border() -> None:
    target = np.zeros((10, 30), dtype=bool)
    target[:, :12] = True  # touches the left, top and bottom borders
    # With 1-pixel zero padding the outside counts as background: the farthest pixels are 5 px from
    # the top/bottom/left borders (rows 4-5, cols 4-7) and the first one row-major is (4, 4). Without
    # padding the click would sit on the left border (col 0), far from the only inner edge at col 12.
    assert next_click(target, np.zeros_like(target)) == (4.5, 4.5, 1)


def test_void_is_never_clicked() -> None:
    target = _square()
    void = np.zeros_like(target)
    void[7:14, 7:14] = True  # the centre of the square is void
    x, y, _ = next_click(target, np.zeros_like(target), void=void)
    assert not void[int(np.floor(y)), int(np.floor(x))]


def test_perfect_prediction_still_returns_a_click_inside_the_target() -> None:
    target = _square()
    x, y, label = next_click(target, target)
    assert label == 1 and target[int(np.floor(y)), int(np.floor(x))]


def test_bad_shapes_raise() -> None:
    with pytest.raises(ValueError, match="2-D"):
        next_click(np.zeros((4, 4, 1)), np.zeros((4, 4)))
    with pytest.raises(ValueError, match="target's shape"):
        next_click(np.zeros((4, 4)), np.zeros((5, 4)))
    with pytest.raises(ValueError, match="max_clicks"):
        simulate_clicks(ClassicalBackend(), np.zeros((8, 8, 3), np.uint8), np.zeros((8, 8)), max_clicks=0)
    with pytest.raises(ValueError, match="image's size"):
        simulate_clicks(ClassicalBackend(), np.zeros((8, 8, 3), np.uint8), np.zeros((9, 8)))


def test_simulate_clicks_returns_one_iou_per_click_and_stops() -> None:
    image = np.full((48, 64, 3), 40, np.uint8)
    target = np.zeros((48, 64), dtype=bool)
    target[12:36, 16:48] = True
    image[target] = (220, 60, 60)
    ious = simulate_clicks(ClassicalBackend(), image, target, max_clicks=4)
    assert len(ious) == 4 and all(0.0 <= v <= 1.0 for v in ious)
    stopped = simulate_clicks(ClassicalBackend(), image, target, max_clicks=4, stop_iou=0.5)
    assert len(stopped) == 1 and stopped[0] >= 0.5
