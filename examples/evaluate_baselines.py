"""Score the baseline prompting policies on a folder of your own images and masks.

Usage::

    python examples/evaluate_baselines.py PATH/TO/FOLDER --out runs/my_eval   # images/ + masks/
    python examples/evaluate_baselines.py                                     # a generated demo folder
    python examples/evaluate_baselines.py --tiny                              # seconds (used by the tests)

The folder holds ``images/X.png`` (or .jpg, ...) and ``masks/X.png`` paired by file stem, masks
0 = background and 255 (any value above 128) = object. Without a path, a small folder is generated
from the built-in synthetic shapes into a temporary directory so that the script runs anywhere.

This is what ``sam-gym eval`` does, with the library calls spelled out: one backend and one
embedding cache shared by every policy, the same episodes (samples x seeds) for each, then the
results dict, ``results.json`` / ``results.md`` and the IoU-vs-clicks plot. The backend is the
weight-free classical segmenter (NOT SAM) unless you pass ``--backend sam_vit_b --checkpoint PATH``.
Points are ``(x, y)`` in image pixels; masks ``(H, W)`` indexed ``[row, col]``.
"""

from __future__ import annotations

import argparse
import tempfile
from pathlib import Path

import cv2

from sam_gym.backends import make_backend
from sam_gym.cache import EmbeddingCache
from sam_gym.data import FolderDataset, SyntheticShapes
from sam_gym.evaluation import compare_policies
from sam_gym.policies import make_policy
from sam_gym.reporting import build_results, plot_iou_vs_clicks, results_markdown, write_results


def write_demo_folder(root: Path, n: int) -> Path:
    """Write ``n`` synthetic-shape images and 0/255 masks as ``root/images/*.png`` and ``root/masks/*.png``."""
    (root / "images").mkdir(parents=True, exist_ok=True)
    (root / "masks").mkdir(exist_ok=True)
    shapes = SyntheticShapes(n=n)
    for i in range(n):
        sample = shapes[i]
        cv2.imwrite(str(root / "images" / f"shape_{i:03d}.png"), cv2.cvtColor(sample.image, cv2.COLOR_RGB2BGR))
        cv2.imwrite(str(root / "masks" / f"shape_{i:03d}.png"), sample.target.astype("uint8") * 255)
    return root


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("folder", nargs="?", default=None, help="folder with images/ and masks/ (default: generated)")
    parser.add_argument("--policies", default="random,grid,clicker", help="comma-separated policy specs")
    parser.add_argument("--backend", default="classical", help="classical (default, not SAM) or sam_vit_b, ...")
    parser.add_argument("--checkpoint", default=None, help="SAM weights file (SAM backends)")
    parser.add_argument("--max-clicks", type=int, default=10)
    parser.add_argument("--out", default=None, help="output folder (default: a temporary folder)")
    parser.add_argument("--tiny", action="store_true", help="3 images, 3 clicks: runs in seconds")
    args = parser.parse_args()

    with tempfile.TemporaryDirectory() as tmp:
        folder = Path(args.folder) if args.folder else write_demo_folder(Path(tmp) / "shapes", 3 if args.tiny else 12)
        dataset = FolderDataset(folder)  # binary masks: one episode per image
        max_clicks = 3 if args.tiny else args.max_clicks
        backend = make_backend(args.backend, **({"checkpoint": args.checkpoint or "auto"}
                                                if args.backend != "classical" else {}))
        cache = EmbeddingCache(backend)  # one backend, shared by every policy's env
        policies = {spec: make_policy(spec) for spec in args.policies.split(",")}
        runs = compare_policies(policies, dataset, cache, max_clicks=max_clicks, indices=range(len(dataset)),
                                seeds=[0], task_metrics=True)
        command = f"python examples/evaluate_baselines.py {folder if args.folder else '(generated folder)'}"
        results = build_results(runs, backend=backend, dataset=dataset.name, max_clicks=max_clicks, command=command)
        out = Path(args.out) if args.out else Path(tmp) / "out"
        write_results(results, out)
        plot_iou_vs_clicks(results, out / "iou_vs_clicks.png")
        print(results_markdown(results))
        if args.out:
            print(f"wrote {out}/results.json, results.md, iou_vs_clicks.png")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
