"""Throughput measurements of the env, the vector env and the backend (``sam-gym bench``).

Every function warms up before it times, synchronises CUDA around GPU timings
(:func:`synchronize`) and times with ``time.perf_counter``. The env is driven with random *valid*
actions (never a repeated patch, so every step runs the decoder) drawn from a seeded generator.

What is measured (see ``docs/benchmarks.md`` for the figures and commands):

* ``decoder_calls_per_s`` / ``env_steps_per_s`` / ``env_over_decoder``: one single env is stepped
  for ``steps`` steps (timing ``env.step``), then the same episodes are replayed with the same seed
  and actions through ``env.prepare_step`` / ``env.finish_step`` while only the bare decoder call
  (``backend.decode`` on the very same request: embedding, prompts, previous logits) is timed;
  ``env_over_decoder`` is the mean env step time over the mean decoder call time.
* ``vector_steps_per_s``: :class:`~sam_gym.envs.vector_env.SamPromptVectorEnv` steps per second,
  all sub-envs counted, per batch size.
* ``obs_bytes``: bytes of one single-env observation.
* ``encoder_images_per_s``: ``backend.encode`` on distinct images (no cache).
* ``cache_hit_reset_ms``: ``env.reset`` on images whose embedding is in the memory cache.
* ``rss_growth_pct``: resident memory growth over ``rss_steps`` env steps, from after a warm-up.

Points and masks follow the package convention: points ``(x, y)`` in image pixels (x right, y down),
the pixel is ``(floor(y), floor(x))``, masks ``(H, W)`` indexed ``[row, col]``.
"""

from __future__ import annotations

import datetime as _dt
import gc
import os
import platform
import sys
import time
from collections.abc import Callable, Sequence
from typing import Any

import numpy as np

from sam_gym.backends.base import PromptableSegmenter
from sam_gym.data import SegmentationDataset
from sam_gym.envs.prompt_env import SamPromptEnv
from sam_gym.memory import rss_bytes

__all__ = [
    "REQUIRED_KEYS",
    "cache_hit_reset_ms",
    "encoder_images_per_s",
    "env_and_decoder_rates",
    "machine_description",
    "obs_bytes",
    "rss_bytes",
    "rss_growth_pct",
    "run_benchmark",
    "synchronize",
    "vector_steps_per_s",
]

#: Keys that every ``sam-gym bench`` JSON holds.
REQUIRED_KEYS = (
    "decoder_calls_per_s",
    "env_steps_per_s",
    "env_over_decoder",
    "vector_steps_per_s",
    "obs_bytes",
    "encoder_images_per_s",
    "cache_hit_reset_ms",
    "rss_growth_pct",
    "device",
    "backend",
)


def synchronize(backend: PromptableSegmenter) -> None:
    """Wait for the backend's CUDA kernels (no-op for CPU and weight-free backends)."""
    device = getattr(backend, "device", None)
    if device is not None and getattr(device, "type", None) == "cuda":
        import torch

        torch.cuda.synchronize(device)


def backend_device(backend: PromptableSegmenter) -> str:
    """The device the backend computes on: its torch device, or ``"cpu"`` (weight-free backends)."""
    device = getattr(backend, "device", None)
    return str(device) if device is not None else "cpu"


def machine_description(backend: PromptableSegmenter) -> dict[str, Any]:
    """CPU, core count, GPU name (when the backend runs on one), Python and library versions."""
    info: dict[str, Any] = {
        "platform": platform.platform(),
        "processor": platform.processor() or platform.machine(),
        "cpu_count": os.cpu_count(),
        "python": sys.version.split()[0],
        "numpy": np.__version__,
    }
    if "torch" in sys.modules:
        import torch

        info["torch"] = torch.__version__
        info["torch_threads"] = torch.get_num_threads()
        device = getattr(backend, "device", None)
        if device is not None and device.type == "cuda":
            info["gpu"] = torch.cuda.get_device_name(device)
    return info


def _valid_action(masks: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """One random valid action per row of ``masks`` (``(n, n_actions)`` bool); invalid ones never drawn."""
    scores = rng.random(masks.shape)
    scores[~masks] = -1.0
    return scores.argmax(axis=-1)


class _Driver:
    """Steps a single env with random valid actions, resetting it at episode end."""

    def __init__(self, env: SamPromptEnv, seed: int) -> None:
        self.env = env
        self.rng = np.random.default_rng(seed)
        env.reset(seed=seed)

    def action(self) -> int:
        return int(_valid_action(self.env.action_masks()[None], self.rng)[0])

    def after(self, terminated: bool, truncated: bool) -> None:
        if terminated or truncated:
            self.env.reset()


def env_and_decoder_rates(env: SamPromptEnv, steps: int, seed: int = 0, warmup: int = 5) -> dict[str, float]:
    """Time ``env.step`` and the bare decoder call on the same inputs (see the module docstring).

    Args:
        env: A single env (patch or patch_label action mode).
        steps: Timed steps (each one decodes: only valid actions are drawn).
        seed: Seed of the env and of the actions.
        warmup: Untimed steps before each timed pass.

    Returns:
        ``env_step_ms``, ``decoder_call_ms``, ``env_steps_per_s``, ``decoder_calls_per_s`` and
        ``env_over_decoder`` (env step time / decoder call time).
    """
    backend = env.backend
    _warm(env, warmup, seed + 1)
    driver = _Driver(env, seed)
    actions: list[int] = []
    env_times = []
    for _ in range(steps):
        action = driver.action()
        actions.append(action)
        synchronize(backend)
        start = time.perf_counter()
        _, _, terminated, truncated, _ = env.step(action)
        synchronize(backend)
        env_times.append(time.perf_counter() - start)
        driver.after(terminated, truncated)

    _warm(env, warmup, seed + 2)
    env.reset(seed=seed)
    decoder_times = []
    for action in actions:
        request = env.prepare_step(action)
        if request is None:
            raise RuntimeError("Expected every benchmark action to need a decode (no repeated click)")
        synchronize(backend)
        start = time.perf_counter()
        prediction = backend.decode(request.embedding, request.points, request.labels,
                                    mask_input=request.mask_input, multimask=request.multimask)
        synchronize(backend)
        decoder_times.append(time.perf_counter() - start)
        _, _, terminated, truncated, _ = env.finish_step(prediction)
        if terminated or truncated:
            env.reset()
    env_s, decoder_s = float(np.mean(env_times)), float(np.mean(decoder_times))
    return {
        "env_step_ms": 1e3 * env_s,
        "decoder_call_ms": 1e3 * decoder_s,
        "env_steps_per_s": 1.0 / env_s,
        "decoder_calls_per_s": 1.0 / decoder_s,
        "env_over_decoder": env_s / decoder_s,
    }


def _warm(env: SamPromptEnv, steps: int, seed: int) -> None:
    driver = _Driver(env, seed)
    for _ in range(steps):
        _, _, terminated, truncated, _ = env.step(driver.action())
        driver.after(terminated, truncated)


def vector_steps_per_s(
    make_vector_env: Callable[[int], Any], batch: int, steps: int, seed: int = 0, warmup: int = 3
) -> float:
    """Steps per second of a vector env of ``batch`` sub-envs, all sub-envs counted.

    Args:
        make_vector_env: ``num_envs -> SamPromptVectorEnv`` (sharing the benchmark's cache).
        batch: Number of sub-envs.
        steps: Timed vector steps.
        seed: Seed of the sub-envs and of the actions.
        warmup: Untimed vector steps.
    """
    venv = make_vector_env(batch)
    rng = np.random.default_rng(seed)
    venv.reset(seed=seed)
    for _ in range(warmup):
        venv.step(_valid_action(venv.action_masks(), rng))
    synchronize(venv.backend)
    start = time.perf_counter()
    for _ in range(steps):
        venv.step(_valid_action(venv.action_masks(), rng))
    synchronize(venv.backend)
    elapsed = time.perf_counter() - start
    venv.close()
    return batch * steps / elapsed


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
    driver = _Driver(env, seed)
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


def run_benchmark(
    backend: PromptableSegmenter,
    dataset: SegmentationDataset,
    batches: Sequence[int] = (1, 8, 32, 256),
    steps: int = 200,
    vector_steps: int | None = None,
    rss_steps: int = 10_000,
    encoder_images: int = 4,
    seed: int = 0,
    env_kwargs: dict[str, Any] | None = None,
    log: Callable[[str], None] = print,
) -> dict[str, Any]:
    """Run every measurement of ``sam-gym bench`` and return the JSON-ready results.

    Args:
        backend: The backend (shared by all envs through one embedding cache).
        dataset: The images (its first ``max(encoder_images, 4)`` samples are used).
        batches: Vector-env batch sizes.
        steps: Timed single-env steps (and replayed decoder calls).
        vector_steps: Timed vector steps per batch size (default ``max(2, steps // 4)``).
        rss_steps: Steps of the memory-growth measurement (0 skips it: ``rss_growth_pct`` null).
        encoder_images: Images encoded for ``encoder_images_per_s`` (one of them warm-up).
        seed: Seed of the envs and actions.
        env_kwargs: Extra :class:`~sam_gym.envs.prompt_env.SamPromptEnv` arguments (e.g. ``info_iou``).
        log: Where progress lines go.
    """
    from sam_gym.cache import EmbeddingCache
    from sam_gym.data.subset import Subset
    from sam_gym.envs.vector_env import SamPromptVectorEnv

    if steps < 1 or any(int(b) < 1 for b in batches):
        raise ValueError(f"Expected steps >= 1 and positive batch sizes, got steps={steps}, batches={list(batches)}")
    env_kwargs = dict(env_kwargs or {})
    n_images = min(len(dataset), max(encoder_images, 4))
    images = Subset(dataset, range(n_images))
    cache = EmbeddingCache(backend, max_items=max(64, n_images))
    env = SamPromptEnv(dataset=images, cache=cache, **env_kwargs)
    results: dict[str, Any] = {
        "backend": backend.description,
        "backend_name": backend.name,
        "device": backend_device(backend),
        "date": _dt.datetime.now(_dt.timezone.utc).isoformat(timespec="seconds"),
        "machine": machine_description(backend),
        "settings": {"steps": steps, "batches": [int(b) for b in batches], "rss_steps": rss_steps, "seed": seed,
                     "dataset": images.name, "n_images": n_images,
                     "env_kwargs": {k: repr(v) for k, v in env_kwargs.items()},
                     # SAM backends: most prompts per mask-decoder call in the vector env (None: all)
                     "decoder_batch": getattr(backend, "decoder_batch", None)},
    }
    log(f"backend: {backend.description} on {results['device']}")

    results["encoder_images_per_s"] = encoder_images_per_s(
        backend, [images[i].image for i in range(min(n_images, max(2, encoder_images)))]
    )
    log(f"encoder: {results['encoder_images_per_s']:.2f} images/s")
    results["cache_hit_reset_ms"] = cache_hit_reset_ms(env, range(n_images))
    log(f"cache-hit reset: {results['cache_hit_reset_ms']:.2f} ms")
    results["obs_bytes"] = obs_bytes(env, seed)
    log(f"observation: {results['obs_bytes']} bytes per step")

    rates = env_and_decoder_rates(env, steps, seed)
    results.update(rates)
    log(f"bare decoder: {rates['decoder_calls_per_s']:.1f} calls/s ({rates['decoder_call_ms']:.2f} ms); "
        f"single env: {rates['env_steps_per_s']:.1f} steps/s ({rates['env_step_ms']:.2f} ms); "
        f"env / decoder = {rates['env_over_decoder']:.3f}")

    n_vector = vector_steps if vector_steps is not None else max(2, steps // 4)
    vector: dict[str, float] = {}
    for batch in batches:
        vector[str(int(batch))] = vector_steps_per_s(
            lambda n: SamPromptVectorEnv(n, dataset=images, cache=cache, **env_kwargs), int(batch), n_vector, seed
        )
        log(f"vector env, batch {batch}: {vector[str(int(batch))]:.1f} steps/s (all sub-envs)")
    results["vector_steps_per_s"] = vector
    results["vector_steps"] = n_vector

    if rss_steps > 0:
        memory = rss_growth_pct(env, rss_steps, seed)
        results.update(memory)
        log(f"memory: RSS {memory['rss_start_mb']:.1f} -> {memory['rss_end_mb']:.1f} MB over {rss_steps} steps "
            f"({memory['rss_growth_pct']:+.2f} %, {memory['rss_method']})")
    else:
        results["rss_growth_pct"] = None
    env.close()
    return results
