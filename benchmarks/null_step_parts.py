"""Where the null-backend vector step's time goes, on the CPU: one run, printed per sub-env step.

``python benchmarks/null_step_parts.py [--info-iou none|full] [--batch 256]``: the vector env of
``sam-gym bench``'s overhead figure (null backend, a measuring stub and NOT a segmenter, the
benchmark's in-memory ``synthetic-shapes`` images, default env) stepped 150 times with random valid
actions after 5 warm-up steps, with the wall time of its main methods summed (a method's time
includes the methods it calls), in microseconds per sub-env step. Then one reset's parts, over
2,000 draws: ``draw_episode`` whole, the ``gt_pair`` initial-prompt draw, the image hash of the
cache key and ``check_sample``. Results are in ``docs/benchmarks.md``.
"""

from __future__ import annotations

import argparse
import functools
import time
import timeit
from collections import Counter
from typing import Any

import numpy as np

from sam_gym.backends.null import NullBackend
from sam_gym.benchmark import InMemory, make_vector_env
from sam_gym.benchmark.timing import valid_action
from sam_gym.cache import EmbeddingCache
from sam_gym.data import check_sample, make_dataset
from sam_gym.data.hashing import image_hash
from sam_gym.envs import SamPromptEnv, core, vector_env
from sam_gym.grid import PatchGrid

#: (class, method) pairs whose time is summed.
TIMED = [(core.EpisodeCore, name) for name in ("observe", "prepare_clicks", "finish_clicks", "finish_start")] + [
    (vector_env.SamPromptVectorEnv, name) for name in ("step", "_decode_batches", "_merge_infos")] + [
    (SamPromptEnv, "draw_episode")]


def _timed(totals: Counter[str], name: str, method: Any) -> Any:
    @functools.wraps(method)
    def timed(*args: Any, **kwargs: Any) -> Any:
        start = time.perf_counter()
        try:
            return method(*args, **kwargs)
        finally:
            totals[name] += time.perf_counter() - start

    return timed


def main() -> None:
    """Print the per-method and per-reset-part times."""
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--info-iou", default="none", choices=("none", "full"))
    parser.add_argument("--batch", type=int, default=256)
    args = parser.parse_args()
    images = InMemory(make_dataset("synthetic-shapes"), 4)
    cache = EmbeddingCache(NullBackend(), max_items=64)
    totals: Counter[str] = Counter()
    originals = [(cls, name, getattr(cls, name)) for cls, name in TIMED]
    for cls, name, method in originals:
        setattr(cls, name, _timed(totals, name, method))
    try:
        venv = make_vector_env(args.batch, images, cache, info_iou=args.info_iou)
        rng = np.random.default_rng(0)
        venv.reset(seed=0)
        for _ in range(5):
            venv.step(valid_action(venv.action_masks(), rng))
        totals.clear()
        steps = 150
        start = time.perf_counter()
        for _ in range(steps):
            venv.step(valid_action(venv.action_masks(), rng))
        whole = time.perf_counter() - start
    finally:
        for cls, name, method in originals:
            setattr(cls, name, method)
    scale = 1e6 / steps / args.batch
    print(f"batch {args.batch}, info_iou={args.info_iou!r}: {whole * scale:.1f} us per sub-env step "
          "(with the random actions)")
    for name, seconds in totals.most_common():
        print(f"  {name:16s} {seconds * scale:6.2f} us")

    env = SamPromptEnv(dataset=images, cache=cache)
    env.reset(seed=0)
    sample = images[0]
    grid = PatchGrid(env.rows, env.cols, *sample.target.shape)
    embedding = cache.get(sample.image)

    def per_call(fn: Any) -> float:
        return 1e6 * min(timeit.repeat(fn, number=2000, repeat=3)) / 2000

    print("one reset, us: draw_episode {:.0f}; gt_pair draw {:.0f}; image hash {:.0f}; check_sample {:.0f}".format(
        per_call(env.draw_episode), per_call(lambda: env._initial_prompts(sample, grid, embedding, 0)),
        per_call(lambda: image_hash(sample.image)), per_call(lambda: check_sample(sample, "sample"))))


if __name__ == "__main__":
    main()
