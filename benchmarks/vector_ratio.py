"""Vector env step vs N single envs, classical backend, on the CPU: one run, printed ratios.

``python benchmarks/vector_ratio.py``: for batch 1, 8 and 64, the wall time per sub-env step of a
:class:`~sam_gym.envs.vector_env.SamPromptVectorEnv` and of ``N`` :class:`~sam_gym.envs.SamPromptEnv`
stepped one after the other (same data, same cached embeddings, ``info_iou="none"``), and their
ratio. Results are in ``docs/benchmarks.md``.
"""

from __future__ import annotations

import time

import numpy as np

from sam_gym.backends import make_backend
from sam_gym.cache import EmbeddingCache
from sam_gym.data import make_dataset
from sam_gym.envs import SamPromptEnv
from sam_gym.envs.vector_env import SamPromptVectorEnv


def main() -> None:
    """Print the per-sub-env step time of the vector env and of N single envs, and their ratio."""
    data = make_dataset("synthetic-clutter")
    cache = EmbeddingCache(make_backend("classical"), max_items=len(data))
    for i in range(len(data)):  # every embedding cached before timing
        cache.get(data[i].image)
    for n in (1, 8, 64):
        steps = 40 if n < 64 else 12
        vector = SamPromptVectorEnv(n, dataset=data, cache=cache, info_iou="none")
        singles = [SamPromptEnv(dataset=data, cache=cache, info_iou="none") for _ in range(n)]
        vector.reset(seed=0)
        for i, env in enumerate(singles):
            env.reset(seed=i)
        actions = np.random.default_rng(0).integers(0, 100, size=(steps, n))
        start = time.perf_counter()
        for batch in actions:
            vector.step(batch)
        vector_s = time.perf_counter() - start
        start = time.perf_counter()
        for batch in actions:
            for env, action in zip(singles, batch.tolist(), strict=True):
                _, _, terminated, truncated, _ = env.step(action)
                if terminated or truncated:
                    env.reset()
        single_s = time.perf_counter() - start
        print(f"batch {n:3d}: vector {1e6 * vector_s / (steps * n):8.0f} us/sub-step, {n} single envs "
              f"{1e6 * single_s / (steps * n):8.0f} us/step, ratio vector/single {vector_s / single_s:.3f}")


if __name__ == "__main__":
    main()
