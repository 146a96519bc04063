"""AoP-SAM efficiency: prompts, prompt-generation latency, peak memory and greedy-matched mIoU vs point grids.

Protocol (AoP-SAM's automatic evaluation): a Prompt Predictor is trained first on seeded synthetic
multi-instance scenes (``MultiInstanceScenes(seed=0)``, never the test images), then on every test
image AoP-SAM (:func:`agents.aop.sampling.generate_masks`: confidence map, Adaptive Sampling and
Filtering, each surviving prompt decoded alone) and SAM-AMG-style ``G x G`` point grids (every grid
point decoded alone, ``multimask=True``, the best-score proposal kept, no further filtering) produce
masks; each method's masks are matched one-to-one to all ground-truth instances of the image with
:func:`sam_gym.metrics.greedy_iou_matching` (mIoU over instances, 0 for an unmatched one).

Test sets: synthetic scenes (seed 100), ``../shared/data/VOC-instances`` (instances grouped by
image), ``../shared/data/COCO_MVal`` (one instance per mask; masks grouped by the image number in
the file name, so most images have a single annotated instance and extra correct masks of
unannotated objects are not rewarded or penalised).

Reported per method: prompts decoded per image, prompt-generation latency (AoP: predictor + sampling
+ decoding with filtering; grid: decoding), decoder calls, peak memory (``tracemalloc``: Python and
numpy allocations only, torch CPU tensors are not counted; ``torch.cuda.max_memory_allocated`` when
the backend runs on CUDA), and mIoU. The backend is named in every row; ``classical`` is the
weight-free default, **not SAM**; ``--backend sam_vit_b --checkpoint random`` gives untrained SAM.

Usage::

    python benchmarks/aop_efficiency.py --backend classical --grids 8 16 --limit 4
"""

from __future__ import annotations

import argparse
import json
import time
import tracemalloc
from collections.abc import Callable
from typing import Any

import numpy as np

from agents.aop.predictor import train_predictor
from agents.aop.sampling import ASFConfig, generate_masks
from sam_gym.backends import make_backend
from sam_gym.data import make_dataset, shared_data_dir
from sam_gym.data.scenes import MultiInstanceScenes, Scene, group_scenes
from sam_gym.metrics import greedy_iou_matching
from sam_gym.reporting import markdown_table


def grid_masks(backend: Any, embedding: Any, image_size: tuple[int, int], side: int) -> list[np.ndarray]:
    """Decode every point of a ``side x side`` grid (cell centres, image ``(x, y)``) alone; best proposal each."""
    height, width = image_size
    masks = []
    for r in range(side):
        for c in range(side):
            point = np.array([[(c + 0.5) * width / side, (r + 0.5) * height / side]], dtype=np.float32)
            masks.append(backend.decode(embedding, point, np.array([1]), multimask=True).mask())
    return masks


def measure(fn: Callable[[], Any], cuda: bool) -> tuple[Any, float, float]:
    """Run ``fn`` and return ``(result, seconds, peak MiB)``."""
    import torch

    if cuda:
        torch.cuda.reset_peak_memory_stats()
    tracemalloc.start()
    start = time.perf_counter()
    out = fn()
    seconds = time.perf_counter() - start
    _, peak = tracemalloc.get_traced_memory()
    tracemalloc.stop()
    if cuda:
        peak = torch.cuda.max_memory_allocated()
    return out, seconds, peak / 2**20


def test_sets(limit: int) -> dict[str, list[Scene]]:
    """The synthetic scenes and the shared benchmark folders that are present."""
    sets = {"synthetic (seed 100)": MultiInstanceScenes(n=limit, seed=100).scenes()}
    root = shared_data_dir()
    for name in ("VOC-instances", "COCO_MVal"):
        if root is not None and (root / name).is_dir():
            sets[name] = group_scenes(make_dataset(root / name))[:limit]
    return sets


def main() -> None:
    """Train, run every method on every test set, print a JSON line per row and a Markdown table."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--backend", default="classical")
    parser.add_argument("--checkpoint", default=None, help="SAM weights ('random' for untrained SAM)")
    parser.add_argument("--train-scenes", type=int, default=24)
    parser.add_argument("--epochs", type=int, default=40)
    parser.add_argument("--grids", type=int, nargs="+", default=[16, 32])
    parser.add_argument("--limit", type=int, default=4, help="images per test set")
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args()
    backend = make_backend(args.backend, checkpoint=args.checkpoint)
    cuda = getattr(getattr(backend, "device", None), "type", "cpu") == "cuda"
    start = time.perf_counter()
    predictor, losses = train_predictor(backend, MultiInstanceScenes(n=args.train_scenes, seed=args.seed).scenes(),
                                        epochs=args.epochs, seed=args.seed)
    print(json.dumps({"trained": f"{args.train_scenes} synthetic scenes seed {args.seed}", "epochs": args.epochs,
                      "loss": [round(losses[0], 4), round(losses[-1], 4)],
                      "seconds": round(time.perf_counter() - start, 1)}), flush=True)
    rows = []
    for set_name, scenes in test_sets(args.limit).items():
        stats: dict[str, list[tuple[float, float, float, float]]] = {}
        for scene in scenes:
            embedding = backend.encode(scene.image)
            size = scene.image.shape[:2]
            result, sec, mib = measure(lambda s=scene, e=embedding: generate_masks(predictor, backend, s.image, e,
                                                                                   ASFConfig()), cuda)
            miou = greedy_iou_matching(result.masks, scene.masks)[0] if result.masks else 0.0
            stats.setdefault("AoP (ASF)", []).append((len(result.prompts), sec, mib, miou))
            for side in args.grids:
                masks, sec, mib = measure(lambda e=embedding, z=size, g=side: grid_masks(backend, e, z, g), cuda)
                stats.setdefault(f"grid {side}x{side}", []).append(
                    (side * side, sec, mib, greedy_iou_matching(masks, scene.masks)[0]))
        for method, values in stats.items():
            arr = np.asarray(values, dtype=np.float64)
            row = {"dataset": set_name, "images": len(scenes), "instances": sum(len(s.masks) for s in scenes),
                   "method": method, "prompts": round(float(arr[:, 0].mean()), 1),
                   "seconds": round(float(arr[:, 1].mean()), 3), "peak_mib": round(float(arr[:, 2].max()), 1),
                   "miou": round(float(arr[:, 3].mean()), 3), "backend": backend.description,
                   "memory": "torch.cuda" if cuda else "tracemalloc (numpy/Python; not torch CPU)"}
            rows.append(row)
            print(json.dumps(row), flush=True)
    print()
    print(markdown_table([[r[k] for k in ("dataset", "method", "images", "prompts", "seconds", "peak_mib", "miou")]
                          for r in rows],
                         ["dataset", "method", "images", "prompts/img", "s/img", "peak MiB", "mIoU (greedy)"]))
    print(f"\nbackend: {backend.description}")


if __name__ == "__main__":
    main()
