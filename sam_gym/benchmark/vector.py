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

__all__ = ["VectorTiming", "make_vector_env", "overhead_us_per_substep", "vector_step_timing"]


def make_vector_env(num_envs: int, dataset: SegmentationDataset, cache: Any, **env_kwargs: Any) -> Any:
    """``gym.make_vec("SamPrompt-v0", num_envs, vectorization_mode="vector_entry_point")`` on ``cache``'s backend."""
    import gymnasium as gym

    import sam_gym  # noqa: F401  (registers the envs)

    return gym.make_vec(ENV_ID, num_envs=num_envs, vectorization_mode="vector_entry_point", dataset=dataset,
                        cache=cache, **env_kwargs)


def _vector_pass(venv: Any, backend: PromptableSegmenter, steps: int, seed: int, warmup: int,
                 clock: DecoderClock | None = None) -> float:
    """Mean seconds per vector step (``action_masks()`` + ``step``), or with ``clock`` of its decoder calls."""
    rng = np.random.default_rng(seed)
    venv.reset(seed=seed)
    for _ in range(warmup):
        venv.step(valid_action(venv.action_masks(), rng))
    total = 0.0
    for _ in range(steps):
        if clock is None:
            synchronize(backend)
            start = time.perf_counter()
            masks = venv.action_masks()
            total += time.perf_counter() - start
            actions = valid_action(masks, rng)
            start = time.perf_counter()
            venv.step(actions)
            synchronize(backend)
            total += time.perf_counter() - start
        else:
            actions = valid_action(venv.action_masks(), rng)
            before, clock.active = clock.seconds, True
            venv.step(actions)
            clock.active = False
            total += clock.seconds - before
    return total / steps


@dataclass(frozen=True)
class VectorTiming:
    """What :func:`vector_step_timing` measured.

    Attributes:
        step_s: Mean seconds per vector step.
        decoder_s: Mean seconds of the decoder calls per vector step (``None`` if not timed).
    """

    step_s: float
    decoder_s: float | None

    @property
    def env_over_decoder(self) -> float | None:
        """``step_s / decoder_s``, or ``None`` when the decoder was not timed."""
        return None if self.decoder_s is None else self.step_s / self.decoder_s


def vector_step_timing(
    make_vector_env: Callable[[int], Any], backend: PromptableSegmenter, batch: int, steps: int, seed: int = 0,
    warmup: int = 3, decoder: bool = True,
) -> VectorTiming:
    """Time the vector env's steps and, with ``decoder``, the decoder calls inside them (same episodes).

    Args:
        make_vector_env: ``num_envs -> vector env`` (on ``backend``, sharing the benchmark's cache).
        backend: The vector env's backend (the one whose decoder calls are timed).
        batch: Number of sub-envs.
        steps: Timed vector steps per pass.
        seed: Seed of the sub-envs and of the actions.
        warmup: Untimed vector steps before each pass.
        decoder: Also run the second pass that times the decoder calls.

    Returns:
        The mean vector step time and, with ``decoder``, the mean decoder time per vector step.
    """
    venv = make_vector_env(batch)
    try:
        step_s = _vector_pass(venv, backend, steps, seed, warmup)
        decoder_s = None
        if decoder:
            with DecoderClock(backend) as clock:
                decoder_s = _vector_pass(venv, backend, steps, seed, warmup, clock)
            check_decoded(clock, steps)
    finally:
        venv.close()
    return VectorTiming(step_s, decoder_s)


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
