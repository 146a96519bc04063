import gymnasium as gym
import numpy as np
import pytest

import sam_gym  # noqa: F401  (registers the envs)
from sam_gym.data import SyntheticShapes, make_dataset
from sam_gym.envs import SamPromptEnv

SMALL = dict(dataset="synthetic-shapes", dataset_kwargs=dict(n=6))


def make(**kwargs):
    return SamPromptEnv(**(SMALL | kwargs))


def test_gym_make_defaults_offline():
    env = gym.make("SamPrompt-v0")
    assert env.unwrapped.backend.name == "classical"
    assert "not SAM" in env.unwrapped.backend.description
    assert env.action_space == gym.spaces.Discrete(100)
    obs, info = env.reset(seed=0)
    assert env.observation_space.contains(obs)
    assert info["backend"] == "classical" and info["image_size"] == (128, 160)
    env2 = gym.make("envs_registry:SamPrompt-v0")
    assert type(env2.unwrapped) is SamPromptEnv


def test_render_rgb_array():
    env = make(render_mode="rgb_array")
    env.reset(seed=1)
    env.step(0)
    frame = env.render()
    assert frame.dtype == np.uint8 and frame.shape == (128, 160, 3)
    assert not np.array_equal(frame, env.episode_view().sample.image)  # mask and clicks drawn


def _check_mapping_and_reward(env, n_actions):
    for a in range(n_actions):
        _, info0 = env.reset(options={"index": 0})
        sample = env.episode_view().sample
        h, w = sample.target.shape
        row, col = a // env.cols, a % env.cols
        x, y = (col + 0.5) * w / env.cols, (row + 0.5) * h / env.rows
        _, reward, _, _, info = env.step(a)
        assert info["point"] == pytest.approx((x, y))
        gt_row, gt_col = int(np.floor(y)), int(np.floor(x))
        expected = 0.0 if sample.void[gt_row, gt_col] else (1.0 if sample.target[gt_row, gt_col] else -1.0)
        assert reward == expected, f"action {a}: point {(x, y)}"
        assert info["on_target"] == bool(sample.target[gt_row, gt_col])


def test_action_to_pixel_and_reward_on_synthetic():
    env = make(init_prompts="none", grid=(7, 9))
    _check_mapping_and_reward(env, 63)


@pytest.mark.shared_data
def test_action_to_pixel_and_reward_on_grabcut(grabcut):
    ds = make_dataset(grabcut)
    # pick an image with a void band so that 0 rewards are exercised if a centre falls on it
    env = SamPromptEnv(dataset=ds, init_prompts="none", grid=(10, 10))
    _check_mapping_and_reward(env, 100)


def test_oracle_label_and_positive_label():
    env = make(init_prompts="none", label_mode="oracle")
    env.reset(seed=0, options={"index": 1})
    target = env.episode_view().sample.target
    for a in (0, 55):
        _, _, _, _, info = env.step(a)
        row, col = env.episode_view().grid.pixel(*info["point"])
        assert info["label"] == int(target[row, col])
    env = make(init_prompts="none", label_mode="positive")
    env.reset(seed=0)
    assert env.step(0)[4]["label"] == 1


def test_repeat_click_penalised_masked_and_not_decoded():
    env = make(init_prompts="none")
    env.reset(seed=0)
    env.step(42)
    assert not env.action_masks()[42] and env.action_masks().sum() == 99
    n_points = len(env.episode_view().points)
    _, reward, _, _, info = env.step(42)
    assert reward == -1.0 and info["repeat"] and len(env.episode_view().points) == n_points
    assert info["n_clicks"] == 2


def test_truncation_owns_the_budget_and_success_flag():
    env = make(max_clicks=3)
    env.reset(seed=0)
    for i in range(3):
        _, _, terminated, truncated, info = env.step(i)
    assert truncated and not terminated and "is_success" in info
    with pytest.raises(RuntimeError, match="call reset"):
        env.step(5)


def test_target_iou_terminates():
    env = make(target_iou=0.05, init_prompts="none", label_mode="oracle")
    env.reset(seed=0, options={"index": 0})
    target = env.episode_view().sample.target
    grid = env.episode_view().grid
    on = next(a for a in range(100) if target[grid.pixel(*grid.cell_to_point(a))])
    _, _, terminated, truncated, info = env.step(on)
    assert terminated and not truncated and info["is_success"] and info["iou"] >= 0.05


def test_iou_gain_reward_sums_to_final_iou():
    env = make(reward="iou_gain", init_prompts="none", max_clicks=5)
    env.reset(seed=3)
    total = sum(env.step(a)[1] for a in (10, 44, 45, 46, 90))
    assert total == pytest.approx(env.episode_view().iou)


def test_gt_pair_init_prompts_are_on_ground_truth():
    env = make()
    for seed in range(5):
        env.reset(seed=seed)
        view = env.episode_view()
        assert view.n_init == 2 and list(view.labels) == [1, 0]
        (fx, fy), (bx, by) = view.points
        assert view.sample.target[int(fy), int(fx)] and not view.sample.target[int(by), int(bx)]
        assert view.iou > 0


def test_callable_hooks():
    calls = []

    def init(view):
        return [(5.0, 5.0, 0)]

    def label(view, point):
        calls.append(point)
        return 1

    env = make(init_prompts=init, label_mode=label)
    obs, _ = env.reset(seed=0)
    assert obs["clicks"][:3].tolist() == pytest.approx([5 / 160, 5 / 128, 0.0])
    env.step(3)
    assert len(calls) == 1 and env.episode_view().labels.tolist() == [0, 1]
    bad = make(init_prompts=lambda view: [(1e6, 0, 1)])
    with pytest.raises(ValueError, match="init_prompts callable"):
        bad.reset(seed=0)
    bad = make(label_mode=lambda view, p: 7)
    bad.reset(seed=0)
    with pytest.raises(ValueError, match="return 0 or 1"):
        bad.step(0)


def test_point_and_patch_label_modes():
    env = make(action_mode="point", init_prompts="none")
    env.reset(seed=0)
    _, _, _, _, info = env.step(np.array([0.5, 0.25, 0.9], np.float32))
    assert info["point"] == (80.0, 32.0) and info["label"] == 1
    _, reward, _, _, info = env.step(np.array([0.5, 0.25, 0.9], np.float32))
    assert info["repeat"] and reward == -1.0
    with pytest.raises(ValueError, match="continuous"):
        env.action_masks()
    env = make(action_mode="patch_label", init_prompts="none")
    env.reset(seed=0)
    _, _, _, _, info = env.step(np.array([12, 0]))
    assert info["label"] == 0 and env.action_masks().shape == (102,)


def test_seed_determinism_rollout():
    def rollout(seed):
        env = make()
        obs, info = env.reset(seed=seed)
        out = [(info["image_id"], obs["state"].copy())]
        for a in (3, 50, 77, 3):
            obs, r, *_ , info = env.step(a)
            out.append((r, info["iou"], obs["state"].copy(), obs["mask"].copy()))
        return out

    a, b = rollout(7), rollout(7)
    for i, (x, y) in enumerate(zip(a, b, strict=True)):
        for u, v in zip(x, y, strict=True):
            assert np.array_equal(u, v), f"[{i}] {u} != {v}"
    assert rollout(8)[0][0] != a[0][0] or not np.array_equal(rollout(8)[0][1], a[0][1])


def test_second_reset_on_same_image_does_not_encode():
    env = make()
    env.reset(seed=0, options={"index": 2})
    calls = env.cache.stats.encoder_calls
    env.reset(options={"index": 2})
    assert env.cache.stats.encoder_calls == calls and env.cache.stats.memory_hits >= 1


def test_observation_shapes_and_state_pooling():
    env = make()
    obs, _ = env.reset(seed=0)
    c = env.backend.embedding_shape[0]
    assert env.state_shape == (c, 10, 10) and obs["state"].shape == (c * 100,)
    assert obs["mask"].shape == (1, 64, 64) and obs["clicks"].shape == (22 * 3,)  # max_prompts 22
    full = make(state_pool="full")
    assert full.state_shape == env.backend.embedding_shape
    # state is the embedding times the previous mask: with no prompt it is the plain pooled embedding
    none = make(init_prompts="none")
    obs0, _ = none.reset(seed=0)
    plain, _ = none.backend.observe(none.episode_view().embedding, None, (10, 10), (64, 64))
    assert np.allclose(obs0["state"], plain.reshape(-1))


@pytest.mark.parametrize(
    ("kwargs", "match"),
    [
        (dict(grid=(0, 3)), "grid"),
        (dict(max_clicks=0), "max_clicks"),
        (dict(reward="dice"), "reward"),
        (dict(label_mode="guess"), "label_mode"),
        (dict(init_prompts="centre"), "init_prompts"),
        (dict(target_iou=1.5), "target_iou"),
        (dict(render_mode="human"), "render_mode"),
        (dict(action_mode="box"), "action_mode"),
        (dict(state_pool="max"), "state_pool"),
        (dict(backend="sam_vit_x"), "backend"),
        (dict(dataset="/no/such/folder"), "no such directory"),
        # booleans are not integers or numbers here (they used to pass as 1 / 0)
        (dict(grid=(True, True)), "grid"),
        (dict(max_clicks=True), "max_clicks"),
        (dict(target_iou=True), "target_iou"),
        (dict(state_pool=True), "state_pool"),
        (dict(mask_obs_size=True), "mask_obs_size"),
        (dict(multimask=1), "multimask"),
        (dict(backend_kwargs=["device"]), "backend_kwargs"),
        (dict(cache="cache"), "cache"),
    ],
)
def test_bad_arguments_fail_at_construction(kwargs, match):
    with pytest.raises(ValueError, match=match):
        make(**kwargs)


def test_bad_actions_and_options():
    env = make()
    with pytest.raises(RuntimeError, match="reset"):
        env.step(0)
    env.reset(seed=0)
    with pytest.raises(ValueError, match="Expected an action in Discrete"):
        env.step(100)
    with pytest.raises(ValueError, match="options"):
        env.reset(options={"image": 1})
    with pytest.raises(ValueError, match=r"index.*\[0, 6\)"):
        env.reset(options={"index": 6})


def test_step_after_termination_raises_like_after_truncation():
    env = make(target_iou=0.05, init_prompts="none")
    env.reset(seed=0, options={"index": 0})
    view = env.episode_view()
    on = next(a for a in range(100) if view.sample.target[view.grid.pixel(*view.grid.cell_to_point(a))])
    terminated = env.step(on)[2]
    assert terminated
    with pytest.raises(RuntimeError, match=r"terminated .*call reset\(\)"):
        env.step((on + 1) % 100)
    assert env.episode_view().n_clicks == 1
    env.reset(seed=1)
    env.step(0)  # a reset starts a new episode


@pytest.mark.parametrize(
    ("action_mode", "action"),
    [
        ("patch", True),
        ("patch", np.True_),
        ("patch", 5.0),
        ("patch", np.array(5.0)),
        ("patch", 2**70),
        ("patch_label", [5.7, 0.9]),  # used to be cast to patch 5, label 0
        ("patch_label", np.array([5.0, 1.0])),
        ("patch_label", [5, True]),
        ("patch_label", [[5], [1, 2]]),
        ("patch_label", [5, "1"]),
        ("point", [True, False, True]),
        ("point", np.ones(3, dtype=bool)),
        ("point", ["0.5", "0.5", "1"]),
        ("point", [0.5, [0.5], 1.0]),
    ],
)
def test_actions_are_refused_not_cast(action_mode, action):
    env = make(action_mode=action_mode, init_prompts="none")
    env.reset(seed=0)
    with pytest.raises(ValueError, match="Expected an action in"):
        env.step(action)
    assert env.episode_view().n_clicks == 0 and len(env.episode_view().points) == 0


def test_integer_and_number_actions_are_accepted():
    env = make(action_mode="patch_label", init_prompts="none")
    env.reset(seed=0)
    assert env.step([5, 1])[4]["label"] == 1 and env.step(np.array([6, 0], dtype=np.uint8))[4]["label"] == 0
    env = make(action_mode="point", init_prompts="none")
    env.reset(seed=0)
    assert env.step([1, 0, 1])[4]["label"] == 1  # integers are numbers in [0, 1] too
    env = make()
    env.reset(seed=0)
    assert env.step(np.int64(3))[4]["n_clicks"] == 1 and env.step(np.array(4))[4]["n_clicks"] == 2


def test_refused_reset_changes_nothing():
    env = make()
    env.reset(seed=0)
    env.step(3)
    rng_state = env.np_random.bit_generator.state
    for kwargs in (dict(seed=5, options={"index": 99}), dict(seed=-1), dict(seed=True), dict(seed=1.5),
                   dict(options=5), dict(options={"index": True}), dict(options={"index": 1.0})):
        with pytest.raises(ValueError, match="Expected (seed|options)"):
            env.reset(**kwargs)
    assert env.np_random.bit_generator.state == rng_state  # not reseeded by the refused seed=5
    assert env.episode_view().n_clicks == 1


def test_dataset_object_and_backend_instance_are_shared():
    ds = SyntheticShapes(n=3)
    env1 = SamPromptEnv(dataset=ds)
    env2 = SamPromptEnv(dataset=ds, cache=env1.cache)
    assert env2.backend is env1.backend and env2.cache is env1.cache


@pytest.mark.slow
def test_sb3_ppo_and_maskable_ppo_smoke(tmp_path):
    from sb3_contrib import MaskablePPO
    from stable_baselines3 import PPO

    env = make(max_clicks=5)
    model = PPO("MultiInputPolicy", env, n_steps=64, batch_size=32, n_epochs=1, seed=0, device="cpu")
    model.learn(192)
    masked = MaskablePPO("MultiInputPolicy", env, n_steps=64, batch_size=32, n_epochs=1, seed=0, device="cpu")
    masked.learn(128)
    obs, _ = env.reset(seed=0)
    action, _ = masked.predict(obs, action_masks=env.action_masks(), deterministic=True)
    assert env.action_masks()[int(action)]


def test_clicks_size_does_not_depend_on_the_click_budget():
    short = SamPromptEnv(dataset="synthetic-shapes", dataset_kwargs=dict(n=4), max_clicks=5)
    standard = SamPromptEnv(dataset="synthetic-shapes", dataset_kwargs=dict(n=4), max_clicks=20)
    assert short.observation_space == standard.observation_space
    assert short.observation_space["clicks"].shape == (22 * 3,) and short.max_prompts == 22
    obs, _ = short.reset(seed=0)
    assert (obs["clicks"].reshape(22, 3)[2:] == [0.0, 0.0, -1.0]).all()  # two initial prompts, then padding
    long = SamPromptEnv(dataset="synthetic-shapes", dataset_kwargs=dict(n=4), max_clicks=30)
    assert long.max_prompts == 32
    old = SamPromptEnv(dataset="synthetic-shapes", dataset_kwargs=dict(n=4), max_clicks=5, max_prompts=7)
    assert old.observation_space["clicks"].shape == (21,)
    with pytest.raises(ValueError, match="Expected max_prompts"):
        SamPromptEnv(dataset="synthetic-shapes", dataset_kwargs=dict(n=4), max_clicks=25, max_prompts=22)


def test_a_plain_sb3_model_trained_at_5_clicks_evaluates_at_20(tmp_path):
    pytest.importorskip("sb3_contrib")
    from sb3_contrib import MaskablePPO
    from sb3_contrib.common.maskable.evaluation import evaluate_policy

    kwargs = dict(dataset="synthetic-shapes", dataset_kwargs=dict(n=4))
    model = MaskablePPO("MultiInputPolicy", SamPromptEnv(**kwargs, max_clicks=5), n_steps=16, batch_size=16,
                        n_epochs=1, seed=0, device="cpu")
    model.learn(16)
    model.save(tmp_path / "model.zip")
    loaded = MaskablePPO.load(tmp_path / "model.zip", device="cpu")
    env = SamPromptEnv(**kwargs, max_clicks=20)
    rewards, lengths = evaluate_policy(loaded, env, n_eval_episodes=1, return_episode_rewards=True, warn=False)
    assert lengths == [20] and len(rewards) == 1


# ----------------------------------------------------------------------------- action masks in obs / info


@pytest.mark.parametrize("action_mode, n", [("patch", 100), ("patch_label", 102)])
@pytest.mark.parametrize("where", ["obs", "info", "both"])
def test_action_mask_option_carries_action_masks_and_passes_both_checkers(where, action_mode, n):
    import warnings

    from gymnasium.utils.env_checker import check_env

    env = make(action_mask=where, action_mode=action_mode, max_clicks=3)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        check_env(env, skip_render_check=True)
    sb3_checker = pytest.importorskip("stable_baselines3.common.env_checker")
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        sb3_checker.check_env(make(action_mask=where, action_mode=action_mode, max_clicks=3))
    assert ("action_mask" in env.observation_space.spaces) == (where != "info")
    obs, info = env.reset(seed=0)
    action = 7 if action_mode == "patch" else np.array([7, 1])
    for _ in range(2):
        for out in ([obs] if where == "obs" else [info] if where == "info" else [obs, info]):
            assert out["action_mask"].dtype == np.int8 and out["action_mask"].shape == (n,)
            np.testing.assert_array_equal(out["action_mask"], env.action_masks().astype(np.int8))
        assert ("action_mask" in obs) == (where != "info") and ("action_mask" in info) == (where != "obs")
        obs, _, _, _, info = env.step(action)
    assert env.action_masks()[7] == 0  # the checks above saw the clicked patch go to 0


def test_action_mask_option_is_refused_in_point_mode_and_checked():
    with pytest.raises(ValueError, match="Expected a discrete action_mode with action_mask='obs', got 'point'"):
        make(action_mask="obs", action_mode="point")
    with pytest.raises(ValueError, match="Expected action_mask to be None, 'obs', 'info' or 'both', got True"):
        make(action_mask=True)


def test_action_mask_option_leaves_the_default_observation_alone():
    env = make()
    obs, info = env.reset(seed=0)
    assert "action_mask" not in obs and "action_mask" not in info
    assert sorted(env.observation_space.spaces) == ["clicked", "clicks", "mask", "state"]


@pytest.mark.parametrize("env_id", ["SamPrompt-v0", "SamPromptLabel-v0"])
def test_action_mask_wrapper_equals_the_option_and_passes_both_checkers(env_id):
    import warnings

    from gymnasium.utils.env_checker import check_env

    from sam_gym.wrappers import ActionMaskObservation

    wrapped = ActionMaskObservation(gym.make(env_id, **SMALL, max_clicks=3))
    option = gym.make(env_id, **SMALL, max_clicks=3, action_mask="both")
    assert wrapped.observation_space == option.observation_space
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        warnings.filterwarnings("ignore", message=".*is different from the unwrapped version")  # it is a wrapper
        check_env(wrapped, skip_render_check=True)
    sb3_checker = pytest.importorskip("stable_baselines3.common.env_checker")
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        sb3_checker.check_env(ActionMaskObservation(SamPromptEnv(**SMALL, max_clicks=3)))
    wrapped.action_space.seed(4)
    outs = [wrapped.reset(seed=3), option.reset(seed=3)]
    for _ in range(6):
        for (obs_w, info_w), (obs_o, info_o) in [outs]:
            for key in obs_o:
                np.testing.assert_array_equal(obs_w[key], obs_o[key])
                assert obs_w[key].dtype == obs_o[key].dtype
            np.testing.assert_array_equal(info_w["action_mask"], info_o["action_mask"])
        action = wrapped.action_space.sample()
        w, o = wrapped.step(action), option.step(action)
        if w[2] or w[3]:
            outs = [wrapped.reset(), option.reset()]
        else:
            outs = [(w[0], w[4]), (o[0], o[4])]


def test_action_mask_wrapper_keys_and_refusals():
    from sam_gym.wrappers import ActionMaskObservation

    only_info = ActionMaskObservation(make(), obs_key=None)
    obs, info = only_info.reset(seed=0)
    assert "action_mask" not in obs and info["action_mask"].shape == (100,)
    named = ActionMaskObservation(make(), obs_key="legal", info_key=None)
    obs, info = named.reset(seed=0)
    assert obs["legal"].shape == (100,) and "action_mask" not in info
    with pytest.raises(ValueError, match="Expected obs_key to be a new observation key, got 'mask'"):
        ActionMaskObservation(make(), obs_key="mask")  # the segmenter's mask already has that name
    with pytest.raises(ValueError, match="got None for both"):
        ActionMaskObservation(make(), obs_key=None, info_key=None)
    with pytest.raises(ValueError, match="Expected a Discrete or MultiDiscrete action space to mask"):
        ActionMaskObservation(make(action_mode="point"))
    with pytest.raises(TypeError, match="Expected an env with an action_masks"):
        ActionMaskObservation(gym.wrappers.TransformObservation(gym.make("CartPole-v1"), lambda o: {"x": o},
                                                                gym.spaces.Dict({"x": gym.make("CartPole-v1")
                                                                                 .observation_space})))
    with pytest.raises(TypeError, match="Expected an env with a Dict observation space"):
        ActionMaskObservation(gym.make("CartPole-v1"))
