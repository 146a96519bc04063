"""Throughput measurements of the env, the vector env, training and the backend (``sam-gym bench``).

Every function warms up before it times, synchronises CUDA around GPU timings
(:func:`synchronize`) and times with ``time.perf_counter``. The env is driven with random *valid*
actions (never a repeated patch, so every step runs the decoder) drawn from a seeded generator.
Envs are built through the public API: ``gym.make_vec("SamPrompt-v0", vectorization_mode=
"vector_entry_point")`` and the Stable-Baselines3 adapter :mod:`sam_gym.envs.sb3`.

How the decoder's share is found (:class:`DecoderClock`): the same episodes (same seed, same
actions) run twice. The first pass times the env's steps and nothing else; in the second, every
call the env makes to the backend's decoder (its ``decode*`` methods: ``decode``, ``decode_batch``
or a batched one a backend adds) is timed on its own, with CUDA synchronised around it. The ratio
of the two is the env's cost over the bare decoder's on the very same requests.

What is measured (see ``docs/benchmarks.md`` for the figures and commands):

* ``decoder_calls_per_s`` / ``env_steps_per_s`` / ``env_over_decoder``: one single env; the mean
  step time over the mean time of the decoder calls inside a step.
* ``vector_steps_per_s`` and ``env_over_decoder_per_batch``: the vector env per batch size, all
  sub-envs counted; a vector step is timed with its ``action_masks()`` call (drawing the random
  actions is not timed).
* ``overhead_us_per_substep``: the vector env per batch size with the zero-cost
  :class:`~sam_gym.backends.null.NullBackend` (a measuring stub, not a segmenter): the wall time of
  a vector step divided by the number of sub-envs, i.e. the env's own cost per sub-env step.
* ``train_env_steps_per_s``: sb3-contrib's ``MaskablePPO`` on the batched vector env through the SB3
  adapter, end to end (rollouts and updates), after one untimed warm-up rollout and update.
* ``obs_bytes``: bytes of one single-env observation.
* ``encoder_images_per_s``: ``backend.encode`` on distinct images (no cache).
* ``cache_hit_reset_ms``: ``env.reset`` on images whose embedding is in the memory cache.
* ``cache_bytes_per_image``: bytes of one embedding in the memory cache (on the backend's device).
* ``rss_growth_pct``: resident memory growth over ``rss_steps`` env steps, from after a warm-up.
* ``gpu_mem_gb``: peak CUDA memory allocated by torch over the run (``None`` without CUDA).

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
from dataclasses import dataclass
from types import TracebackType
from typing import Any

import numpy as np

from sam_gym.backends.base import PromptableSegmenter
from sam_gym.data import Sample, SegmentationDataset
from sam_gym.envs.prompt_env import SamPromptEnv
from sam_gym.memory import rss_bytes

__all__ = [
    "REQUIRED_KEYS",
    "DecoderClock",
    "InMemory",
    "VectorTiming",
    "cache_hit_reset_ms",
    "encoder_images_per_s",
    "env_and_decoder_rates",
    "gpu_mem_gb",
    "machine_description",
    "obs_bytes",
    "overhead_us_per_substep",
    "rss_bytes",
    "rss_growth_pct",
    "run_benchmark",
    "synchronize",
    "train_env_steps_per_s",
    "make_vector_env",
    "vector_step_timing",
]

#: Keys that every ``sam-gym bench`` JSON holds.
REQUIRED_KEYS = (
    "decoder_calls_per_s",
    "env_steps_per_s",
    "env_over_decoder",
    "vector_steps_per_s",
    "env_over_decoder_per_batch",
    "overhead_us_per_substep",
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

#: The registered env every measurement builds (its keyword variants come from ``env_kwargs``).
ENV_ID = "SamPrompt-v0"


class InMemory:
    """The first ``n`` samples of a dataset, read once and held, so that no timing includes reading an image.

    Args:
        dataset: Any dataset.
        n: How many of its first samples to hold.
    """

    def __init__(self, dataset: SegmentationDataset, n: int) -> None:
        self.samples = [dataset[i] for i in range(min(int(n), len(dataset)))]
        self.name = f"{dataset.name}[:{len(self.samples)}]"

    def __len__(self) -> int:
        return len(self.samples)

    def __getitem__(self, index: int) -> Sample:
        return self.samples[index]


def synchronize(backend: PromptableSegmenter) -> None:
    """Wait for the backend's CUDA kernels (no-op for CPU and weight-free backends)."""
    device = getattr(backend, "device", None)
    if device is not None and getattr(device, "type", None) == "cuda":
        import torch

        torch.cuda.synchronize(device)


def backend_device(backend: PromptableSegmenter) -> str:
    """The device the backend computes on: its torch device, or ``"cpu"`` (numpy backends)."""
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


def gpu_mem_gb() -> float | None:
    """Peak CUDA memory allocated by torch in this process, in GB (1e9 bytes); ``None`` without CUDA."""
    if "torch" not in sys.modules:
        return None
    import torch

    if not torch.cuda.is_available() or not torch.cuda.is_initialized():
        return None
    return float(torch.cuda.max_memory_allocated()) / 1e9


class DecoderClock:
    """Times the decoder calls that a backend serves while :attr:`active` is set.

    Inside ``with DecoderClock(backend) as clock:`` every ``decode*`` method of the backend (the
    class's, e.g. ``decode`` and ``decode_batch``) is shadowed on the instance by a timed wrapper;
    leaving the block removes the wrappers. Only outermost calls are timed (a ``decode_batch`` that
    loops over ``decode`` counts once), with :func:`synchronize` before and after each.

    Attributes:
        seconds: Total time of the timed calls.
        calls: Number of timed calls.
        active: Whether calls are timed now (set it around the code whose decoder calls count).
    """

    def __init__(self, backend: PromptableSegmenter) -> None:
        self.backend = backend
        self.seconds = 0.0
        self.calls = 0
        self.active = False
        self._depth = 0
        self._names = [name for name in dir(type(backend))
                       if name.startswith("decode") and callable(getattr(type(backend), name))]

    def __enter__(self) -> DecoderClock:
        for name in self._names:
            setattr(self.backend, name, self._timed(getattr(self.backend, name)))
        return self

    def __exit__(self, kind: type[BaseException] | None, value: BaseException | None, tb: TracebackType | None) -> None:
        for name in self._names:
            vars(self.backend).pop(name, None)

    def _timed(self, method: Callable[..., Any]) -> Callable[..., Any]:
        def timed(*args: Any, **kwargs: Any) -> Any:
            if not self.active or self._depth:
                return method(*args, **kwargs)
            self._depth += 1
            try:
                synchronize(self.backend)
                start = time.perf_counter()
                out = method(*args, **kwargs)
                synchronize(self.backend)
                self.seconds += time.perf_counter() - start
                self.calls += 1
            finally:
                self._depth -= 1
            return out

        return timed


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


def _single_pass(env: SamPromptEnv, steps: int, seed: int, clock: DecoderClock | None = None) -> list[float]:
    """Per step: the env step's time (no ``clock``) or the time of its decoder calls (with ``clock``)."""
    backend = env.backend
    driver = _Driver(env, seed)
    times = []
    for _ in range(steps):
        action = driver.action()
        if clock is None:
            synchronize(backend)
            start = time.perf_counter()
            _, _, terminated, truncated, _ = env.step(action)
            synchronize(backend)
            times.append(time.perf_counter() - start)
        else:
            before, clock.active = clock.seconds, True
            _, _, terminated, truncated, _ = env.step(action)
            clock.active = False
            times.append(clock.seconds - before)
        driver.after(terminated, truncated)
    return times


def _check_decoded(clock: DecoderClock, steps: int) -> None:
    if clock.calls < steps:
        raise RuntimeError(f"Expected a decoder call in each of the {steps} steps, saw {clock.calls}: the env "
                           f"decoded outside the backend's decode* methods, or repeated a click")


def env_and_decoder_rates(env: SamPromptEnv, steps: int, seed: int = 0, warmup: int = 5) -> dict[str, float]:
    """Time ``env.step`` and the decoder calls inside it on the same episodes (see the module docstring).

    Args:
        env: A single env (patch or patch_label action mode).
        steps: Timed steps (each one decodes: only valid actions are drawn).
        seed: Seed of the env and of the actions.
        warmup: Untimed steps before each timed pass.

    Returns:
        ``env_step_ms``, ``decoder_call_ms`` (decoder time per step), ``env_steps_per_s``,
        ``decoder_calls_per_s`` and ``env_over_decoder`` (env step time / decoder time).
    """
    _warm(env, warmup, seed + 1)
    env_s = float(np.mean(_single_pass(env, steps, seed)))
    _warm(env, warmup, seed + 2)
    with DecoderClock(env.backend) as clock:
        decoder_s = float(np.mean(_single_pass(env, steps, seed, clock)))
    _check_decoded(clock, steps)
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
        venv.step(_valid_action(venv.action_masks(), rng))
    total = 0.0
    for _ in range(steps):
        if clock is None:
            synchronize(backend)
            start = time.perf_counter()
            masks = venv.action_masks()
            total += time.perf_counter() - start
            actions = _valid_action(masks, rng)
            start = time.perf_counter()
            venv.step(actions)
            synchronize(backend)
            total += time.perf_counter() - start
        else:
            actions = _valid_action(venv.action_masks(), rng)
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
            _check_decoded(clock, steps)
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


def _minibatch(buffer: int, most: int = 256) -> int:
    """The largest divisor of ``buffer`` that is at most ``most`` (a PPO minibatch without a remainder)."""
    return max(d for d in range(1, min(most, buffer) + 1) if buffer % d == 0)


def train_env_steps_per_s(
    dataset: SegmentationDataset, cache: Any, n_envs: int = 8, n_steps: int = 16, rollouts: int = 2,
    seed: int = 0, env_kwargs: dict[str, Any] | None = None, device: str = "cpu", n_epochs: int = 4,
) -> dict[str, Any]:
    """PPO env steps per second, end to end: ``MaskablePPO`` on the batched vector env (SB3 adapter).

    One untimed ``learn`` of a rollout and an update warms up; then ``rollouts`` rollouts of
    ``n_envs * n_steps`` env steps, each followed by its PPO update, are timed.

    Args:
        dataset: The images.
        cache: The embedding cache (its backend is the env's).
        n_envs: Sub-envs of the vector env.
        n_steps: Rollout steps per sub-env.
        rollouts: Timed rollouts (each with its update).
        seed: Seed of the envs and of PPO.
        env_kwargs: Extra env arguments.
        device: Torch device of the PPO policy.
        n_epochs: PPO epochs per update (minibatches of up to 256 steps).

    Returns:
        ``train_env_steps_per_s`` and ``train_settings`` (what was run).

    Raises:
        ImportError: If sb3-contrib is not installed (``pip install "sam-gym[train]"``).
    """
    try:
        from sb3_contrib import MaskablePPO
    except ImportError as exc:
        raise ImportError('The training figure needs sb3-contrib: pip install "sam-gym[train]"') from exc
    from sam_gym.envs.sb3 import make_sb3_vec_env

    venv = make_sb3_vec_env(n_envs, dataset=dataset, cache=cache, **dict(env_kwargs or {}))
    buffer = n_envs * n_steps
    batch_size = _minibatch(buffer)
    settings = {"algorithm": "sb3_contrib.MaskablePPO", "policy": "MultiInputPolicy", "n_envs": n_envs,
                "n_steps": n_steps, "batch_size": batch_size, "n_epochs": n_epochs, "rollouts": rollouts,
                "net_arch": {"pi": [256], "vf": [256]}, "device": device}
    model = MaskablePPO("MultiInputPolicy", venv, n_steps=n_steps, batch_size=batch_size,
                        n_epochs=n_epochs, seed=seed, device=device, verbose=0,
                        policy_kwargs={"net_arch": settings["net_arch"]})
    model.learn(buffer)
    synchronize(cache.backend)
    before = model.num_timesteps
    start = time.perf_counter()
    model.learn(rollouts * buffer, reset_num_timesteps=False)
    synchronize(cache.backend)
    elapsed = time.perf_counter() - start
    venv.close()
    return {"train_env_steps_per_s": (model.num_timesteps - before) / elapsed, "train_settings": settings}


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
    for key, value in results["overhead_us_per_substep"].items():
        log(f"env overhead (null backend, a measuring stub), batch {key}: {value:.1f} us per sub-env step")

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
