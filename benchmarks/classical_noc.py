"""NoC benchmark of the classical backend on GrabCut and Berkeley (the standard RITM protocol).

Runs :func:`sam_gym.clicker.simulate_clicks` (distance-transform click simulator, at most
``--max-clicks`` clicks, GrabCut's void band excluded from IoU) on every image/mask pair and
prints NoC@85, NoC@90, the failure rate at 90 (no IoU >= 0.90 within the clicks) and the mean
IoU after 1/5/10/20 clicks, then the backend's decode throughput on a 480x640 image with one
thread.

Published NoC@90 for classical methods (Xu et al., CVPR 2016), GrabCut / Berkeley: graph cut
11.10 / 14.33, random walker 12.30 / 14.02, geodesic star convexity 8.38 / 12.57.

Usage::

    python benchmarks/classical_noc.py                       # both datasets from ../shared/data
    python benchmarks/classical_noc.py --dataset ../shared/data/GrabCut --limit 10 --workers 2
    python benchmarks/classical_noc.py --synthetic 64 --speed-repeats 5   # synthetic only, no real data
"""

from __future__ import annotations

import os

os.environ.setdefault("OMP_NUM_THREADS", "1")

import argparse
import time
from concurrent.futures import ProcessPoolExecutor
from pathlib import Path

import cv2
import numpy as np
from PIL import Image

from sam_gym.backends.classical import ClassicalBackend, ClassicalConfig
from sam_gym.clicker import simulate_clicks
from sam_gym.data import SyntheticShapes
from sam_gym.metrics import iou

cv2.setNumThreads(1)

DATA = Path(__file__).resolve().parents[1].parent / "shared" / "data"
REPORT_CLICKS = (1, 5, 10, 20)


def load_pairs(folder: Path, limit: int | None) -> list[tuple[Path, Path]]:
    """Return ``(image, mask)`` paths matched by file stem, sorted by name."""
    masks = {p.stem: p for p in sorted((folder / "masks").iterdir())}
    images = {p.stem: p for p in sorted((folder / "images").iterdir())}
    pairs = []
    for stem, mask in sorted(masks.items()):
        image = images.get(stem) or images.get(stem.rstrip("ab"))
        if image is not None:
            pairs.append((image, mask))
    return pairs[:limit] if limit else pairs


def load_sample(image_path: Path, mask_path: Path) -> tuple[np.ndarray, np.ndarray, np.ndarray | None]:
    """Read an RGB image, its object mask and (GrabCut only) its void band (value 128)."""
    image = np.array(Image.open(image_path).convert("RGB"))
    mask = np.array(Image.open(mask_path))
    if mask.ndim == 3:
        mask = mask[..., 0]
    if "grabcut" in str(mask_path.parent.parent.name).lower():
        return image, mask == 255, mask == 128
    return image, mask > 128, None


def run_one(args: tuple[Path, Path, int, dict]) -> list[float]:
    """Simulate clicks on one pair; returns the IoU after each click, padded to max_clicks."""
    image_path, mask_path, max_clicks, kwargs = args
    image, target, void = load_sample(image_path, mask_path)
    ious = simulate_clicks(ClassicalBackend(**kwargs), image, target, void, max_clicks=max_clicks)
    return ious


def noc(ious: np.ndarray, tau: float) -> np.ndarray:
    """Number of clicks (1-based) to reach IoU >= tau per sample; max clicks when never reached."""
    hit = ious >= tau
    return np.where(hit.any(axis=1), hit.argmax(axis=1) + 1, ious.shape[1])


def evaluate(folder: Path, max_clicks: int, limit: int | None, workers: int, kwargs: dict) -> None:
    """Run and print the benchmark on one dataset folder."""
    pairs = load_pairs(folder, limit)
    jobs = [(img, msk, max_clicks, kwargs) for img, msk in pairs]
    start = time.perf_counter()
    with ProcessPoolExecutor(max_workers=workers) as pool:
        ious = np.array(list(pool.map(run_one, jobs)))
    elapsed = time.perf_counter() - start
    fails = np.mean(~(ious >= 0.90).any(axis=1))
    at = "  ".join(f"@{k}={ious[:, k - 1].mean():.3f}" for k in REPORT_CLICKS if k <= max_clicks)
    print(
        f"{folder.name:10s} n={len(pairs):3d}  NoC@85={noc(ious, 0.85).mean():.2f}  NoC@90={noc(ious, 0.90).mean():.2f}"
        f"  FR@90={100 * fails:.1f}%  mIoU {at}  ({elapsed:.0f} s, {workers} workers)",
        flush=True,
    )


def evaluate_synthetic(n: int, kwargs: dict, clicks: int = 5) -> None:
    """Print the clicker mean IoU after clicks ``1..clicks`` on ``SyntheticShapes(n)`` and the reset IoU.

    The reset IoU is the env's default start (``init_prompts="gt_pair"``): one uniformly drawn
    target pixel and one non-target pixel (their centres ``(col + 0.5, row + 0.5)``), a single
    decode without ``mask_input``; the pixels are drawn with ``np.random.default_rng(i)``.
    """
    dataset, backend = SyntheticShapes(n=n), ClassicalBackend(**kwargs)
    curves, resets = [], []
    for i in range(n):
        sample = dataset[i]
        emb = backend.encode(sample.image)
        curves.append(simulate_clicks(backend, sample.image, sample.target, None, max_clicks=clicks, embedding=emb))
        rng = np.random.default_rng(i)
        points = []
        for region in (sample.target, ~sample.target):
            rows, cols = np.nonzero(region)
            k = int(rng.integers(rows.size))
            points.append((cols[k] + 0.5, rows[k] + 0.5))
        out = backend.decode(emb, np.array(points, np.float32), np.array([1, 0]))
        resets.append(iou(out.mask(), sample.target))
    per_click = "  ".join(f"@{k + 1}={v:.3f}" for k, v in enumerate(np.mean(curves, axis=0)))
    print(f"synthetic-shapes n={n}  mIoU {per_click}  reset (gt_pair) IoU={np.mean(resets):.3f}", flush=True)


def decode_speed(kwargs: dict, n_clicks: int = 5, repeats: int = 40) -> tuple[float, float]:
    """Return (encode seconds, decode calls per second) on a 480x640 image with one thread."""
    folder = DATA / "GrabCut"
    pairs = load_pairs(folder, None) if folder.is_dir() else []
    rng = np.random.default_rng(0)
    if pairs:
        image, target, _ = load_sample(*pairs[0])
        image = cv2.resize(image, (640, 480), interpolation=cv2.INTER_AREA)
        target = cv2.resize(target.astype(np.uint8), (640, 480), interpolation=cv2.INTER_NEAREST) > 0
    else:
        image = rng.integers(0, 256, (480, 640, 3), dtype=np.uint8)
        target = np.zeros((480, 640), bool)
        target[120:360, 160:480] = True
    backend = ClassicalBackend(**kwargs)
    t0 = time.perf_counter()
    emb = backend.encode(image)
    t_encode = time.perf_counter() - t0
    rows, cols = np.nonzero(target)
    pick = rng.choice(len(rows), n_clicks - 1)
    points = np.array([[320.5, 240.5]] + [[cols[i] + 0.5, rows[i] + 0.5] for i in pick], np.float32)
    labels = np.array([1] + [1] * (n_clicks - 1), np.int64)
    labels[-1] = 0
    mask_input = backend.decode(emb, points[:1], labels[:1]).logits()
    backend.decode(emb, points, labels, mask_input=mask_input)
    t0 = time.perf_counter()
    for _ in range(repeats):
        backend.decode(emb, points, labels, mask_input=mask_input).mask()
    return t_encode, repeats / (time.perf_counter() - t0)


def main() -> None:
    """Parse arguments and run the benchmark."""
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--dataset", type=Path, action="append", help="dataset folder (repeatable)")
    parser.add_argument("--max-clicks", type=int, default=20)
    parser.add_argument("--limit", type=int, default=None, help="first N pairs of each dataset")
    parser.add_argument("--workers", type=int, default=1, help="processes (each single-threaded)")
    parser.add_argument("--synthetic", type=int, default=0, metavar="N",
                        help="also report clicker mIoU per click on SyntheticShapes(n=N)")
    parser.add_argument("--speed-repeats", type=int, default=1, help="decode-speed measurements (median kept)")
    parser.add_argument("--set", nargs="*", default=[], metavar="KEY=VALUE", help="ClassicalBackend kwargs")
    args = parser.parse_args()
    kwargs = {k: type(getattr(ClassicalConfig(), k))(v) for k, v in (s.split("=", 1) for s in args.set)}
    folders = [] if args.synthetic and not args.dataset else args.dataset or [DATA / "GrabCut", DATA / "Berkeley"]
    backend = ClassicalBackend(**kwargs)
    print(f"backend: {backend.model_id} ({backend.description})")
    print(f"protocol: RITM click simulator, max {args.max_clicks} clicks, void excluded from IoU, "
          "first click multimask (best score), then mask_input = previous logits")
    for folder in folders:
        if not folder.is_dir():
            print(f"{folder}: missing, skipped")
            continue
        evaluate(folder, args.max_clicks, args.limit, args.workers, kwargs)
    if args.synthetic:
        evaluate_synthetic(args.synthetic, kwargs)
    speeds = [decode_speed(kwargs) for _ in range(max(1, args.speed_repeats))]
    t_encode, rate = float(np.median([s[0] for s in speeds])), float(np.median([s[1] for s in speeds]))
    print(f"480x640, 1 thread: encode {1000 * t_encode:.0f} ms, decode {rate:.1f} calls/s (5 clicks + mask_input, "
          f"median of {len(speeds)})")


if __name__ == "__main__":
    main()
