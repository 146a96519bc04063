"""AoP-SAM efficiency: prompts, latency, peak memory and greedy-matched mIoU vs point grids and SAM's AMG.

Protocol (AoP-SAM's automatic evaluation, its Table 1): a Prompt Predictor is trained first on seeded
synthetic multi-instance scenes (``MultiInstanceScenes(seed=0)``, never the test images), then on
every test image each method produces masks, and they are matched one-to-one to all ground-truth
instances of the image with :func:`sam_gym.metrics.greedy_iou_matching` (mIoU over instances, 0 for an
unmatched one). Methods:

* ``AoP (ASF)``: :func:`agents.aop.sampling.generate_masks` (confidence map, Adaptive Sampling and
  Filtering, each surviving prompt decoded alone) with the paper's settings (:class:`ASFConfig`);
* ``grid GxG``: every point of a ``G x G`` grid decoded alone (``multimask=True``, the best-score
  proposal kept) with no filtering; runs on every backend;
* ``AMG-S`` / ``AMG-D`` (SAM backends only): segment-anything's own ``SamAutomaticMaskGenerator`` on
  the backend's model (``SamBackend.model``) with a sparse ``16 x 16`` / dense ``32 x 32`` point grid,
  the paper's AMG_S / AMG_D, and SAM's own filters at SAM's defaults: predicted IoU >= 0.88,
  stability score >= 0.95, box NMS at 0.7, one crop (``crop_n_layers = 0``; ``--amg-crop-layers``
  adds SAM's crop layers with their crop NMS). Points are decoded 64 per batch, SAM's default.

Test sets: synthetic scenes (seed 100), ``../shared/data/VOC-instances`` (instances grouped by
image), ``../shared/data/COCO_MVal`` (one instance per mask; masks grouped by the image number in
the file name, so most images have a single annotated instance and extra correct masks of
unannotated objects are not rewarded or penalised).

Reported per method: prompts per image (AMG: grid points of every crop), masks kept, latency per
image *without* the image encoder (AoP: predictor + sampling + decoding with filtering; grid:
decoding; AMG: ``generate`` minus the time of its own ``set_image`` calls, which re-encode the image
and every crop), encoder passes, peak memory (``tracemalloc``: Python and numpy allocations only,
torch CPU tensors are not counted; ``torch.cuda.max_memory_allocated`` when the backend runs on
CUDA), and mIoU. The backend is named in every row; ``classical`` is the weight-free default, **not
SAM**; ``--backend sam_vit_b --checkpoint random`` gives untrained SAM (its AMG filters remove almost
every mask; ``--amg-pred-iou 0 --amg-stability 0`` turns them off).

Usage::

    python benchmarks/aop_efficiency.py --backend classical --grids 8 16 --limit 4
    python benchmarks/aop_efficiency.py --backend sam_vit_b --checkpoint PATH --grids 16 32
"""

from __future__ import annotations

import argparse
import json
import time
import tracemalloc
from collections.abc import Callable
from dataclasses import dataclass
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


#: The paper's AMG rows: name -> points per side (AoP-SAM Table 1: sparse and dense grids).
AMG_ROWS = {"AMG-S": 16, "AMG-D": 32}


@dataclass(frozen=True)
class AMGSettings:
    """``SamAutomaticMaskGenerator`` settings (defaults: segment-anything's own).

    Attributes:
        pred_iou_thresh: Keep masks whose predicted IoU is at least this.
        stability_score_thresh: Keep masks whose stability score is at least this.
        box_nms_thresh: Box IoU above which NMS removes the lower-scoring mask.
        crop_n_layers: Crop layers (0: the whole image only).
        points_per_batch: Points decoded per mask-decoder call.
    """

    pred_iou_thresh: float = 0.88
    stability_score_thresh: float = 0.95
    box_nms_thresh: float = 0.7
    crop_n_layers: int = 0
    points_per_batch: int = 64


def amg_masks(backend: Any, image: np.ndarray, points_per_side: int,
              settings: AMGSettings | None = None) -> tuple[list[np.ndarray], int, float]:
    """Run segment-anything's ``SamAutomaticMaskGenerator`` on ``backend``'s model.

    Args:
        backend: A float32 :class:`~sam_gym.backends.sam.SamBackend` (its public ``model``).
        image: ``(H, W, 3)`` uint8 RGB.
        points_per_side: Grid side (16: AMG-S, 32: AMG-D).
        settings: The generator's filters; SAM's defaults when ``None``.

    Returns:
        ``(masks, encoder_passes, encoder_seconds)``: the kept ``(H, W)`` bool masks, how many
        images (the whole image and every crop) the generator encoded, and the time they took.

    Raises:
        ValueError: For a backend that is not SAM, or one running in bf16 (``SamPredictor`` feeds
            float32 images).
    """
    import torch
    from segment_anything import SamAutomaticMaskGenerator

    if not getattr(backend, "is_sam", False):
        raise ValueError(f"Expected a SAM backend for the AMG rows, got {backend.name}")
    if backend.dtype != torch.float32:
        raise ValueError(f"Expected a float32 SAM backend for the AMG rows, got {backend.description}")
    settings = settings or AMGSettings()
    generator = SamAutomaticMaskGenerator(
        backend.model, points_per_side=points_per_side, points_per_batch=settings.points_per_batch,
        pred_iou_thresh=settings.pred_iou_thresh, stability_score_thresh=settings.stability_score_thresh,
        box_nms_thresh=settings.box_nms_thresh, crop_n_layers=settings.crop_n_layers)
    encoder = {"passes": 0, "seconds": 0.0}
    set_image = generator.predictor.set_image

    def timed_set_image(*args: Any, **kwargs: Any) -> None:
        start = time.perf_counter()
        set_image(*args, **kwargs)
        encoder["passes"] += 1
        encoder["seconds"] += time.perf_counter() - start

    generator.predictor.set_image = timed_set_image  # type: ignore[method-assign]
    records = generator.generate(image)
    return [np.asarray(r["segmentation"], dtype=bool) for r in records], int(encoder["passes"]), encoder["seconds"]


def amg_prompts(points_per_side: int, crop_n_layers: int) -> int:
    """Grid points the generator decodes over all crops (SAM: layer ``i`` has ``4**i`` crops, same grid)."""
    return sum(4**layer for layer in range(crop_n_layers + 1)) * points_per_side**2


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


#: One image's figures of one method: prompts, masks kept, seconds (no encoder), encoder passes, peak MiB, mIoU.
Figures = tuple[float, float, float, float, float, float]


def run_methods(backend: Any, predictor: Any, scene: Scene, embedding: Any, grids: list[int],
                amg: AMGSettings | None, cuda: bool = False) -> dict[str, Figures]:
    """Every method on one image: ``method -> figures`` (see :data:`Figures`).

    Args:
        backend: The backend (``embedding`` is its embedding of ``scene.image``).
        predictor: The trained Prompt Predictor.
        scene: The image and all its instance masks.
        embedding: ``backend.encode(scene.image)``.
        grids: Sides of the unfiltered point grids.
        amg: Settings of the AMG-S / AMG-D rows; ``None`` skips them (e.g. on a backend that is not SAM).
        cuda: Measure peak memory with ``torch.cuda``.
    """
    size = scene.image.shape[:2]
    out: dict[str, Figures] = {}
    result, sec, mib = measure(lambda: generate_masks(predictor, backend, scene.image, embedding, ASFConfig()), cuda)
    miou = greedy_iou_matching(result.masks, scene.masks)[0] if result.masks else 0.0
    out["AoP (ASF)"] = (len(result.prompts), len(result.masks), sec, 0, mib, miou)
    for side in grids:
        masks, sec, mib = measure(lambda g=side: grid_masks(backend, embedding, size, g), cuda)
        out[f"grid {side}x{side}"] = (side * side, len(masks), sec, 0, mib, greedy_iou_matching(masks, scene.masks)[0])
    if amg is not None:
        for name, side in AMG_ROWS.items():
            (masks, passes, enc), sec, mib = measure(lambda g=side: amg_masks(backend, scene.image, g, amg), cuda)
            miou = greedy_iou_matching(masks, scene.masks)[0] if masks else 0.0
            out[name] = (amg_prompts(side, amg.crop_n_layers), len(masks), sec - enc, passes, mib, miou)
    return out


def main() -> None:
    """Train, run every method on every test set, print a JSON line per row and a Markdown table."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--backend", default="classical")
    parser.add_argument("--checkpoint", default=None, help="SAM weights ('random' for untrained SAM)")
    parser.add_argument("--train-scenes", type=int, default=24)
    parser.add_argument("--epochs", type=int, default=40)
    parser.add_argument("--grids", type=int, nargs="*", default=[16, 32])
    parser.add_argument("--limit", type=int, default=4, help="images per test set")
    parser.add_argument("--seed", type=int, default=0)
    defaults = AMGSettings()
    parser.add_argument("--amg-pred-iou", type=float, default=defaults.pred_iou_thresh,
                        help="AMG rows: predicted-IoU filter (SAM's default 0.88)")
    parser.add_argument("--amg-stability", type=float, default=defaults.stability_score_thresh,
                        help="AMG rows: stability-score filter (SAM's default 0.95)")
    parser.add_argument("--amg-crop-layers", type=int, default=defaults.crop_n_layers,
                        help="AMG rows: crop layers (SAM's default 0, the whole image only)")
    args = parser.parse_args()
    backend = make_backend(args.backend, checkpoint=args.checkpoint)
    cuda = getattr(getattr(backend, "device", None), "type", "cpu") == "cuda"
    amg = AMGSettings(pred_iou_thresh=args.amg_pred_iou, stability_score_thresh=args.amg_stability,
                      crop_n_layers=args.amg_crop_layers) if getattr(backend, "is_sam", False) else None
    start = time.perf_counter()
    predictor, losses = train_predictor(backend, MultiInstanceScenes(n=args.train_scenes, seed=args.seed).scenes(),
                                        epochs=args.epochs, seed=args.seed)
    print(json.dumps({"trained": f"{args.train_scenes} synthetic scenes seed {args.seed}", "epochs": args.epochs,
                      "loss": [round(losses[0], 4), round(losses[-1], 4)],
                      "seconds": round(time.perf_counter() - start, 1)}), flush=True)
    if amg is None:
        print(json.dumps({"note": f"no AMG-S / AMG-D rows: {backend.name} is not a SAM backend"}), flush=True)
    rows = []
    for set_name, scenes in test_sets(args.limit).items():
        stats: dict[str, list[Figures]] = {}
        for scene in scenes:
            figures = run_methods(backend, predictor, scene, backend.encode(scene.image), args.grids, amg, cuda)
            for method, values in figures.items():
                stats.setdefault(method, []).append(values)
        for method, values in stats.items():
            arr = np.asarray(values, dtype=np.float64)
            row = {"dataset": set_name, "images": len(scenes), "instances": sum(len(s.masks) for s in scenes),
                   "method": method, "prompts": round(float(arr[:, 0].mean()), 1),
                   "masks": round(float(arr[:, 1].mean()), 1), "seconds": round(float(arr[:, 2].mean()), 3),
                   "encoder_passes": round(float(arr[:, 3].mean()), 1), "peak_mib": round(float(arr[:, 4].max()), 1),
                   "miou": round(float(arr[:, 5].mean()), 3), "backend": backend.description,
                   "memory": "torch.cuda" if cuda else "tracemalloc (numpy/Python; not torch CPU)"}
            rows.append(row)
            print(json.dumps(row), flush=True)
    print()
    keys = ("dataset", "method", "images", "prompts", "masks", "seconds", "encoder_passes", "peak_mib", "miou")
    print(markdown_table([[r[k] for k in keys] for r in rows],
                         ["dataset", "method", "images", "prompts/img", "masks/img", "s/img (no encoder)",
                          "extra encoder passes", "peak MiB", "mIoU (greedy)"]))
    print(f"\nbackend: {backend.description}")


if __name__ == "__main__":
    main()
