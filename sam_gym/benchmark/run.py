"""``sam-gym bench``: every measurement in one results dict (:func:`run_benchmark`).

Part of :mod:`sam_gym.benchmark` (whose docstring says what each figure means).
"""

from __future__ import annotations

import datetime as _dt
import sys
from collections.abc import Callable, Sequence
from typing import Any

from sam_gym.backends.base import PromptableSegmenter
from sam_gym.benchmark.footprint import cache_hit_reset_ms, encoder_images_per_s, obs_bytes, rss_growth_pct
from sam_gym.benchmark.timing import InMemory, backend_device, env_and_decoder_rates, gpu_mem_gb, machine_description
from sam_gym.benchmark.training import train_env_steps_per_s
from sam_gym.benchmark.vector import (
    make_vector_env,
    observation_copy_us_per_substep,
    overhead_us_per_substep,
    vector_step_timing,
)
from sam_gym.data import SegmentationDataset
from sam_gym.envs.prompt_env import SamPromptEnv

__all__ = ["REQUIRED_KEYS", "run_benchmark"]


#: Keys that every ``sam-gym bench`` JSON holds.
REQUIRED_KEYS = (
    "decoder_calls_per_s",
    "env_steps_per_s",
    "env_over_decoder",
    "vector_steps_per_s",
    "env_over_decoder_per_batch",
    "overhead_us_per_substep",
    "obs_copy_us_per_substep",
    "train_env_steps_per_s",
    "obs_bytes",
    "encoder_images_per_s",
    "cache_hit_reset_ms",
    "cache_bytes_per_image",
    "rss_growth_pct",
    "gpu_mem_gb",
    "device",
    "backend",
)


def run_benchmark(
    backend: PromptableSegmenter,
    dataset: SegmentationDataset,
    batches: Sequence[int] = (1, 8, 64, 256),
    steps: int = 200,
    vector_steps: int | None = None,
    rss_steps: int = 10_000,
    encoder_images: int = 4,
    seed: int = 0,
    env_kwargs: dict[str, Any] | None = None,
    train_envs: int = 8,
    train_n_steps: int = 16,
    train_rollouts: int = 2,
    log: Callable[[str], None] = print,
) -> dict[str, Any]:
    """Run every measurement of ``sam-gym bench`` and return the JSON-ready results.

    Args:
        backend: The backend (shared by all envs through one embedding cache).
        dataset: The images (its first ``max(encoder_images, 4)`` samples are used, held in memory:
            :class:`InMemory`, so that no figure includes reading or drawing an image).
        batches: Vector-env batch sizes (for ``vector_steps_per_s``, ``env_over_decoder_per_batch``
            and ``overhead_us_per_substep``).
        steps: Timed single-env steps (and the same steps' decoder calls).
        vector_steps: Timed vector steps per batch size and pass (default ``max(2, steps // 4)``).
        rss_steps: Steps of the memory-growth measurement (0 skips it: ``rss_growth_pct`` null).
        encoder_images: Images encoded for ``encoder_images_per_s`` (one of them warm-up).
        seed: Seed of the envs and actions.
        env_kwargs: Extra :class:`~sam_gym.envs.prompt_env.SamPromptEnv` arguments (e.g. ``info_iou``).
        train_envs: Sub-envs of the PPO measurement.
        train_n_steps: Rollout steps per sub-env of the PPO measurement.
        train_rollouts: Timed PPO rollouts (0 skips it: ``train_env_steps_per_s`` null).
        log: Where progress lines go.
    """
    from sam_gym.backends.null import NullBackend
    from sam_gym.cache import EmbeddingCache

    if steps < 1 or any(int(b) < 1 for b in batches):
        raise ValueError(f"Expected steps >= 1 and positive batch sizes, got steps={steps}, batches={list(batches)}")
    if train_envs < 1 or train_n_steps < 1 or train_rollouts < 0:
        raise ValueError(f"Expected train_envs >= 1, train_n_steps >= 1 and train_rollouts >= 0, got "
                         f"{train_envs}, {train_n_steps}, {train_rollouts}")
    if "torch" in sys.modules:
        import torch

        if torch.cuda.is_available() and torch.cuda.is_initialized():
            torch.cuda.reset_peak_memory_stats()
    env_kwargs = dict(env_kwargs or {})
    n_images = min(len(dataset), max(encoder_images, 4))
    images = InMemory(dataset, n_images)
    cache = EmbeddingCache(backend, max_items=max(64, n_images))
    env = SamPromptEnv(dataset=images, cache=cache, **env_kwargs)
    stub = isinstance(backend, NullBackend)
    results: dict[str, Any] = {
        "backend": backend.description,
        "backend_name": backend.name,
        "is_sam": bool(backend.is_sam),
        "device": backend_device(backend),
        "date": _dt.datetime.now(_dt.timezone.utc).isoformat(timespec="seconds"),
        "machine": machine_description(backend),
        "settings": {"steps": steps, "batches": [int(b) for b in batches], "rss_steps": rss_steps, "seed": seed,
                     "dataset": images.name, "n_images": n_images,
                     "env_kwargs": {k: repr(v) for k, v in env_kwargs.items()},
                     # SAM backends: most prompts per mask-decoder call in the vector env (None: all)
                     "decoder_batch": getattr(backend, "decoder_batch", None)},
    }
    log(f"backend: {backend.description} on {results['device']}" + (
        "  [measuring stub: decoder figures are the stub's, not a segmenter's]" if stub else ""))

    results["encoder_images_per_s"] = encoder_images_per_s(
        backend, [images[i].image for i in range(min(n_images, max(2, encoder_images)))]
    )
    log(f"encoder: {results['encoder_images_per_s']:.2f} images/s")
    results["cache_hit_reset_ms"] = cache_hit_reset_ms(env, range(n_images))
    log(f"cache-hit reset: {results['cache_hit_reset_ms']:.2f} ms")
    results["cache_bytes_per_image"] = int(cache.nbytes // max(1, len(cache)))
    log(f"cache: {results['cache_bytes_per_image']} bytes per image in memory ({results['device']})")
    results["obs_bytes"] = obs_bytes(env, seed)
    log(f"observation: {results['obs_bytes']} bytes per step")

    rates = env_and_decoder_rates(env, steps, seed)
    results.update(rates)
    log(f"bare decoder: {rates['decoder_calls_per_s']:.1f} calls/s ({rates['decoder_call_ms']:.2f} ms); "
        f"single env: {rates['env_steps_per_s']:.1f} steps/s ({rates['env_step_ms']:.2f} ms); "
        f"env / decoder = {rates['env_over_decoder']:.3f}")

    n_vector = vector_steps if vector_steps is not None else max(2, steps // 4)
    vector: dict[str, float] = {}
    ratios: dict[str, float | None] = {}
    for batch in batches:
        key = str(int(batch))
        timing = vector_step_timing(lambda n: make_vector_env(n, images, cache, **env_kwargs), backend, int(batch),
                                    n_vector, seed)
        vector[key] = int(batch) / timing.step_s
        ratios[key] = timing.env_over_decoder
        log(f"vector env, batch {batch}: {vector[key]:.1f} steps/s (all sub-envs), "
            f"env / decoder = {ratios[key]:.3f}")
    results["vector_steps_per_s"] = vector
    results["env_over_decoder_per_batch"] = ratios
    results["vector_steps"] = n_vector

    device = getattr(backend, "device", None)  # SAM backends have one; weight-free ones do not
    null = backend if stub else NullBackend(device=None if device is None else str(device))
    results["overhead_backend"] = null.description
    results["overhead_us_per_substep"] = overhead_us_per_substep(images, batches, n_vector, seed, env_kwargs,
                                                                 backend=null)
    results["obs_copy_us_per_substep"] = observation_copy_us_per_substep(images, batches, seed, env_kwargs,
                                                                         backend=null)
    for key, value in results["overhead_us_per_substep"].items():
        log(f"env overhead (null backend, a measuring stub), batch {key}: {value:.1f} us per sub-env step "
            f"(copying its observations alone: {results['obs_copy_us_per_substep'][key]:.1f} us)")

    if train_rollouts > 0:
        train = train_env_steps_per_s(images, cache, train_envs, train_n_steps, train_rollouts, seed, env_kwargs,
                                      device=results["device"])
        results.update(train)
        log(f"PPO end to end ({train_envs} envs, {train_rollouts} rollouts of {train_n_steps} steps + updates): "
            f"{train['train_env_steps_per_s']:.1f} env steps/s")
    else:
        results["train_env_steps_per_s"] = None

    if rss_steps > 0:
        memory = rss_growth_pct(env, rss_steps, seed)
        results.update(memory)
        log(f"memory: RSS {memory['rss_start_mb']:.1f} -> {memory['rss_end_mb']:.1f} MB over {rss_steps} steps "
            f"({memory['rss_growth_pct']:+.2f} %, {memory['rss_method']})")
    else:
        results["rss_growth_pct"] = None
    env.close()
    results["gpu_mem_gb"] = gpu_mem_gb()
    if results["gpu_mem_gb"] is not None:
        log(f"GPU memory: {results['gpu_mem_gb']:.2f} GB peak allocated")
    return results
