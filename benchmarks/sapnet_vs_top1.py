"""SAPNet proposal selection vs the backend's top-1-score mask, mIoU against ground truth, with bootstrap CIs.

For every annotated instance, the "one annotated point" is the interior maximum of its mask's distance
transform; its proposal bag (3 multimask proposals at the point and 3 at one jittered point) is
decoded. **top-1**: the proposal with the highest predicted IoU among the 3 at the point itself
(what the env keeps after one click). **SAPNet**: the proposal selected by the trained MIL head times
the Point Distance Guidance (all annotated points of the image, same-class ones counted). **best in
bag**: the best proposal of the bag (an upper bound). Three SAPNet variants, each fitted on the same
training images: ``class-aware + negatives`` (the default of ``fit``: MIL over classes plus SAPNet's
negative proposals), ``class-aware, single MIL`` (no negative proposals) and ``agnostic, single MIL``
(one "object" class, no negatives: the earlier model).

Units are images: an image's score is the mean IoU over its instances; the intervals are percentile
bootstrap intervals over images (``sam_gym.stats.bootstrap_ci``), and "vs top-1" is the paired mean
difference with its interval (``sam_gym.stats.paired_bootstrap``). ``ins peak`` is the mean over
instances of the largest instance score in the bag (flat scores: 1 / bag size).

Training, never on test images: synthetic scenes (3 classes) are scored by models fitted on other
synthetic scenes (``MultiInstanceScenes(seed=0)`` vs ``seed=100``); the second half of COCO_MVal and
VOC-instances by models fitted on the first half of COCO_MVal with COCO supercategory labels
(:mod:`agents.sapnet.labels`: COCO_MVal holds one instance per category, its 12 supercategories several;
VOC's class ids map to the same supercategories).

The backend is named in the output; ``classical`` is weight-free and **not SAM**.

Usage::

    python benchmarks/sapnet_vs_top1.py --backend classical --limit 40
"""

from __future__ import annotations

import argparse
import json
import time
from typing import Any

import numpy as np

from agents.aop.predictor import object_points
from agents.sapnet import SAPNet, fit
from agents.sapnet.labels import supercategory_scenes
from sam_gym.backends import make_backend
from sam_gym.data import make_dataset, shared_data_dir
from sam_gym.data.scenes import MultiInstanceScenes, Scene, group_scenes
from sam_gym.metrics import iou
from sam_gym.reporting import markdown_table
from sam_gym.stats import bootstrap_ci, paired_bootstrap

#: The SAPNet variants: name -> ``fit`` keyword arguments.
VARIANTS: dict[str, dict[str, Any]] = {
    "class-aware + negatives": {},
    "class-aware, single MIL": {"n_background_boxes": 0, "n_part_boxes": 0},
    "agnostic, single MIL": {"class_mode": "agnostic", "n_background_boxes": 0, "n_part_boxes": 0},
}


def per_image(model: SAPNet, backend: Any, scenes: list[Scene]) -> dict[str, np.ndarray]:
    """Per image: mean IoU of SAPNet's, the top-1 and the best proposal; per instance: the instance-score peak."""
    agnostic = model.config.label_space == "agnostic"
    out: dict[str, list[float]] = {"sapnet": [], "top1": [], "best": [], "peak": []}
    for scene in scenes:
        embedding = backend.encode(scene.image)
        points = object_points(scene.masks)
        classes = [str(c) for c in scene.classes]
        bags = model.bags(backend, embedding, points, classes)
        scored = model.scores(backend, embedding, bags, ["object"] * len(bags) if agnostic else classes)
        rows: dict[str, list[float]] = {"sapnet": [], "top1": [], "best": []}
        for bag, (score, instance), gt in zip(bags, scored, scene.masks, strict=True):
            ious = [iou(m, gt, scene.void) for m in bag.masks]
            rows["sapnet"].append(ious[int(np.argmax(score))])
            rows["top1"].append(ious[int(np.argmax(bag.scores[:3]))])
            rows["best"].append(max(ious))
            out["peak"].append(float(instance.max()))
        for key, values in rows.items():
            out[key].append(float(np.mean(values)))
    return {k: np.asarray(v) for k, v in out.items()}


def _ci(est: Any) -> str:
    return f"{est.mean:.3f} [{est.low:.3f}, {est.high:.3f}]"


def rows_for(name: str, trained_on: str, models: dict[str, SAPNet], backend: Any, scenes: list[Scene],
             seed: int) -> list[dict[str, Any]]:
    """One row per method (top-1, best in bag, each SAPNet variant) on one test set."""
    rows, top1 = [], None
    for variant, model in models.items():
        r = per_image(model, backend, scenes)
        if top1 is None:
            top1 = r["top1"]
            base = {"dataset": name, "trained_on": trained_on, "images": len(scenes),
                    "instances": int(sum(len(s.masks) for s in scenes))}
            rows.append({**base, "method": "top-1", "miou": _ci(bootstrap_ci(top1, seed=seed)), "vs_top1": "",
                         "ins_peak": ""})
            rows.append({**base, "method": "best in bag", "miou": _ci(bootstrap_ci(r["best"], seed=seed)),
                         "vs_top1": _ci(paired_bootstrap(r["best"], top1, seed=seed)), "ins_peak": ""})
        rows.append({**base, "method": f"SAPNet {variant}", "miou": _ci(bootstrap_ci(r["sapnet"], seed=seed)),
                     "vs_top1": _ci(paired_bootstrap(r["sapnet"], top1, seed=seed)),
                     "ins_peak": round(float(r["peak"].mean()), 3)})
    for row in rows:
        print(json.dumps(row), flush=True)
    return rows


def fit_variants(backend: Any, scenes: list[Scene], epochs: int, seed: int, **kwargs: Any) -> dict[str, SAPNet]:
    """Fit every variant of :data:`VARIANTS` on ``scenes``."""
    models = {}
    for variant, options in VARIANTS.items():
        start = time.perf_counter()
        model, losses = fit(backend, scenes, epochs=epochs, seed=seed, **{**kwargs, **options})
        print(json.dumps({"fitted": variant, "images": len(scenes), "loss": [round(losses[0], 4), round(losses[-1], 4)],
                          "seconds": round(time.perf_counter() - start, 1)}), flush=True)
        models[variant] = model
    return models


def main() -> None:
    """Fit, evaluate, print a JSON line per row and a Markdown table."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--backend", default="classical")
    parser.add_argument("--checkpoint", default=None, help="SAM weights ('random' for untrained SAM)")
    parser.add_argument("--train-scenes", type=int, default=16)
    parser.add_argument("--test-scenes", type=int, default=16)
    parser.add_argument("--epochs", type=int, default=20)
    parser.add_argument("--limit", type=int, default=40, help="images per real test set")
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args()
    backend = make_backend(args.backend, checkpoint=args.checkpoint)
    synth = fit_variants(backend, MultiInstanceScenes(n=args.train_scenes, seed=args.seed).scenes(), args.epochs,
                         args.seed)
    rows = rows_for("synthetic (seed 100)", f"synthetic seed {args.seed} (3 classes)", synth, backend,
                    MultiInstanceScenes(n=args.test_scenes, seed=100).scenes(), args.seed)
    root = shared_data_dir()
    if root is not None and (root / "COCO_MVal").is_dir():
        coco = group_scenes(make_dataset(root / "COCO_MVal"))
        half = len(coco) // 2
        models = fit_variants(backend, coco[:half], args.epochs, args.seed, label_source="coco-names",
                              class_mode="supercategory")
        trained = f"COCO_MVal[:{half}] (supercategories)"
        rows += rows_for(f"COCO_MVal[{half}:]", trained, models, backend,
                         supercategory_scenes(coco[half:][: args.limit], "coco-names"), args.seed)
        if (root / "VOC-instances").is_dir():
            voc = group_scenes(make_dataset(root / "VOC-instances"))[: args.limit]
            rows += rows_for("VOC-instances", trained, models, backend, supercategory_scenes(voc, "voc-ids"),
                             args.seed)
    print()
    keys = ("dataset", "trained_on", "images", "instances", "method", "miou", "vs_top1", "ins_peak")
    print(markdown_table([[r[k] for k in keys] for r in rows],
                         ["dataset", "trained on", "images", "instances", "method", "mIoU [95% CI]",
                          "vs top-1 [95% CI]", "ins peak"]))
    print(f"\nbackend: {backend.description}; intervals: percentile bootstrap over images")


if __name__ == "__main__":
    main()
