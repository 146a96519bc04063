import numpy as np
import pytest

from sam_gym.grid import PatchGrid


def test_action_to_point_formula_and_pixel():
    grid = PatchGrid(rows=10, cols=10, height=800, width=800)  # the paper's 80x80 patches
    assert grid.n_cells == 100
    assert grid.cell_to_point(0) == (40.0, 40.0)
    assert grid.cell_to_point(99) == (760.0, 760.0)
    # a = 23 -> row 2, col 3 -> x = 3.5 * 80, y = 2.5 * 80
    assert grid.cell_to_point(23) == (280.0, 200.0)
    assert grid.pixel(280.0, 200.0) == (200, 280)  # (row, col) = (floor(y), floor(x))


def test_non_square_image_and_round_trip():
    grid = PatchGrid(rows=4, cols=6, height=90, width=130)
    for a in range(grid.n_cells):
        x, y = grid.cell_to_point(a)
        row, col = divmod(a, 6)
        assert (x, y) == ((col + 0.5) * 130 / 6, (row + 0.5) * 90 / 4)
        assert grid.point_to_cell(x, y) == a
    centers = grid.centers()
    assert centers.shape == (24, 2) and np.allclose(centers[7], grid.cell_to_point(7))


def test_normalized_point_stays_on_image():
    grid = PatchGrid(2, 2, 50, 40)
    assert grid.normalized_to_point(1.0, 1.0) == (39.5, 49.5)
    assert grid.pixel(*grid.normalized_to_point(1.0, 1.0)) == (49, 39)
    assert grid.normalized_to_point(0.5, 0.0) == (20.0, 0.0)


@pytest.mark.parametrize("bad", [dict(rows=0), dict(cols=-1), dict(rows=100, height=50)])
def test_bad_grid(bad):
    kwargs = dict(rows=2, cols=2, height=50, width=50) | bad
    with pytest.raises(ValueError, match="Expected"):
        PatchGrid(**kwargs)


def test_bad_cell():
    with pytest.raises(ValueError, match=r"cell index in \[0, 4\)"):
        PatchGrid(2, 2, 10, 10).cell_to_point(4)


def test_points_to_row_col_matches_point_to_cell_and_clips():
    grid = PatchGrid(rows=5, cols=7, height=37, width=53)
    rng = np.random.default_rng(0)
    points = np.concatenate([rng.uniform(-5.0, 60.0, size=(200, 2)), grid.centers(), [[53.0, 37.0], [0.0, 0.0]]])
    cells = grid.points_to_row_col(points)
    assert cells.shape == (len(points), 2) and cells.dtype == np.int64
    assert cells[:, 0].min() >= 0 and cells[:, 0].max() <= 4 and cells[:, 1].min() >= 0 and cells[:, 1].max() <= 6
    expected = [divmod(grid.point_to_cell(float(x), float(y)), grid.cols) for x, y in points]
    np.testing.assert_array_equal(cells, np.array(expected))
    assert grid.points_to_row_col(np.zeros((0, 2))).shape == (0, 2)
    assert grid.points_to_row_col([]).shape == (0, 2)
