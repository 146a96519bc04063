"""The batched episode core: the single env is its N = 1 case; training on the batched env at 256 envs."""

from __future__ import annotations

import numpy as np
import pytest

from sam_gym.envs import SamPromptEnv
from sam_gym.envs.core import EpisodeCore
from sam_gym.envs.vector_env import SamPromptVectorEnv

SMALL = dict(dataset="synthetic-shapes", dataset_kwargs=dict(n=6))


def test_single_env_is_row_zero_of_its_own_core():
    env = SamPromptEnv(**SMALL, max_clicks=3)
    assert isinstance(env._core, EpisodeCore) and env._core.state.n == 1
    env.reset(seed=0)
    env.step(5)
    state = env._core.state
    assert state.n_clicks.tolist() == [1] and state.clicked_cells[0, 5] and state.n_prompts.tolist() == [3]


def test_sub_envs_are_rows_of_the_vector_core():
    vector = SamPromptVectorEnv(3, **SMALL, max_clicks=3)
    vector.reset(seed=0)
    vector.step(np.array([1, 2, 3]))
    assert all(env._core is vector.core for env in vector.envs)
    assert vector.core.state.clicked_cells[np.arange(3), [1, 2, 3]].all()
    assert [env.episode_view().n_clicks for env in vector.envs] == [1, 1, 1]
    np.testing.assert_array_equal(vector.action_masks(), np.stack([env.action_masks() for env in vector.envs]))


def test_array_and_list_actions_give_the_same_step():
    a, b = SamPromptVectorEnv(2, **SMALL), SamPromptVectorEnv(2, **SMALL)
    a.reset(seed=1)
    b.reset(seed=1)
    out_a, out_b = a.step(np.array([4, 9])), b.step([4, 9])
    for key in out_a[0]:
        np.testing.assert_array_equal(out_a[0][key], out_b[0][key])
    np.testing.assert_array_equal(out_a[1], out_b[1])


def test_array_actions_out_of_range_are_refused_before_any_change():
    vector = SamPromptVectorEnv(2, **SMALL)
    vector.reset(seed=1)
    with pytest.raises(ValueError, match="sub-env 1; no sub-env was changed"):
        vector.step(np.array([4, 100]))
    assert vector.core.state.n_clicks.tolist() == [0, 0]


@pytest.mark.slow
def test_training_runs_on_256_batched_envs(tmp_path):
    pytest.importorskip("sb3_contrib")
    from agents.alignsam.config import TrainConfig
    from agents.alignsam.training import make_train_env, train
    from sam_gym.envs.sb3 import SB3VecEnv

    config = TrainConfig(out=str(tmp_path / "run"), timesteps=256, n_steps=1, batch_size=64, n_epochs=1, n_envs=256,
                         n_train=4, srm="none", dataset="synthetic-shapes", device="cpu", max_clicks=2)
    vec_env, _, _ = make_train_env(config)
    assert isinstance(vec_env.venv, SB3VecEnv) and vec_env.num_envs == 256
    vec_env.close()
    run = train(config)
    assert (run / "config.json").is_file()
