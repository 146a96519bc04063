"""Registry-driven checks, in the manner of Gymnasium's ``tests/envs/utils.py``.

Every env id registered by ``envs_registry``, every backend name of
``sam_gym.backends.available_backends()`` and every policy name of the policy registry is picked up
automatically and run through the checks that apply to it:

* env ids: Gymnasium's and Stable-Baselines3's ``check_env``, a seeded determinism rollout (two envs,
  same seed, same actions: identical outputs) and a pickle round trip after ``step()``;
* backends: the same env checks (pickle included) with the backend built by name;
* policies: evaluation through :mod:`sam_gym.evaluation` (twice: the same episodes give the same
  clicks and IoUs) and a report through :mod:`sam_gym.reporting`.

What cannot run here is listed below, once, with the reason. A new env variant, backend or policy
is checked without editing this file; one that cannot run on 2 CPUs without trained files or SAM
weights fails here until it is added to a skip list with its reason.
"""

from __future__ import annotations

import math
import pickle
import warnings
from collections.abc import Callable
from typing import Any

import gymnasium as gym
import numpy as np
import pytest

import envs_registry
import sam_gym  # noqa: F401  (registers the envs)
from sam_gym.backends import available_backends, make_backend
from sam_gym.cache import EmbeddingCache
from sam_gym.data import make_dataset
from sam_gym.evaluation import compare_policies
from sam_gym.policies import available_policies, make_policy
from sam_gym.reporting import build_results, results_markdown

#: Small episodes: a 4-image dataset, a few steps.
ENV_KWARGS: dict[str, Any] = {"dataset_kwargs": {"n": 4}}
ROLLOUT_STEPS = 20

ENV_IDS = sorted(
    env_id for env_id, spec in gym.envs.registry.items()
    if isinstance(spec.entry_point, str) and spec.entry_point.startswith("sam_gym.")
)

#: Stable-Baselines3 ``check_env`` warnings that a variant has by design (any other warning fails).
SB3_EXPECTED_WARNINGS: dict[str, tuple[str, str]] = {
    "SamPromptPoint-v0": (
        "We recommend you to use a symmetric and normalized Box action space",
        "the point action is (x / W, y / H, label) in [0, 1]^3 by design (normalised image coordinates), "
        "not SB3's preferred [-1, 1]",
    ),
}

#: Backends not built by name here, and why. Their class, ``SamBackend``, is still run through every
#: env check below with ``sam_gym.testing.tiny_sam_backend`` (segment-anything's own modules, tiny).
COSTLY_BACKENDS: dict[str, str] = {
    "sam_vit_h": "random ViT-H weights: ~2.5 GB and minutes per 1024-px encode on 2 CPUs",
    "sam_vit_l": "random ViT-L weights: ~1.2 GB and about a minute per 1024-px encode on 2 CPUs",
    "sam_vit_b": "random ViT-B weights: tens of seconds on 2 CPUs; built in "
                 "tests/test_sam_backend.py::test_vit_b_random_weights_end_to_end (slow)",
    "mobilesam_vit_t": "random ViT-T weights: ~25 s for the env checks on 2 CPUs; built in "
                       "tests/test_sam_backend.py (the mobilesam fixture)",
    **{f"{version}_hiera_{size}": "random Hiera weights: seconds per 1024-px encode on 2 CPUs; Sam2Backend is "
       "run through the env checks in tests/test_sam2_backend.py"
       for version in ("sam2.1", "sam2") for size in ("t", "s", "b+", "l")},
}

#: Policies that load trained files, so that their bare name cannot be evaluated here.
TRAINED_POLICIES: dict[str, str] = {
    "aop": "loads a trained prompt predictor (sam-gym train-aop); trained and evaluated in tests/test_aop.py",
    "sapnet": "loads a trained SAPNet model (sam-gym train-sapnet); trained and evaluated in tests/test_sapnet.py",
    "alignsam": "loads a trained run folder (sam-gym train); trained and evaluated in tests/test_alignsam.py",
}
#: Policies that need a SAM backend (they adapt SAM's decoder): evaluated on the tiny random SAM.
SAM_POLICIES: frozenset[str] = frozenset({"clicker-tta"})

# ----------------------------------------------------------------------------- helpers


def _assert_same(a: Any, b: Any, where: str = "output") -> None:
    """Exact equality of nested env outputs (dicts, sequences, arrays with their dtypes, floats incl. NaN)."""
    if isinstance(a, dict):
        assert isinstance(b, dict) and a.keys() == b.keys(), f"{where}: keys {sorted(a)} != {sorted(b)}"
        for key in a:
            _assert_same(a[key], b[key], f"{where}[{key!r}]")
    elif isinstance(a, np.ndarray):
        assert isinstance(b, np.ndarray) and a.dtype == b.dtype, f"{where}: {type(b)} / dtype differs"
        np.testing.assert_array_equal(a, b, err_msg=where)
    elif isinstance(a, (list, tuple)):
        assert type(a) is type(b) and len(a) == len(b), f"{where}: {a!r} != {b!r}"
        for i, (x, y) in enumerate(zip(a, b, strict=True)):
            _assert_same(x, y, f"{where}[{i}]")
    elif isinstance(a, float) and math.isnan(a):
        assert isinstance(b, float) and math.isnan(b), f"{where}: {a!r} != {b!r}"
    else:
        assert a == b and type(a) is type(b), f"{where}: {a!r} != {b!r}"


def _actions(env: gym.Env, seed: int, n: int) -> list[Any]:
    space = env.action_space
    space.seed(seed)
    return [space.sample() for _ in range(n)]


def _steps(env: gym.Env, actions: list[Any]) -> list[tuple[Any, ...]]:
    """Step ``env`` through ``actions`` (resetting, unseeded, after an episode ends); return every output."""
    out: list[tuple[Any, ...]] = []
    for action in actions:
        obs, reward, terminated, truncated, info = env.step(action)
        out.append((obs, reward, terminated, truncated, info))
        if terminated or truncated:
            out.append(env.reset())
    return out


def _check_env_checkers(make_env: Callable[[], gym.Env], env_id: str) -> None:
    from gymnasium.utils.env_checker import check_env as gym_check_env

    with warnings.catch_warnings():
        warnings.simplefilter("error")
        gym_check_env(make_env().unwrapped, skip_render_check=True)


def _check_determinism(make_env: Callable[[], gym.Env]) -> None:
    first, second = make_env(), make_env()
    actions = _actions(first, 7, ROLLOUT_STEPS)
    _assert_same(first.reset(seed=123), second.reset(seed=123), "reset")
    _assert_same(_steps(first, actions), _steps(second, actions), "steps")
    first.close()
    second.close()


def _check_pickle(make_env: Callable[[], gym.Env], steps: int = ROLLOUT_STEPS) -> None:
    """``pickle`` round trip after ``reset()`` and ``step()``: the copy continues exactly as the original."""
    env = make_env()
    actions = _actions(env, 11, steps)
    env.reset(seed=5)
    _steps(env, actions[:3])
    restored = pickle.loads(pickle.dumps(env))
    _assert_same(_steps(env, actions[3:]), _steps(restored, actions[3:]), "steps after unpickling")


def _make(env_id: str, **kwargs: Any) -> Callable[[], gym.Env]:
    return lambda: gym.make(env_id, **ENV_KWARGS, **kwargs)


@pytest.fixture(scope="module")
def tiny_sam() -> Any:
    """segment-anything's ``Sam`` in a tiny random configuration, behind ``SamBackend``."""
    pytest.importorskip("torch")
    pytest.importorskip("segment_anything")
    from sam_gym.testing import tiny_sam_backend

    return tiny_sam_backend()


# ----------------------------------------------------------------------------- env ids


def test_env_ids_are_exactly_the_envs_registry_variants() -> None:
    assert ENV_IDS == sorted(envs_registry.VARIANTS)
    for env_id in ENV_IDS:
        assert gym.spec(env_id).vector_entry_point is not None, f"{env_id} has no vector entry point"


@pytest.mark.parametrize("env_id", ENV_IDS)
def test_gymnasium_env_checker(env_id: str) -> None:
    _check_env_checkers(_make(env_id), env_id)


@pytest.mark.parametrize("env_id", ENV_IDS)
def test_sb3_env_checker(env_id: str) -> None:
    pytest.importorskip("stable_baselines3")
    from stable_baselines3.common.env_checker import check_env as sb3_check_env

    env = gym.make(env_id, **ENV_KWARGS).unwrapped
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        sb3_check_env(env)
    messages = [str(w.message) for w in caught]
    expected = SB3_EXPECTED_WARNINGS.get(env_id)
    if expected is not None:
        assert any(expected[0] in m for m in messages), f"{env_id}: the listed warning is gone; unlist it"
        messages = [m for m in messages if expected[0] not in m]
    assert messages == [], f"{env_id}: unexpected SB3 check_env warnings"


@pytest.mark.parametrize("env_id", ENV_IDS)
def test_seeded_rollouts_are_identical(env_id: str) -> None:
    _check_determinism(_make(env_id))


@pytest.mark.parametrize("env_id", ENV_IDS)
def test_pickle_round_trip_after_step_continues_identically(env_id: str) -> None:
    _check_pickle(_make(env_id))


# ----------------------------------------------------------------------------- backends


def test_backend_skip_list_names_registered_backends() -> None:
    assert set(COSTLY_BACKENDS) <= set(available_backends())


@pytest.mark.parametrize("name", available_backends())
def test_every_backend_by_name_passes_the_env_checks(name: str) -> None:
    if name in COSTLY_BACKENDS:
        pytest.skip(f"{name}: {COSTLY_BACKENDS[name]}")
    backend = make_backend(name)
    for env_id in ENV_IDS:
        _check_env_checkers(_make(env_id, backend=backend), env_id)
        _check_determinism(_make(env_id, backend=backend))
        _check_pickle(_make(env_id, backend=backend))


@pytest.mark.parametrize("env_id", ENV_IDS)
def test_sam_backend_class_passes_the_env_checks(env_id: str, tiny_sam: Any) -> None:
    _check_env_checkers(_make(env_id, backend=tiny_sam), env_id)
    _check_determinism(_make(env_id, backend=tiny_sam))


def test_sam_backend_env_pickle_round_trip_after_step(tiny_sam: Any) -> None:
    _check_pickle(_make("SamPrompt-v0", backend=tiny_sam), steps=8)


# ----------------------------------------------------------------------------- policies


def test_policy_skip_lists_name_registered_policies() -> None:
    assert set(TRAINED_POLICIES) <= set(available_policies())
    assert SAM_POLICIES <= set(available_policies())
    assert not SAM_POLICIES & set(TRAINED_POLICIES)


def _evaluate(name: str, backend: Any) -> list[Any]:
    dataset = make_dataset("synthetic-shapes", n=2)
    runs = compare_policies({name: make_policy(name)}, dataset, EmbeddingCache(backend), max_clicks=3, grid=(5, 5),
                            indices=[0, 1], seeds=[0, 1], env_kwargs={"target_iou": 0.9})
    (run,) = runs
    assert run.name == name and len(run.records) == 4
    for record in run.records:
        assert 1 <= len(record.ious) <= 3 and all(0.0 <= v <= 1.0 for v in record.ious)
        assert len(record.points) == len(record.labels) == len(record.ious)
    results = build_results(runs, backend=backend, dataset="synthetic-shapes", max_clicks=3, command="test")
    assert f"| {name}" in results_markdown(results)
    return [(r.index, r.seed, r.ious, r.points, r.labels) for r in run.records]


@pytest.mark.parametrize("name", available_policies())
def test_every_policy_evaluates_reproducibly(name: str, request: pytest.FixtureRequest) -> None:
    if name in TRAINED_POLICIES:
        pytest.skip(f"{name}: {TRAINED_POLICIES[name]}")
    backend = request.getfixturevalue("tiny_sam") if name in SAM_POLICIES else make_backend("classical")
    first = _evaluate(name, backend)
    second = _evaluate(name, backend)
    _assert_same(first, second, f"{name} episodes")


@pytest.mark.parametrize("name", sorted(TRAINED_POLICIES))
def test_trained_policies_say_how_to_get_their_files(
    name: str, tmp_path: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.chdir(tmp_path)  # no runs/ folder here
    for variable in ("SAM_GYM_AOP", "SAM_GYM_SAPNET"):
        monkeypatch.delenv(variable, raising=False)
    with pytest.raises(ValueError, match="Expected"):
        make_policy(name)
