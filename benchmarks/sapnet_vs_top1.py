"""SAPNet proposal selection vs the backend's top-1-score mask, mIoU against ground truth.

For every annotated instance, the "one annotated point" is the interior maximum of its mask's
distance transform; its proposal bag (3 multimask proposals at the point and 3 at one jittered
point) is decoded. **top-1**: the proposal with the highest predicted IoU among the 3 at the point
itself (what the env keeps after one click). **SAPNet**: the proposal selected by the trained MIL
head times the Point Distance Guidance (all annotated points of the image, same-class ones counted).
**oracle best**: the best proposal of the bag (an upper bound). Scores: mean IoU over instances.

Training, never on test images: synthetic scenes are scored by a model fitted on other synthetic
scenes with their 3 classes (``MultiInstanceScenes(seed=0)`` vs ``seed=100``); VOC-instances and the
second half of COCO_MVal by a class-agnostic model (one "object" class + background) fitted on the
first half of COCO_MVal (COCO_MVal has one instance per class, so its classes cannot be learned;
the class of a COCO_MVal mask comes from the file name prefix and drives the PDG only).

The backend is named in the output; ``classical`` is weight-free and **not SAM**.

Usage::

    python benchmarks/sapnet_vs_top1.py --backend classical --limit 10
"""

from __future__ import annotations

import argparse
import json
import time

import numpy as np

from agents.aop.predictor import object_points
from agents.sapnet import SAPNet, fit
from sam_gym.backends import make_backend
from sam_gym.data import make_dataset, shared_data_dir
from sam_gym.data.scenes import MultiInstanceScenes, Scene, group_scenes
from sam_gym.metrics import iou
from sam_gym.reporting import markdown_table


def evaluate(model: SAPNet, backend: object, scenes: list[Scene], class_mode: str) -> dict[str, float]:
    """Mean IoU of SAPNet's, the top-1 and the best proposal over all instances of ``scenes``."""
    out: dict[str, list[float]] = {"sapnet": [], "top1": [], "oracle_best": []}
    for scene in scenes:
        embedding = backend.encode(scene.image)
        points = object_points(scene.masks)
        pdg_classes = [str(c) for c in scene.classes]
        bags = model.bags(backend, embedding, points, pdg_classes)
        labels = ["object"] * len(bags) if class_mode == "agnostic" else pdg_classes
        chosen = model.select(backend, embedding, bags, labels)
        for bag, j, gt in zip(bags, chosen, scene.masks, strict=True):
            ious = [iou(m, gt, scene.void) for m in bag.masks]
            out["sapnet"].append(ious[j])
            out["top1"].append(ious[int(np.argmax(bag.scores[:3]))])
            out["oracle_best"].append(max(ious))
    return {k: round(float(np.mean(v)), 3) for k, v in out.items()} | {"instances": len(out["top1"])}


def main() -> None:
    """Fit, evaluate, print a JSON line per test set and a Markdown table."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--backend", default="classical")
    parser.add_argument("--checkpoint", default=None, help="SAM weights ('random' for untrained SAM)")
    parser.add_argument("--train-scenes", type=int, default=16)
    parser.add_argument("--test-scenes", type=int, default=8)
    parser.add_argument("--epochs", type=int, default=20)
    parser.add_argument("--limit", type=int, default=10, help="images per real test set")
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args()
    backend = make_backend(args.backend, checkpoint=args.checkpoint)
    rows = []
    start = time.perf_counter()
    synth, losses = fit(backend, MultiInstanceScenes(n=args.train_scenes, seed=args.seed).scenes(),
                        epochs=args.epochs, seed=args.seed)
    print(json.dumps({"fitted": "synthetic", "loss": [round(losses[0], 3), round(losses[-1], 3)],
                      "seconds": round(time.perf_counter() - start, 1)}), flush=True)
    rows.append({"dataset": "synthetic (seed 100)", "trained_on": f"synthetic seed {args.seed} (3 classes)",
                 **evaluate(synth, backend, MultiInstanceScenes(n=args.test_scenes, seed=100).scenes(), "dataset")})
    print(json.dumps(rows[-1]), flush=True)
    root = shared_data_dir()
    if root is not None and (root / "COCO_MVal").is_dir():
        coco = group_scenes(make_dataset(root / "COCO_MVal"))
        half = len(coco) // 2
        start = time.perf_counter()
        agnostic, losses = fit(backend, coco[:half], epochs=args.epochs, seed=args.seed, class_mode="agnostic")
        print(json.dumps({"fitted": f"COCO_MVal[:{half}] agnostic", "loss": [round(losses[0], 3),
                          round(losses[-1], 3)], "seconds": round(time.perf_counter() - start, 1)}), flush=True)
        tests = {f"COCO_MVal[{half}:]": coco[half:][: args.limit]}
        if (root / "VOC-instances").is_dir():
            tests["VOC-instances"] = group_scenes(make_dataset(root / "VOC-instances"))[: args.limit]
        for name, scenes in tests.items():
            rows.append({"dataset": name, "trained_on": f"COCO_MVal[:{half}] (class-agnostic)",
                         **evaluate(agnostic, backend, scenes, "agnostic")})
            print(json.dumps(rows[-1]), flush=True)
    print()
    print(markdown_table([[r[k] for k in ("dataset", "trained_on", "instances", "top1", "sapnet", "oracle_best")]
                          for r in rows],
                         ["dataset", "trained on", "instances", "top-1 mIoU", "SAPNet mIoU", "best-in-bag mIoU"]))
    print(f"\nbackend: {backend.description}")


if __name__ == "__main__":
    main()
