"""Throughput measurements of the env, the vector env, training and the backend (``sam-gym bench``).

Every function warms up before it times, synchronises CUDA around GPU timings
(:func:`synchronize`) and times with ``time.perf_counter``. The env is driven with random *valid*
actions (never a repeated patch, so every step runs the decoder) drawn from a seeded generator.
Envs are built through the public API: ``gym.make_vec("SamPrompt-v0", vectorization_mode=
"vector_entry_point")`` and the Stable-Baselines3 adapter :mod:`sam_gym.envs.sb3`.

How the decoder's share is found (:class:`DecoderClock`): the same episodes (same seed, same
actions) run twice. The first pass times the env's steps and nothing else (the rates). In the
second, each step is timed whole and, inside it, every call the env makes to the backend's decoder
(its ``decode*`` methods: ``decode``, ``decode_batch`` or a batched one a backend adds) on its own,
with CUDA synchronised around it. ``env_over_decoder`` is the median over that pass's steps of a
step's time over its own decoder calls' time: the env's cost over the bare decoder's on the very
same requests, in the same moment (a ratio of two passes seconds apart moves with the machine's
load by more than the few percent it measures).

What is measured (see ``docs/benchmarks.md`` for the figures and commands):

* ``decoder_calls_per_s`` / ``env_steps_per_s`` / ``env_over_decoder``: one single env; the
  ratio is the median per-step one described above.
* ``vector_steps_per_s`` and ``env_over_decoder_per_batch``: the vector env per batch size, all
  sub-envs counted; a vector step is timed with its ``action_masks()`` call (drawing the random
  actions is not timed).
* ``overhead_us_per_substep``: the vector env per batch size with the zero-cost
  :class:`~sam_gym.backends.null.NullBackend` (a measuring stub, not a segmenter, whose batched
  ``decode_batch`` / ``observe_batch`` do no per-item work): the wall time of a vector step, with
  its ``action_masks()`` call, divided by the number of sub-envs, i.e. the env's own cost per
  sub-env step. Everything a step returns is included: the new observation batch (about 107 KB a
  sub-env, written once), the batched info dict, and the episodes' resets (one per ``max_clicks``
  steps: drawing the sample and initial prompts, the cache look-up by image hash). With the
  default ``info_iou="full"`` it includes the full-resolution IoU of every step; ``--info-iou
  none`` (the training setting, what ``benchmarks/gpu.sh`` measures) leaves it to episode ends.
* ``obs_copy_us_per_substep``: per batch size, the time to copy one step's observation batch once,
  per sub-env: the floor under ``overhead_us_per_substep`` that this machine's memory bandwidth
  sets for any env that hands out new observation arrays.
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

Modules: :mod:`~sam_gym.benchmark.timing` (the decoder clock, one env), :mod:`~sam_gym.benchmark.vector`
(the vector env, the overhead alone), :mod:`~sam_gym.benchmark.training` (PPO end to end),
:mod:`~sam_gym.benchmark.footprint` (sizes, encoder, cache, memory) and :mod:`~sam_gym.benchmark.run`
(:func:`run_benchmark`, the whole ``sam-gym bench``); every public name is importable from here.
"""

from __future__ import annotations

from sam_gym.benchmark.footprint import cache_hit_reset_ms, encoder_images_per_s, obs_bytes, rss_growth_pct
from sam_gym.benchmark.run import REQUIRED_KEYS, run_benchmark
from sam_gym.benchmark.timing import (
    DecoderClock,
    InMemory,
    env_and_decoder_rates,
    gpu_mem_gb,
    machine_description,
    synchronize,
)
from sam_gym.benchmark.training import train_env_steps_per_s
from sam_gym.benchmark.vector import (
    VectorTiming,
    make_vector_env,
    observation_copy_us_per_substep,
    overhead_us_per_substep,
    vector_step_timing,
)
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
    "make_vector_env",
    "obs_bytes",
    "observation_copy_us_per_substep",
    "overhead_us_per_substep",
    "rss_bytes",
    "rss_growth_pct",
    "run_benchmark",
    "synchronize",
    "train_env_steps_per_s",
    "vector_step_timing",
]
