"""Property-based tests of the env API (Hypothesis): arguments, actions of every mode, resets.

Properties, for :class:`SamPromptEnv` and :class:`SamPromptVectorEnv`:

* an invalid input always raises ``ValueError`` / ``TypeError`` (or ``RuntimeError`` when the env
  needs a reset) with an "Expected ..." / "reset()" message, and a valid one never raises;
* a refused call changes nothing: a *subject* env and a *twin* built alike get the same calls,
  except that only the subject gets the refused ones; after each refusal their episode state is
  equal, and every later output (and one final step) is equal too.

Validity is decided here, independently of the env: each drawn value is tagged valid or invalid.
Small and fast on purpose (classical backend, 3 synthetic images shared through one embedding
cache, derandomized so that CI runs the same examples every time).
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass
from functools import partial
from typing import Any

import numpy as np
import pytest
from hypothesis import HealthCheck, event, given, settings
from hypothesis import strategies as st

from sam_gym.backends import make_backend
from sam_gym.cache import EmbeddingCache
from sam_gym.data import SyntheticShapes
from sam_gym.envs import SamPromptEnv
from sam_gym.envs.vector_env import SamPromptVectorEnv

N_SAMPLES = 3
DATASET = SyntheticShapes(n=N_SAMPLES)
CACHE = EmbeddingCache(make_backend("classical"))
SHARED = dict(dataset=DATASET, cache=CACHE)

PROPERTIES = settings(max_examples=40, deadline=None, derandomize=True, database=None,
                      suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large])
ERRORS = (ValueError, TypeError)

# ---------------------------------------------------------------------- constructor arguments
VALID_ARGS: dict[str, st.SearchStrategy[Any]] = {
    "grid": st.tuples(st.integers(1, 12), st.integers(1, 12)).flatmap(lambda g: st.sampled_from([g, list(g)])),
    "max_clicks": st.integers(1, 20) | st.integers(1, 20).map(np.int64),
    "reward": st.sampled_from(["alignsam", "iou_gain"]),
    "label_mode": st.sampled_from(["oracle", "positive"]),
    "init_prompts": st.sampled_from(["gt_pair", "none"]),
    "target_iou": st.none() | st.floats(0.01, 1.0) | st.just(1),
    "render_mode": st.sampled_from([None, "rgb_array"]),
    "action_mode": st.sampled_from(["patch", "patch_label", "point"]),
    "state_pool": st.sampled_from(["grid", "full"]) | st.integers(1, 8),
    "mask_obs_size": st.integers(8, 64),
    "multimask": st.sampled_from(["auto", True, False, np.True_]),
    "info_iou": st.sampled_from(["full", "none"]),
    "backend_kwargs": st.sampled_from([None, {}]),
    "dataset_kwargs": st.sampled_from([None, {}]),
    "max_prompts": st.none() | st.integers(22, 40),
}
INVALID_ARGS: dict[str, list[Any]] = {
    "grid": [(0, 3), (3, -1), (True, True), (2.5, 3), "10x10", (3,), (1, 2, 3), None, 5, (np.int64(0), 2)],
    "max_clicks": [0, -1, True, 1.5, "15", None, np.float64(3.0)],
    "reward": ["dice", None, 1, True, ["alignsam"], np.array(["alignsam"])],
    "label_mode": ["guess", 3, None, ["oracle"]],
    "init_prompts": ["centre", 0, None],
    "target_iou": [0.0, -0.1, 1.5, math.nan, math.inf, True, "0.5", [0.5]],
    "render_mode": ["human", 1, True, ["rgb_array"]],
    "action_mode": ["box", None, 0, ["patch"]],
    "state_pool": [0, -2, True, "max", 2.5, None],
    "mask_obs_size": [4, 7, 257, True, 64.0, None],
    "multimask": [1, 0, "yes", None, 1.0, "auto "],
    "info_iou": ["partial", False, None],
    "backend_kwargs": [["device"], "cpu", 3, {1: 2}],
    "dataset_kwargs": [["n"], "n=3", 3],
    "max_prompts": [0, 16, -1, True, 22.0, "22"],
}


@st.composite
def constructor_kwargs(draw: st.DrawFn) -> tuple[dict[str, Any], str | None]:
    """Some valid arguments and at most one invalid one; returns ``(kwargs, name that is wrong)``."""
    names = draw(st.lists(st.sampled_from(sorted(VALID_ARGS)), unique=True, max_size=6))
    kwargs = {name: draw(VALID_ARGS[name]) for name in names}
    wrong = draw(st.none() | st.sampled_from(sorted(INVALID_ARGS)))
    if wrong is not None:
        kwargs[wrong] = draw(st.sampled_from(INVALID_ARGS[wrong]))
    elif kwargs.get("info_iou") == "none" and (kwargs.get("reward") == "iou_gain"
                                                  or kwargs.get("target_iou") is not None):
        wrong = "info_iou"  # a valid value each, but not together
    return kwargs, wrong


@pytest.mark.parametrize(("name", "value"), [(name, value) for name, values in INVALID_ARGS.items()
                                            for value in values])
def test_every_listed_invalid_argument_is_refused(name, value):
    with pytest.raises(ERRORS, match=f"^Expected {name}"):
        SamPromptEnv(**SHARED, **{name: value})


@PROPERTIES
@given(constructor_kwargs(), st.integers(0, 2**32 - 1))
def test_constructor_refuses_invalid_and_accepts_valid_arguments(case, seed):
    kwargs, wrong = case
    event("refused" if wrong else "accepted")
    if wrong is not None:
        with pytest.raises(ERRORS) as info:
            SamPromptEnv(**SHARED, **kwargs)
        assert str(info.value).startswith("Expected") and wrong in str(info.value)
        return
    env = SamPromptEnv(**SHARED, **kwargs)
    env.action_space.seed(seed)
    obs, _ = env.reset(seed=seed)
    assert env.observation_space.contains(obs)
    obs, reward, terminated, truncated, _ = env.step(env.action_space.sample())
    assert env.observation_space.contains(obs) and np.isfinite(reward)


# ---------------------------------------------------------------------- actions, seeds, options
@dataclass(frozen=True)
class Config:
    """A small env configuration for the call-sequence properties."""

    action_mode: str
    rows: int
    cols: int
    max_clicks: int
    init_prompts: str
    target_iou: float | None

    @property
    def n_cells(self) -> int:
        return self.rows * self.cols

    def kwargs(self) -> dict[str, Any]:
        return dict(action_mode=self.action_mode, grid=(self.rows, self.cols), max_clicks=self.max_clicks,
                    init_prompts=self.init_prompts, target_iou=self.target_iou, **SHARED)


configs = st.builds(
    Config,
    action_mode=st.sampled_from(["patch", "patch_label", "point"]),
    rows=st.integers(1, 4),
    cols=st.integers(1, 4),
    max_clicks=st.integers(1, 4),
    init_prompts=st.sampled_from(["gt_pair", "none"]),
    target_iou=st.none() | st.sampled_from([0.05, 0.3]),  # a low target: termination happens
)


def valid_actions(config: Config) -> st.SearchStrategy[Any]:
    n = config.n_cells
    cells = st.integers(0, n - 1)
    if config.action_mode == "patch":
        return cells | cells.map(np.int64) | cells.map(np.array)
    if config.action_mode == "patch_label":
        pairs = st.tuples(cells, st.integers(0, 1))
        return pairs.map(list) | pairs | pairs.map(lambda p: np.array(p, dtype=np.int64)) | pairs.map(
            lambda p: np.array(p, dtype=np.uint8))
    unit = st.floats(0.0, 1.0)
    triples = st.tuples(unit, unit, unit)
    return triples.map(list) | triples.map(lambda t: np.array(t, dtype=np.float32)) | triples.map(np.array)


def invalid_actions(config: Config) -> st.SearchStrategy[Any]:
    n = config.n_cells
    cells = st.integers(0, n - 1)
    out_of_range = st.integers(n, 2**70) | st.integers(-(2**70), -1)
    odd = st.sampled_from([None, "3", True, False, np.True_, {"a": 1}, object(), [[1, 2], [3]]])
    if config.action_mode == "patch":
        return (out_of_range | odd | cells.map(float) | cells.map(np.float32) | cells.map(lambda c: [c])
                | cells.map(lambda c: np.array([c])))
    if config.action_mode == "patch_label":
        return (odd | cells.map(lambda c: [c + 0.5, 1]) | cells.map(lambda c: [float(c), 0.0])
                | cells.map(lambda c: [c, 2]) | cells.map(lambda c: [c, -1]) | out_of_range.map(lambda c: [c, 0])
                | cells.map(lambda c: [c]) | cells.map(lambda c: [c, 1, 0]) | cells.map(lambda c: [c, True])
                | cells.map(lambda c: [[c, 1]]) | cells.map(lambda c: np.array([c, 1], dtype=bool))
                | cells.map(lambda c: [str(c), "1"]))
    unit = st.floats(0.0, 1.0)
    outside = st.floats(min_value=1.001) | st.floats(max_value=-0.001) | st.just(math.nan)
    return (odd | st.tuples(outside, unit, unit).map(list) | st.tuples(unit, unit, outside).map(np.array)
            | st.tuples(unit, unit).map(list) | st.tuples(unit, unit, unit, unit).map(list)
            | st.tuples(unit, unit, unit).map(lambda t: [t]) | st.just([True, False, True])
            | st.just(np.ones(3, dtype=bool)) | st.just(["0.5", "0.5", "1"]) | st.just([0.5, [0.5], 1.0]))


def actions(config: Config) -> st.SearchStrategy[tuple[Any, bool]]:
    """``(action, valid)``."""
    return valid_actions(config).map(lambda a: (a, True)) | invalid_actions(config).map(lambda a: (a, False))


VALID_SEEDS = st.none() | st.integers(0, 2**32 - 1)
INVALID_SEEDS = st.sampled_from([-1, True, 1.5, "3", [1], np.float64(2.0)])
VALID_OPTIONS = st.sampled_from([None, {}]) | st.integers(0, N_SAMPLES - 1).map(
    lambda i: {"index": i}) | st.integers(0, N_SAMPLES - 1).map(lambda i: {"index": np.int64(i)})
INVALID_OPTIONS = st.sampled_from([{"index": N_SAMPLES}, {"index": -1}, {"index": True}, {"index": 1.0},
                                   {"idx": 0}, {"index": 0, "seed": 1}, "index", 5, [("index", 0)]])


@st.composite
def resets(draw: st.DrawFn, seeds: st.SearchStrategy[Any] = VALID_SEEDS,
           bad_seeds: st.SearchStrategy[Any] = INVALID_SEEDS) -> tuple[str, dict[str, Any], bool]:
    """``("reset", kwargs, valid)``."""
    bad_seed, bad_options = draw(st.sampled_from([(False, False), (True, False), (False, True), (True, True)]))
    seed = draw(bad_seeds if bad_seed else seeds)
    options = draw(INVALID_OPTIONS if bad_options else VALID_OPTIONS)
    return "reset", dict(seed=seed, options=options), not (bad_seed or bad_options)


def assert_same(got: Any, want: Any, where: str = "") -> None:
    """Recursive equality of env outputs (arrays, dicts, tuples, floats with NaN)."""
    if isinstance(want, dict):
        assert sorted(got, key=repr) == sorted(want, key=repr), where
        for key in want:
            assert_same(got[key], want[key], f"{where}.{key}")
    elif isinstance(want, np.ndarray) and want.dtype == object:
        for g, w in zip(got, want, strict=True):
            assert_same(g, w, where)
    elif isinstance(want, np.ndarray):
        np.testing.assert_array_equal(got, want, err_msg=where)
    elif isinstance(want, (tuple, list)):
        assert len(got) == len(want), where
        for g, w in zip(got, want, strict=True):
            assert_same(g, w, where)
    else:
        assert got == want or (got != got and want != want), f"{where}: {got!r} != {want!r}"


def snapshot(env: SamPromptEnv) -> dict[str, Any]:
    """The episode state visible through the API (before the first reset: only that there is none)."""
    try:
        view = env.episode_view()
    except RuntimeError:
        return {"episode": None}
    return {
        "rng": env.np_random.bit_generator.state,
        "image_id": view.sample.image_id,
        "points": view.points,
        "labels": view.labels,
        "n_init": view.n_init,
        "n_clicks": view.n_clicks,
        "mask": view.mask,
        "iou": view.iou,
        "clicked": env.action_masks() if env.action_mode != "point" else None,
    }


def apply(env: Any, kind: str, arg: Any) -> Any:
    """``env.reset(**arg)`` or ``env.step(arg)``."""
    return env.reset(**arg) if kind == "reset" else env.step(arg)


def assert_refused(call: Callable[[], Any], expected: tuple[type[Exception], ...]) -> None:
    with pytest.raises((*ERRORS, RuntimeError)) as info:
        call()
    message = str(info.value)
    assert isinstance(info.value, expected), f"{type(info.value).__name__}: {message}"
    if isinstance(info.value, RuntimeError):
        assert "reset()" in message
    else:
        assert message.startswith("Expected"), message


@st.composite
def single_scenarios(draw: st.DrawFn) -> tuple[Config, Any, list[tuple[str, Any, bool]]]:
    config = draw(configs)
    before_reset = draw(st.none() | actions(config))  # a step before the first reset is refused
    ops = draw(st.lists(resets() | actions(config).map(lambda a: ("step", a[0], a[1])), min_size=1, max_size=8))
    return config, before_reset, ops


@PROPERTIES
@given(single_scenarios(), st.integers(0, 2**32 - 1))
def test_single_env_refused_calls_change_nothing(scenario, seed):
    config, before_reset, ops = scenario
    subject, twin = SamPromptEnv(**config.kwargs()), SamPromptEnv(**config.kwargs())
    if before_reset is not None:
        assert_refused(lambda: subject.step(before_reset[0]), (RuntimeError,))
        assert_same(snapshot(subject), snapshot(twin))
    assert_same(subject.reset(seed=seed), twin.reset(seed=seed))
    ended = False
    for kind, arg, valid in ops:
        expected = (RuntimeError,) if kind == "step" and ended else ERRORS
        event(f"{kind}: {'accepted' if valid and expected is ERRORS else 'refused'}")
        if valid and expected is ERRORS:
            out = apply(subject, kind, arg)
            assert_same(out, apply(twin, kind, arg), kind)
            ended = kind == "step" and bool(out[2] or out[3])
        else:
            assert_refused(partial(apply, subject, kind, arg), expected)
            assert_same(snapshot(subject), snapshot(twin), "after a refused call")
    # the next call's outputs agree too
    final = (lambda env: env.reset()) if ended else (lambda env: env.step(env.action_space.sample()))
    subject.action_space.seed(seed)
    twin.action_space.seed(seed)
    assert_same(final(subject), final(twin), "final")
    assert_same(snapshot(subject), snapshot(twin), "final")


# ---------------------------------------------------------------------- vector env
N_ENVS = 2
VECTOR_SEEDS = VALID_SEEDS | st.lists(VALID_SEEDS, min_size=N_ENVS, max_size=N_ENVS)
BAD_VECTOR_SEEDS = st.sampled_from([-1, True, 1.5, "3", np.float64(2.0), [0], [0, 1, 2], [0, -1], [True, 0], "ab"])
BAD_BATCHES = st.sampled_from([None, 5, "ab", []]) | st.integers(0, 3).map(lambda n: [0] * (n if n != N_ENVS else 3))


@st.composite
def batches(draw: st.DrawFn, config: Config) -> tuple[str, Any, tuple[bool, ...] | None]:
    """``("step", batch, per-sub-env validity)``; validity ``None`` for a batch of the wrong shape."""
    kind = draw(st.sampled_from(["list", "array", "bad"]))
    if kind == "bad":
        return "step", draw(BAD_BATCHES), None
    if kind == "array":
        items = draw(st.lists(valid_actions(config), min_size=N_ENVS, max_size=N_ENVS))
        return "step", np.array([np.asarray(a, dtype=np.float32 if config.action_mode == "point" else np.int64)
                                 for a in items]), (True,) * N_ENVS
    items = draw(st.lists(actions(config), min_size=N_ENVS, max_size=N_ENVS))
    return "step", [a for a, _ in items], tuple(v for _, v in items)


@st.composite
def vector_scenarios(draw: st.DrawFn) -> tuple[Config, str, list[tuple[str, Any, Any]]]:
    config = draw(configs)
    mode = draw(st.sampled_from(["next_step", "same_step"]))
    # steps three times as often as resets, so that sub-envs end (and autoreset) at different steps
    op = st.sampled_from(["reset", "step", "step", "step"]).flatmap(
        lambda kind: resets(VECTOR_SEEDS, BAD_VECTOR_SEEDS) if kind == "reset" else batches(config))
    ops = draw(st.lists(op, min_size=1, max_size=8))
    return config, mode, ops


@settings(PROPERTIES, max_examples=25)
@given(vector_scenarios(), st.integers(0, 2**31))
def test_vector_env_refused_calls_change_no_sub_env(scenario, seed):
    config, mode, ops = scenario
    subject = SamPromptVectorEnv(N_ENVS, autoreset_mode=mode, **config.kwargs())
    twin = SamPromptVectorEnv(N_ENVS, autoreset_mode=mode, **config.kwargs())
    assert_refused(lambda: subject.step([0] * N_ENVS), (RuntimeError,))  # before reset
    assert_same(subject.reset(seed=seed), twin.reset(seed=seed))
    autoreset = np.zeros(N_ENVS, dtype=bool)  # next_step mode: sub-envs that ignore their next action
    for kind, arg, validity in ops:
        if kind == "reset":
            valid = validity
        else:  # a sub-env that autoresets ignores its action
            valid = validity is not None and all(v or skip for v, skip in zip(validity, autoreset, strict=True))
        event(f"{kind}: {'accepted' if valid else 'refused'}")
        if valid:
            out = apply(subject, kind, arg)
            assert_same(out, apply(twin, kind, arg), kind)
            if kind == "reset":
                autoreset[:] = False
            elif mode == "next_step":
                autoreset = out[2] | out[3]
        else:
            assert_refused(partial(apply, subject, kind, arg), ERRORS)
            for a, b in zip(subject.envs, twin.envs, strict=True):
                assert_same(snapshot(a), snapshot(b), "after a refused call")
    subject.action_space.seed(seed)
    twin.action_space.seed(seed)
    assert_same(subject.step(subject.action_space.sample()), twin.step(twin.action_space.sample()), "final")
