"""Sizes and one-off costs: observation bytes, encoder speed, cache-hit resets, resident-memory growth.

Part of :mod:`sam_gym.benchmark` (whose docstring says what each figure means).
"""

from __future__ import annotations

import gc
import time
from collections.abc import Sequence
from typing import Any

import numpy as np

from sam_gym.backends.base import PromptableSegmenter
from sam_gym.benchmark.timing import Driver, synchronize
from sam_gym.envs.prompt_env import SamPromptEnv
from sam_gym.memory import rss_bytes

__all__ = ["cache_hit_reset_ms", "encoder_images_per_s", "obs_bytes", "rss_growth_pct"]


def obs_bytes(env: SamPromptEnv, seed: int = 0) -> int:
    """Bytes of one observation of ``env`` (all keys)."""
    obs, _ = env.reset(seed=seed)
    return int(sum(np.asarray(v).nbytes for v in obs.values()))


def encoder_images_per_s(backend: PromptableSegmenter, images: Sequence[np.ndarray]) -> float:
    """Images per second of ``backend.encode`` (no cache), after one untimed warm-up encode."""
    if len(images) < 2:
        raise ValueError(f"Expected at least 2 images (1 warm-up, 1 timed), got {len(images)}")
    backend.encode(images[0])
    synchronize(backend)
    start = time.perf_counter()
    for image in images[1:]:
        backend.encode(image)
    synchronize(backend)
    return (len(images) - 1) / (time.perf_counter() - start)


def cache_hit_reset_ms(env: SamPromptEnv, indices: Sequence[int], repeats: int = 5) -> float:
    """Mean ``env.reset`` time in ms on samples whose embeddings are already in the memory cache."""
    for index in indices:
        env.reset(options={"index": int(index)})
    hits_before = env.cache.stats.encoder_calls
    times = []
    for _ in range(repeats):
        for index in indices:
            synchronize(env.backend)
            start = time.perf_counter()
            env.reset(options={"index": int(index)})
            synchronize(env.backend)
            times.append(time.perf_counter() - start)
    if env.cache.stats.encoder_calls != hits_before:
        raise RuntimeError("Expected cache hits only; the memory cache is smaller than the benchmark's images")
    return 1e3 * float(np.mean(times))


def rss_growth_pct(env: SamPromptEnv, steps: int, seed: int = 0, warmup: int | None = None) -> dict[str, Any]:
    """Resident-memory growth over ``steps`` env steps, measured from after a warm-up.

    Args:
        env: A single env.
        steps: Measured steps.
        seed: Seed of the env and of the actions.
        warmup: Untimed steps first (default ``max(20, steps // 10)``), so that caches, allocator
            pools and lazily built buffers exist before the first reading.

    Returns:
        ``rss_growth_pct``, ``rss_start_mb``, ``rss_end_mb``, ``rss_steps`` and ``rss_method``.
    """
    driver = Driver(env, seed)
    for _ in range(max(20, steps // 10) if warmup is None else warmup):
        _, _, terminated, truncated, _ = env.step(driver.action())
        driver.after(terminated, truncated)
    gc.collect()
    start, method = rss_bytes()
    for _ in range(steps):
        _, _, terminated, truncated, _ = env.step(driver.action())
        driver.after(terminated, truncated)
    gc.collect()
    end, _ = rss_bytes()
    return {
        "rss_growth_pct": 100.0 * (end - start) / start,
        "rss_start_mb": start / 2**20,
        "rss_end_mb": end / 2**20,
        "rss_steps": steps,
        "rss_method": method,
    }
