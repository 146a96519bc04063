"""The vector env per batch size: steps per second, its share over the decoder, its overhead alone (null backend).

Part of :mod:`sam_gym.benchmark` (whose docstring says what each figure means).
"""

from __future__ import annotations

import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

from sam_gym.backends.base import PromptableSegmenter
from sam_gym.benchmark.timing import ENV_ID, DecoderClock, check_decoded, synchronize, valid_action
from sam_gym.data import SegmentationDataset

__all__ = ["VectorTiming", "make_vector_env", "observation_copy_us_per_substep", "overhead_us_per_substep",
           "vector_step_timing"]


def make_vector_env(num_envs: int, dataset: SegmentationDataset, cache: Any, **env_kwargs: Any) -> Any:
    """``gym.make_vec("SamPrompt-v0", num_envs, vectorization_mode="vector_entry_point")`` on ``cache``'s backend."""
    import gymnasium as gym

    import sam_gym  # noqa: F401  (registers the envs)

    return gym.make_vec(ENV_ID, num_envs=num_envs, vectorization_mode="vector_entry_point", dataset=dataset,
                        cache=cache, **env_kwargs)


def _vector_pass(venv: Any, backend: PromptableSegmenter, steps: int, seed: int, warmup: int,
                 clock: DecoderClock | None = None) -> tuple[list[float], list[float]]:
    """Per timed vector step: its seconds (``action_masks()`` + ``step``); with ``clock``, its decoder calls' too."""
    rng = np.random.default_rng(seed)
    venv.reset(seed=seed)
    for _ in range(warmup):
        venv.step(valid_action(venv.action_masks(), rng))
    wall, decoder = [], []
    for _ in range(steps):
        synchronize(backend)
        start = time.perf_counter()
        masks = venv.action_masks()
        elapsed = time.perf_counter() - start
        actions = valid_action(masks, rng)
        before = 0.0
        if clock is not None:
            before, clock.active = clock.seconds, True
        start = time.perf_counter()
        venv.step(actions)
        synchronize(backend)
        wall.append(elapsed + time.perf_counter() - start)
        if clock is not None:
            clock.active = False
            decoder.append(clock.seconds - before)
    return wall, decoder


@dataclass(frozen=True)
class VectorTiming:
    """What :func:`vector_step_timing` measured.

    Attributes:
        step_s: Mean seconds per vector step (the pass without the decoder clock).
        decoder_s: Mean seconds of the decoder calls per vector step (``None`` if not timed).
        env_over_decoder: Median over the clocked pass's steps of each step's time over its own
            decoder calls' time (``None`` if not timed).
    """

    step_s: float
    decoder_s: float | None
    env_over_decoder: float | None


def vector_step_timing(
    make_vector_env: Callable[[int], Any], backend: PromptableSegmenter, batch: int, steps: int, seed: int = 0,
    warmup: int = 3, decoder: bool = True,
) -> VectorTiming:
    """Time the vector env's steps and, with ``decoder``, the decoder calls inside them (same episodes).

    The first pass times the steps alone (``step_s``). With ``decoder`` a second pass over the same
    episodes times each step whole and, inside it, its decoder calls (:class:`DecoderClock`): the
    ratio of the two within one step does not depend on how loaded the machine was in that step,
    as a ratio of two passes seconds apart does.

    Args:
        make_vector_env: ``num_envs -> vector env`` (on ``backend``, sharing the benchmark's cache).
        backend: The vector env's backend (the one whose decoder calls are timed).
        batch: Number of sub-envs.
        steps: Timed vector steps per pass.
        seed: Seed of the sub-envs and of the actions.
        warmup: Untimed vector steps before each pass.
        decoder: Also run the second pass that times the decoder calls.

    Returns:
        The mean vector step time and, with ``decoder``, the mean decoder time per vector step and
        the median per-step ratio.
    """
    venv = make_vector_env(batch)
    try:
        wall, _ = _vector_pass(venv, backend, steps, seed, warmup)
        decoder_s = ratio = None
        if decoder:
            with DecoderClock(backend) as clock:
                clocked, decoded = _vector_pass(venv, backend, steps, seed, warmup, clock)
            check_decoded(clock, steps)
            decoder_s = float(np.mean(decoded))
            ratio = float(np.median(np.divide(clocked, decoded)))
    finally:
        venv.close()
    return VectorTiming(float(np.mean(wall)), decoder_s, ratio)


def overhead_us_per_substep(
    dataset: SegmentationDataset, batches: Sequence[int], steps: int, seed: int = 0,
    env_kwargs: dict[str, Any] | None = None, device: str | None = None, backend: Any = None,
    warmup: int = 3,
) -> dict[str, float]:
    """The env's own cost per sub-env step, per batch size: vector step time / batch with the null backend.

    Args:
        dataset: The images.
        batches: Vector-env batch sizes.
        steps: Timed vector steps per batch size.
        seed: Seed of the envs and actions.
        env_kwargs: Extra env arguments.
        device: The null backend's torch device (``None``: numpy outputs, no torch).
        backend: A :class:`~sam_gym.backends.null.NullBackend` to use instead of building one.
        warmup: Untimed vector steps before timing.

    Returns:
        ``{str(batch): microseconds per sub-env step}``.
    """
    from sam_gym.backends.null import NullBackend
    from sam_gym.cache import EmbeddingCache

    null = backend if isinstance(backend, NullBackend) else NullBackend(device=device)
    cache = EmbeddingCache(null, max_items=max(64, len(dataset)))
    env_kwargs = dict(env_kwargs or {})
    out = {}
    for batch in batches:
        timing = vector_step_timing(lambda n: make_vector_env(n, dataset, cache, **env_kwargs), null, int(batch),
                                    steps, seed, warmup, decoder=False)
        out[str(int(batch))] = 1e6 * timing.step_s / int(batch)
    return out


def observation_copy_us_per_substep(
    dataset: SegmentationDataset, batches: Sequence[int], seed: int = 0, env_kwargs: dict[str, Any] | None = None,
    backend: Any = None, repeats: int = 5,
) -> dict[str, float]:
    """What copying one vector step's observation batch costs per sub-env, per batch size (best of ``repeats``).

    Every observation array a step returns is new (as ``SyncVectorEnv``'s copied batch is), so no
    env can hand out a step's observations in less than the time this machine takes to write their
    bytes once: the floor under :func:`overhead_us_per_substep`, set by memory bandwidth.

    Args:
        dataset: The images.
        batches: Vector-env batch sizes.
        seed: Seed of the envs and the action.
        env_kwargs: Extra env arguments.
        backend: The :class:`~sam_gym.backends.null.NullBackend` to step with (``None``: a new one).
        repeats: Timed copies per batch size (the fastest counts).

    Returns:
        ``{str(batch): microseconds per sub-env}``.
    """
    from sam_gym.backends.null import NullBackend
    from sam_gym.cache import EmbeddingCache

    null = backend if isinstance(backend, NullBackend) else NullBackend()
    cache = EmbeddingCache(null, max_items=max(64, len(dataset)))
    out = {}
    for batch in batches:
        venv = make_vector_env(int(batch), dataset, cache, **dict(env_kwargs or {}))
        try:
            venv.reset(seed=seed)
            obs = venv.step(valid_action(venv.action_masks(), np.random.default_rng(seed)))[0]
            best = np.inf
            for _ in range(max(1, int(repeats))):
                start = time.perf_counter()
                copies = {key: value.copy() for key, value in obs.items()}
                best = min(best, time.perf_counter() - start)
                del copies
        finally:
            venv.close()
        out[str(int(batch))] = 1e6 * best / int(batch)
    return out
