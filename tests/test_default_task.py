"""The zero-argument ``gym.make("SamPrompt-v0")`` is a task where the clicks decide success (issue 12).

Protocol (the acceptance figures of issue 12 part 1, all with the env's defaults: ``synthetic-clutter``,
classical backend, 10 x 10 grid, 15 clicks, success = final IoU >= 0.85): episode ``s`` is
``reset(seed=s)`` (the env draws the sample).

* initial IoU: ``info["iou"]`` after the ``gt_pair`` initial prompts, at reset;
* random: uniformly random unclicked patches (``agents.simple.RandomPolicy``, oracle labels),
  ``is_success`` at episode end;
* clicker: the RITM click simulator (``agents.clicker.ClickerPolicy``, point actions, no initial
  prompts, its ``env_kwargs``), ``is_success`` after its 15 clicks.

The tests use seeds 0..19; the 50-seed figures in ``docs/evaluation.md`` ("The default task") come
from running this file as a script (``--dataset synthetic-shapes`` for the default before 0.2.0)::

    OMP_NUM_THREADS=1 python tests/test_default_task.py --seeds 50
"""

from __future__ import annotations

import argparse
import hashlib

import gymnasium as gym
import numpy as np
import pytest
from scipy import ndimage

import sam_gym  # noqa: F401  (registers the envs)
from agents.clicker import ClickerPolicy
from agents.simple import RandomPolicy
from sam_gym.data import SyntheticShapes, make_dataset, synthetic_clutter

#: Seeds of the tests (the docs' figures use 50).
TEST_SEEDS = range(20)
#: Issue 12's bounds on the default task.
MAX_INIT_IOU, MAX_RANDOM_SUCCESS, MIN_CLICKER_SUCCESS = 0.6, 0.35, 0.9


def _play(env: gym.Env, policy: RandomPolicy | ClickerPolicy, seed: int) -> tuple[float, bool]:
    """Run one episode from ``reset(seed=seed)``; return the IoU at reset and the final ``is_success``."""
    obs, info = env.reset(seed=seed)
    init_iou = float(info["iou"])
    done = False
    while not done:
        action, _ = policy.predict(obs)
        obs, _, terminated, truncated, info = env.step(action)
        done = terminated or truncated
    return init_iou, bool(info["is_success"])


def default_task_figures(seeds: range, dataset: str | None = None) -> dict[str, np.ndarray]:
    """Per-seed initial IoU, random success and clicker success on ``SamPrompt-v0`` (default data if ``None``)."""
    data = {} if dataset is None else {"dataset": dataset}
    env = gym.make("SamPrompt-v0", **data)
    random_policy = RandomPolicy()
    random_policy.bind(env)
    random_runs = [_play(env, random_policy, s) for s in seeds]
    clicker_env = gym.make("SamPrompt-v0", **data, **ClickerPolicy.env_kwargs)
    clicker = ClickerPolicy()
    clicker.bind(clicker_env)
    clicker_runs = [_play(clicker_env, clicker, s) for s in seeds]
    return {
        "initial IoU": np.array([iou for iou, _ in random_runs]),
        "initial prompts alone succeed": np.array([iou >= 0.85 for iou, _ in random_runs], dtype=float),
        "random success": np.array([ok for _, ok in random_runs], dtype=float),
        "clicker success": np.array([ok for _, ok in clicker_runs], dtype=float),
    }


@pytest.fixture(scope="module")
def figures() -> dict[str, np.ndarray]:
    return default_task_figures(TEST_SEEDS)


def test_default_env_uses_synthetic_clutter() -> None:
    env = gym.make("SamPrompt-v0")
    assert env.unwrapped.dataset.name == "synthetic-clutter"
    assert env.unwrapped.dataset[0].image_id == make_dataset("synthetic-clutter")[0].image_id


def test_initial_prompts_leave_most_of_the_target(figures: dict[str, np.ndarray]) -> None:
    assert figures["initial IoU"].mean() <= MAX_INIT_IOU
    assert figures["initial prompts alone succeed"].mean() <= 0.1


def test_random_clicks_rarely_succeed(figures: dict[str, np.ndarray]) -> None:
    assert figures["random success"].mean() <= MAX_RANDOM_SUCCESS


def test_click_simulator_succeeds(figures: dict[str, np.ndarray]) -> None:
    assert figures["clicker success"].mean() >= MIN_CLICKER_SUCCESS


def test_synthetic_clutter_is_deterministic_per_seed() -> None:
    a, b = synthetic_clutter(n=6, seed=3), make_dataset("synthetic-clutter", n=40, seed=3)
    for i in range(6):  # sample i depends on (seed, i) only, not on n or on the object
        assert np.array_equal(a[i].image, b[i].image) and np.array_equal(a[i].target, b[i].target)
        assert a[i].image_id == b[i].image_id == f"synthetic-clutter-3-{i:05d}"
    other = synthetic_clutter(n=6, seed=4)
    assert not any(np.array_equal(a[i].image, other[i].image) for i in range(6))


def test_synthetic_clutter_target_is_several_red_shapes() -> None:
    ds = synthetic_clutter(n=30)
    regions = []
    for i in range(len(ds)):
        sample = ds[i]
        assert sample.image.shape == (128, 160, 3) and sample.image.dtype == np.uint8
        assert not sample.void.any()
        red = sample.image[sample.target].astype(float).mean(axis=0)
        assert red[0] - max(red[1], red[2]) > 90  # the target is the red stuff
        regions.append(ndimage.label(sample.target)[1])
        assert 0.01 < sample.target.mean() < 0.35
    # three to five red shapes, touching ones merge: most images have three or more target regions
    assert max(regions) <= 5 and sum(r >= 3 for r in regions) >= 20


def test_distractors_argument_is_checked() -> None:
    with pytest.raises(ValueError, match="distractors"):
        SyntheticShapes(distractors=(3, 1))
    assert SyntheticShapes(distractors=(0, 0))[0].target.any()


#: SHA-256 (first 16 hex digits) of the first four samples' images and targets, as of sam_gym 0.1.0.
SHAPES_DIGEST, MULTI_DIGEST = "506d995488a64773", "0279e878de9f19be"


def _digest(name: str, n: int) -> str:
    digest = hashlib.sha256()
    for sample in (make_dataset(name, n=n)[i] for i in range(n)):
        digest.update(sample.image.tobytes())
        digest.update(sample.target.tobytes())
    return digest.hexdigest()[:16]


def test_older_synthetic_datasets_are_unchanged() -> None:
    # Pinned in 0.2.0: the distractors argument must leave the named datasets' samples as they were.
    assert _digest("synthetic-shapes", 4) == SHAPES_DIGEST
    assert _digest("synthetic-multi", 4) == MULTI_DIGEST


def main() -> None:
    """Print the figures with 95 % bootstrap confidence intervals over seeds."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seeds", type=int, default=50, help="episodes: reset(seed=s) for s in 0..SEEDS-1")
    parser.add_argument("--dataset", default=None, help="another dataset than the default (e.g. synthetic-shapes)")
    args = parser.parse_args()
    rng = np.random.default_rng(0)
    for name, values in default_task_figures(range(args.seeds), args.dataset).items():
        means = rng.choice(values, size=(10_000, values.size)).mean(axis=1)
        low, high = np.quantile(means, [0.025, 0.975])
        print(f"{name}: {values.mean():.3f} (95 % bootstrap CI {low:.3f} to {high:.3f}, std {values.std():.3f}, "
              f"{values.size} seeds)")


if __name__ == "__main__":
    main()
