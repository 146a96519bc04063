"""Timing the env against its backend's decoder, on one env: the clock, the drivers, CUDA synchronisation.

Part of :mod:`sam_gym.benchmark` (whose docstring says what each figure means).
"""

from __future__ import annotations

import os
import platform
import sys
import time
from collections.abc import Callable
from types import TracebackType
from typing import Any

import numpy as np

from sam_gym.backends.base import PromptableSegmenter
from sam_gym.data import Sample, SegmentationDataset
from sam_gym.envs.prompt_env import SamPromptEnv

__all__ = ["ENV_ID", "DecoderClock", "Driver", "InMemory", "backend_device", "check_decoded", "env_and_decoder_rates",
           "gpu_mem_gb", "machine_description", "synchronize", "valid_action"]


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


def valid_action(masks: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """One random valid action per row of ``masks`` (``(n, n_actions)`` bool); invalid ones never drawn."""
    scores = rng.random(masks.shape)
    scores[~masks] = -1.0
    return scores.argmax(axis=-1)


class Driver:
    """Steps a single env with random valid actions, resetting it at episode end."""

    def __init__(self, env: SamPromptEnv, seed: int) -> None:
        self.env = env
        self.rng = np.random.default_rng(seed)
        env.reset(seed=seed)

    def action(self) -> int:
        """A random valid action of the env's current state."""
        return int(valid_action(self.env.action_masks()[None], self.rng)[0])

    def after(self, terminated: bool, truncated: bool) -> None:
        """Reset the env when the step ended its episode."""
        if terminated or truncated:
            self.env.reset()


def _single_pass(env: SamPromptEnv, steps: int, seed: int,
                 clock: DecoderClock | None = None) -> tuple[list[float], list[float]]:
    """Per step: the env step's seconds and, with ``clock``, the seconds of its decoder calls."""
    backend = env.backend
    driver = Driver(env, seed)
    wall, decoder = [], []
    for _ in range(steps):
        action = driver.action()
        before = 0.0
        if clock is not None:
            before, clock.active = clock.seconds, True
        synchronize(backend)
        start = time.perf_counter()
        _, _, terminated, truncated, _ = env.step(action)
        synchronize(backend)
        wall.append(time.perf_counter() - start)
        if clock is not None:
            clock.active = False
            decoder.append(clock.seconds - before)
        driver.after(terminated, truncated)
    return wall, decoder


def check_decoded(clock: DecoderClock, steps: int) -> None:
    """Raise if the clock saw fewer decoder calls than steps (the measurement would not be of the decoder)."""
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
        ``env_step_ms`` (the pass without the clock), ``decoder_call_ms`` (decoder time per step),
        ``env_steps_per_s``, ``decoder_calls_per_s`` and ``env_over_decoder`` (the median over the
        clocked pass's steps of each step's time over its own decoder calls' time).
    """
    _warm(env, warmup, seed + 1)
    env_s = float(np.mean(_single_pass(env, steps, seed)[0]))
    _warm(env, warmup, seed + 2)
    with DecoderClock(env.backend) as clock:
        clocked, decoded = _single_pass(env, steps, seed, clock)
    check_decoded(clock, steps)
    decoder_s = float(np.mean(decoded))
    return {
        "env_step_ms": 1e3 * env_s,
        "decoder_call_ms": 1e3 * decoder_s,
        "env_steps_per_s": 1.0 / env_s,
        "decoder_calls_per_s": 1.0 / decoder_s,
        "env_over_decoder": float(np.median(np.divide(clocked, decoded))),
    }


def _warm(env: SamPromptEnv, steps: int, seed: int) -> None:
    driver = Driver(env, seed)
    for _ in range(steps):
        _, _, terminated, truncated, _ = env.step(driver.action())
        driver.after(terminated, truncated)
