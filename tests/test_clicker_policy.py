"""Tests of the click-simulator policy (agents/clicker.py: ClickerPolicy) through the env."""

from __future__ import annotations

import numpy as np
import pytest

from agents.clicker import ClickerPolicy, click_action
from sam_gym.clicker import next_click, simulate_clicks
from sam_gym.data import Sample, SyntheticShapes
from sam_gym.envs import SamPromptEnv
from sam_gym.evaluation import run_episodes
from sam_gym.grid import PatchGrid
from sam_gym.policies import make_policy


class _OneSample:
    """A one-sample dataset."""

    name = "one"

    def __init__(self, sample: Sample) -> None:
        self.sample = sample

    def __len__(self) -> int:
        return 1

    def __getitem__(self, index: int) -> Sample:
        return self.sample


@pytest.mark.parametrize("size", [(37, 53), (128, 160), (1, 1000), (999, 7)])
def test_click_action_lands_on_the_pixel_for_every_row_and_column(size: tuple[int, int]) -> None:
    height, width = size
    grid = PatchGrid(1, 1, height, width)
    for row in range(height):
        x, y = grid.normalized_to_point(*click_action(0.5, row + 0.5, 1, height, width)[:2].tolist())
        assert grid.pixel(x, y)[0] == row
        assert abs(y - (row + 0.5)) < 1e-3
    for col in range(width):
        x, y = grid.normalized_to_point(*click_action(col + 0.5, 0.5, 1, height, width)[:2].tolist())
        assert grid.pixel(x, y)[1] == col
        assert abs(x - (col + 0.5)) < 1e-3


def test_clicker_point_lands_on_the_intended_pixel_through_the_env() -> None:
    """Targets in the image corners, the last row and column included: each click hits the chosen pixel."""
    height, width = 41, 57
    image = np.random.default_rng(0).integers(0, 256, (height, width, 3), dtype=np.uint8)
    for rows, cols in [(slice(height - 1, height), slice(width - 1, width)), (slice(0, 1), slice(0, 1)),
                       (slice(height - 3, height), slice(0, 4)), (slice(10, 20), slice(width - 5, width))]:
        target = np.zeros((height, width), dtype=bool)
        target[rows, cols] = True
        sample = Sample(image=image, target=target, void=np.zeros_like(target), image_id="corner")
        env = SamPromptEnv(dataset=_OneSample(sample), action_mode="point", init_prompts="none", max_clicks=3)
        policy = ClickerPolicy()
        policy.bind(env)
        obs, _ = env.reset(seed=0, options={"index": 0})
        for _ in range(3):
            view = env.episode_view()
            expected = next_click(target, view.mask, sample.void, [tuple(p) for p in view.points.tolist()])
            obs, _, terminated, truncated, info = env.step(policy.act(obs, deterministic=True))
            x, y = info["point"]
            assert (int(np.floor(y)), int(np.floor(x))) == (int(expected[1]), int(expected[0]))
            assert info["label"] == expected[2]
            assert not info["repeat"]
            if terminated or truncated:
                break


def test_clicker_reaches_high_iou_on_synthetic_shapes() -> None:
    env = SamPromptEnv(dataset="synthetic-shapes", dataset_kwargs={"n": 4}, action_mode="point",
                       init_prompts="none", max_clicks=20)
    records = run_episodes(make_policy("clicker"), env, range(4), seeds=(0,))
    best = [max(r.ious) for r in records]
    assert min(best) >= 0.85
    assert np.mean(best) > 0.9
    assert all(r.labels[0] == 1 for r in records)  # the first click on an empty mask is positive


def test_env_episodes_agree_with_simulate_clicks() -> None:
    """The env + policy path is the NoC protocol of :func:`sam_gym.clicker.simulate_clicks`."""
    dataset = SyntheticShapes(n=3)
    env = SamPromptEnv(dataset=dataset, action_mode="point", init_prompts="none", max_clicks=6)
    records = run_episodes(ClickerPolicy(), env, range(3), seeds=(0,))
    for index, record in enumerate(records):
        sample = dataset[index]
        expected = simulate_clicks(env.backend, sample.image, sample.target, sample.void, max_clicks=6)
        np.testing.assert_allclose(record.ious, expected, atol=1e-9)


def test_clicker_declares_oracle_point_mode_and_rejects_patch_envs() -> None:
    assert ClickerPolicy.oracle
    assert ClickerPolicy.env_kwargs == {"action_mode": "point", "init_prompts": "none"}
    with pytest.raises(ValueError, match="action_mode='point'"):
        ClickerPolicy().bind(SamPromptEnv(dataset="synthetic-shapes", dataset_kwargs={"n": 1}))
    with pytest.raises(ValueError, match="no argument"):  # the registry refuses it; the class takes none
        make_policy("clicker:x")
