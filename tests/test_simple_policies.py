"""Tests of the random and grid patch policies (agents/simple.py) on the classical backend."""

from __future__ import annotations

import pytest

from agents.simple import GridPolicy, RandomPolicy, sweep_order
from sam_gym.envs import SamPromptEnv
from sam_gym.evaluation import run_episodes
from sam_gym.policies import make_policy


@pytest.fixture(scope="module")
def env() -> SamPromptEnv:
    """A 4x5 grid (20 patches) with a budget of all 20 patches."""
    return SamPromptEnv(dataset="synthetic-shapes", dataset_kwargs={"n": 2}, grid=(4, 5), max_clicks=20)


def _cells(env: SamPromptEnv, points: list[tuple[float, float]]) -> list[int]:
    grid = env.episode_view().grid
    return [grid.point_to_cell(x, y) for x, y in points]


@pytest.mark.parametrize("policy", [RandomPolicy(), GridPolicy(), GridPolicy("2")], ids=["random", "grid", "grid:2"])
def test_policies_never_repeat_and_cover_the_grid(env: SamPromptEnv, policy: object) -> None:
    (record,) = run_episodes(policy, env, [0], seeds=(3,))
    cells = _cells(env, record.points)
    assert len(cells) == 20
    assert sorted(cells) == list(range(20))  # every patch exactly once: no repeat, full coverage


def test_random_is_deterministic_given_the_seed(env: SamPromptEnv) -> None:
    first = run_episodes(RandomPolicy(), env, [0, 1], seeds=(7,))
    again = run_episodes(RandomPolicy(), env, [0, 1], seeds=(7,))
    other = run_episodes(RandomPolicy(), env, [0, 1], seeds=(8,))
    assert [r.points for r in first] == [r.points for r in again]
    assert [r.points for r in first] != [r.points for r in other]


def test_grid_sweep_is_row_major_and_skips_clicked(env: SamPromptEnv) -> None:
    (record,) = run_episodes(GridPolicy(), env, [0], seeds=(0,))
    assert _cells(env, record.points) == list(range(20))
    obs, _ = env.reset(seed=0, options={"index": 0})
    policy = make_policy("grid")
    policy.bind(env)
    obs["clicked"][[0, 1, 3]] = 1.0
    assert policy.act(obs, deterministic=True) == 2


def test_sweep_order_with_a_sparse_point_grid() -> None:
    # A 2x2 point grid over a 4x4 patch grid: points at 1/4 and 3/4 -> patches (1, 1), (1, 3), (3, 1), (3, 3).
    order = sweep_order(4, 4, points_per_side=2)
    assert order[:4].tolist() == [5, 7, 13, 15]
    assert sorted(order.tolist()) == list(range(16))
    assert sweep_order(2, 3).tolist() == [0, 1, 2, 3, 4, 5]


def test_arguments_and_env_requirements() -> None:
    assert not RandomPolicy.oracle and not GridPolicy.oracle
    assert RandomPolicy.env_kwargs == GridPolicy.env_kwargs == {"action_mode": "patch"}
    with pytest.raises(ValueError, match="positive integer"):
        GridPolicy("zero")
    with pytest.raises(ValueError, match="no argument"):  # the registry refuses it; the class takes none
        make_policy("random:x")
    point_env = SamPromptEnv(dataset="synthetic-shapes", dataset_kwargs={"n": 1}, action_mode="point")
    with pytest.raises(ValueError, match="action_mode='patch'"):
        RandomPolicy().bind(point_env)
