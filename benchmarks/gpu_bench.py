"""Every GPU figure of issue 14 in one run, written as one JSON (driven by ``benchmarks/gpu.sh``).

Measured, through the env's public API and the helpers of :mod:`sam_gym.benchmark`:

* ``decoders``: for SAM ViT-B and MobileSAM ViT-T (random weights: their decoder costs what a trained
  one does; bf16 on CUDA), per batch size (1, 64, 256, 1024): vector-env steps per second, the bare
  decoder's prompts per second on the same episodes, ``env_over_decoder`` (the median over steps of
  a step's time over its own decoder calls', :func:`sam_gym.benchmark.vector_step_timing`) and the
  env's share in percent; with each model's ``cache_bytes_per_image``.
* ``overhead_us_per_substep``: the env alone per sub-env step at the same batches, with the zero-cost
  ``null`` backend (a measuring stub, NOT a segmenter) on the same device.
* ``train``: sb3-contrib ``MaskablePPO`` end to end (rollouts and updates) on 256 envs, ViT-B.
* ``full_iou``: the default ``info_iou="full"`` at batch 256 (ViT-B): ``env_over_decoder`` with the
  full-resolution IoU of every sub-env every step, and how many of those IoUs (two steps) differ
  from :func:`sam_gym.metrics.iou` of the mask computed on the host (must be 0).
* ``memory``: resident and GPU memory before and after 10,000 env steps (batch 256, ViT-B).
* ``obs_bytes``, ``gpu_mem_gb`` (peak allocated over the run), the machine, settings and timings.

``--device cpu --tiny`` runs the same code on the CPU with a tiny random SAM
(:func:`sam_gym.testing.tiny_sam_backend`) and small sizes, in seconds: the test suite checks the
script that way (``tests/test_gpu_bench.py``). Its figures only show that the script works.

Usage::

    bash benchmarks/gpu.sh --out gpu-bench.json                  # on the GPU machine
    python benchmarks/gpu_bench.py --device cpu --tiny --out x.json
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path
from typing import Any

import numpy as np

from sam_gym.backends.base import PromptableSegmenter
from sam_gym.benchmark import (
    InMemory,
    gpu_mem_gb,
    machine_description,
    make_vector_env,
    obs_bytes,
    overhead_us_per_substep,
    rss_bytes,
    synchronize,
    train_env_steps_per_s,
    vector_step_timing,
)
from sam_gym.cache import EmbeddingCache
from sam_gym.data import make_dataset
from sam_gym.envs import SamPromptEnv

#: Sizes of a full (GPU) run and of ``--tiny`` (CPU check).
FULL = {"batches": [1, 64, 256, 1024], "steps": 20, "warmup": 3, "models": ["vit_b", "vit_t"], "train_envs": 256,
        "train_n_steps": 16, "train_rollouts": 3, "memory_batch": 256, "memory_env_steps": 10_000,
        "full_iou_batch": 256}
TINY = {"batches": [1, 4], "steps": 2, "warmup": 1, "models": ["tiny"], "train_envs": 4, "train_n_steps": 4,
        "train_rollouts": 1, "memory_batch": 4, "memory_env_steps": 40, "full_iou_batch": 4}
#: Training setting of the env: the +/-1 reward needs no per-step full-resolution IoU.
ENV_KWARGS = {"info_iou": "none"}


def _backend(model: str, device: str) -> PromptableSegmenter:
    if model == "tiny":
        from sam_gym.testing import tiny_sam_backend

        return tiny_sam_backend(device=device)
    from sam_gym.backends.sam import SamBackend

    return SamBackend(model_type=model, checkpoint="random", device=device, half=device.startswith("cuda"))


def _decoder_figures(backend: PromptableSegmenter, images: Any, sizes: dict[str, Any]) -> dict[str, Any]:
    cache = EmbeddingCache(backend, max_items=64)
    per_batch = {}
    for batch in sizes["batches"]:
        timing = vector_step_timing(lambda n: make_vector_env(n, images, cache, **ENV_KWARGS), backend, batch,
                                    sizes["steps"], warmup=sizes["warmup"])
        step_s, decoder_s, ratio = timing.step_s, float(timing.decoder_s or 0.0), float(timing.env_over_decoder or 0.0)
        per_batch[str(batch)] = {
            "env_steps_per_s": batch / step_s,
            "decoder_prompts_per_s": batch / decoder_s,
            "env_over_decoder": ratio,  # median per step of its time over its decoder calls' (same step)
            "env_overhead_pct": 100.0 * (ratio - 1.0) / ratio,
            "vector_step_ms": 1e3 * step_s,
        }
        print(f"  batch {batch}: {per_batch[str(batch)]['env_steps_per_s']:.0f} env steps/s, env / decoder = "
              f"{per_batch[str(batch)]['env_over_decoder']:.3f}", flush=True)
    return {"backend": backend.description, "per_batch": per_batch,
            "cache_bytes_per_image": int(cache.nbytes // max(1, len(cache)))}


def _memory(backend: PromptableSegmenter, images: Any, batch: int, env_steps: int) -> dict[str, Any]:
    """RSS and GPU memory after a warm-up and after ``env_steps`` more env steps (all sub-envs counted)."""
    import torch

    cuda = getattr(backend, "device", None) is not None and backend.device.type == "cuda"
    venv = make_vector_env(batch, images, EmbeddingCache(backend, max_items=64), **ENV_KWARGS)
    rng = np.random.default_rng(0)
    venv.reset(seed=0)

    def run(vector_steps: int) -> None:
        for _ in range(vector_steps):
            masks = venv.action_masks()
            scores = rng.random(masks.shape)
            scores[~masks] = -1.0
            venv.step(scores.argmax(axis=-1))
        synchronize(backend)

    run(max(2, env_steps // batch // 10))
    start_rss, method = rss_bytes()
    start_gpu = torch.cuda.memory_allocated(backend.device) if cuda else None
    vector_steps = max(1, env_steps // batch)
    run(vector_steps)
    end_rss, _ = rss_bytes()
    end_gpu = torch.cuda.memory_allocated(backend.device) if cuda else None
    venv.close()
    return {"env_steps": vector_steps * batch, "batch": batch, "rss_start_mb": start_rss / 2**20,
            "rss_end_mb": end_rss / 2**20, "rss_method": method,
            "gpu_allocated_start_gb": None if start_gpu is None else start_gpu / 1e9,
            "gpu_allocated_end_gb": None if end_gpu is None else end_gpu / 1e9}


def _full_iou(backend: PromptableSegmenter, images: Any, sizes: dict[str, Any]) -> dict[str, Any]:
    """The default ``info_iou="full"`` at one batch: its per-step ratio, and its IoUs checked against ``metrics.iou``.

    The IoU of every sub-env's mask comes from one ``best_mask_ious`` call per step (batched on the
    device on CUDA); each is compared with :func:`sam_gym.metrics.iou` of the episode's mask
    computed on the host, sub-env by sub-env, over two steps.
    """
    from sam_gym.metrics import iou

    batch = sizes["full_iou_batch"]
    cache = EmbeddingCache(backend, max_items=64)
    timing = vector_step_timing(lambda n: make_vector_env(n, images, cache, info_iou="full"), backend, batch,
                                sizes["steps"], warmup=sizes["warmup"])
    venv = make_vector_env(batch, images, cache, info_iou="full")
    rng = np.random.default_rng(0)
    _, info = venv.reset(seed=0)
    checked = mismatched = 0
    for _ in range(2):
        info = venv.step(rng.integers(0, venv.single_action_space.n, size=batch))[4]
        for i, env in enumerate(venv.envs):
            if info["_iou"][i]:
                view = env.episode_view()
                checked += 1
                mismatched += int(info["iou"][i] != iou(view.mask, view.sample.target, view.sample.void))
    venv.close()
    return {"batch": batch, "env_over_decoder": timing.env_over_decoder, "vector_step_ms": 1e3 * timing.step_s,
            "ious_checked": checked, "ious_unequal_to_metrics_iou": mismatched}


def _write(out: Path, results: dict[str, Any]) -> None:
    """Write the results so far (after every section: a run stopped by its time limit keeps what it measured)."""
    out.parent.mkdir(parents=True, exist_ok=True)
    tmp = out.with_name(out.name + ".tmp")
    tmp.write_text(json.dumps(results, indent=2) + "\n")
    tmp.replace(out)


def run(device: str, tiny: bool, out: Path) -> dict[str, Any]:
    """Measure every figure and write the JSON to ``out`` (after each section); return the results."""
    import torch

    started = time.perf_counter()
    sizes = TINY if tiny else FULL
    images = InMemory(make_dataset("synthetic-shapes"), 4)
    results: dict[str, Any] = {"device": device, "tiny": tiny, "sizes": sizes, "env_kwargs": ENV_KWARGS,
                               "dataset": images.name, "date": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
                               "weights": "random (decoder cost as trained; masks meaningless)", "seconds": {},
                               "complete": False}
    if device.startswith("cuda"):
        torch.backends.cuda.matmul.allow_tf32 = True
        torch.backends.cudnn.allow_tf32 = True

    results["decoders"] = {}
    backends = {}
    for model in sizes["models"]:
        t0 = time.perf_counter()
        backends[model] = backend = _backend(model, device)
        print(f"{model}: {backend.description} on {device}", flush=True)
        results["decoders"][model] = _decoder_figures(backend, images, sizes)
        results["seconds"][model] = time.perf_counter() - t0
        _write(out, results)
    first = backends[sizes["models"][0]]
    results["machine"] = machine_description(first)
    results["obs_bytes"] = obs_bytes(SamPromptEnv(dataset=images, cache=EmbeddingCache(first), **ENV_KWARGS))

    t0 = time.perf_counter()
    from sam_gym.backends.null import NullBackend

    null = NullBackend(device=device)
    results["overhead_backend"] = null.description
    results["overhead_us_per_substep"] = overhead_us_per_substep(images, sizes["batches"], sizes["steps"],
                                                                 env_kwargs=ENV_KWARGS, backend=null,
                                                                 warmup=sizes["warmup"])
    print(f"null-backend overhead, us per sub-env step: {results['overhead_us_per_substep']}", flush=True)
    results["seconds"]["overhead"] = time.perf_counter() - t0
    _write(out, results)

    t0 = time.perf_counter()
    results["full_iou"] = _full_iou(first, images, sizes)
    print(f"info_iou='full': {results['full_iou']}", flush=True)
    results["seconds"]["full_iou"] = time.perf_counter() - t0
    _write(out, results)

    t0 = time.perf_counter()
    train = train_env_steps_per_s(images, EmbeddingCache(first, max_items=64), sizes["train_envs"],
                                  sizes["train_n_steps"], sizes["train_rollouts"], env_kwargs=ENV_KWARGS,
                                  device=device)
    results["train"] = {"backend": first.description, **train}
    print(f"PPO end to end, {sizes['train_envs']} envs: {train['train_env_steps_per_s']:.0f} env steps/s", flush=True)
    results["seconds"]["train"] = time.perf_counter() - t0
    _write(out, results)

    t0 = time.perf_counter()
    results["memory"] = _memory(first, images, sizes["memory_batch"], sizes["memory_env_steps"])
    print(f"memory: {results['memory']}", flush=True)
    results["seconds"]["memory"] = time.perf_counter() - t0

    results["gpu_mem_gb"] = gpu_mem_gb()
    results["seconds"]["total"] = time.perf_counter() - started
    results["complete"] = True
    _write(out, results)
    print(f"wrote {out} in {results['seconds']['total']:.0f} s", flush=True)
    return results


def main(argv: list[str] | None = None) -> int:
    """Parse the arguments and run."""
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--device", default="cuda", help="torch device (default: %(default)s)")
    parser.add_argument("--tiny", action="store_true", help="tiny random SAM and small sizes (a CPU check)")
    parser.add_argument("--out", type=Path, default=Path("gpu-bench.json"), help="JSON file to write")
    args = parser.parse_args(argv)
    run(args.device, args.tiny, args.out)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
