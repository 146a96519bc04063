"""Test-time adaptation table (Schön et al., CVPR-W 2024) and the click-simulator cross-check.

For each TTA configuration (by default every row of the paper's table, :data:`agents.tta.CONFIGS`:
``none``, ``R+E+CM``, ``R``, ``C``, ``E``, ``CM``, ``R+CM``, ``R+U+CM``) the click simulator runs
through the env (``action_mode="point"``, no initial prompt) with
:func:`sam_gym.evaluation.run_episodes`, twice, as in the paper: stopping at IoU 0.85 with 20
clicks (NoC20@85, FR20@85) and at IoU 0.90 with 30 clicks (NoC30@90, FR30@90). Episodes end at the
target IoU (the env's ``target_iou``), which is when the image-level step happens (one step, the
paper's; ``--image-steps 2`` is the authors' later code). Images run in dataset order; the
decoder's weights are restored after each configuration (checked bit for bit and printed). NoC and
FR come from :mod:`sam_gym.metrics` (failure = NoC >= budget, the RITM / ``wseseg`` convention).

TTA needs a SAM backend; with ``--backend classical`` only ``none`` runs (the plain simulator),
and the output says the backend is not SAM. Random-weight SAM (``--checkpoint random``) only shows
that the code runs end to end: its numbers say nothing about quality.

``--compare-simulator`` instead checks the env path against :func:`sam_gym.clicker.simulate_clicks`:
``ClickerPolicy`` through the env (20 clicks, no early stop) and ``simulate_clicks`` (20 clicks) on
the same samples and embeddings, with NoC@85/90, FR@85/90 of both and the largest IoU difference.

Usage::

    python benchmarks/tta_table.py --dataset ../shared/data/GrabCut --limit 3 --backend sam_vit_b --checkpoint random
    python benchmarks/tta_table.py --dataset ../shared/data/GrabCut --compare-simulator   # classical backend
"""

from __future__ import annotations

import argparse
import time
from typing import Any

import numpy as np

from agents.clicker import ClickerPolicy
from agents.tta import CONFIGS, DEFAULT_LR, IMAGE_STEPS, ClickerTTAPolicy
from sam_gym.cache import EmbeddingCache
from sam_gym.clicker import simulate_clicks
from sam_gym.commands.common import add_backend_arguments, add_dataset_arguments, backend_from_args, dataset_from_args
from sam_gym.envs import SamPromptEnv
from sam_gym.evaluation import run_episodes
from sam_gym.metrics import failure_rate, mean_noc

#: (target IoU, click budget) of the two protocols of the paper's table.
PROTOCOLS = ((0.85, 20), (0.90, 30))


def _decoder_digest(backend: Any) -> bytes | None:
    """Bytes of the mask decoder's state dict (SAM backends), to check restoration bit for bit."""
    model = getattr(backend, "model", None)
    if model is None:
        return None
    state = model.mask_decoder.state_dict()
    return b"".join(state[k].detach().cpu().contiguous().numpy().tobytes() for k in sorted(state))


def run_config(name: str, dataset: Any, cache: EmbeddingCache, lr: float, per_class: bool,
               image_steps: int = IMAGE_STEPS) -> dict[str, float]:
    """Run one configuration under both protocols; returns NoC/FR per protocol and the seconds taken."""
    out: dict[str, float] = {}
    start = time.perf_counter()
    for tau, budget in PROTOCOLS:
        env = SamPromptEnv(dataset=dataset, cache=cache, action_mode="point", init_prompts="none",
                           max_clicks=budget, target_iou=tau)
        if cache.backend.is_sam:
            with ClickerTTAPolicy(name, lr=lr, per_class=per_class, image_steps=image_steps,
                                  target_iou=tau) as policy:
                records = run_episodes(policy, env, range(len(dataset)), seeds=(0,))
        else:
            records = run_episodes(ClickerPolicy(), env, range(len(dataset)), seeds=(0,))
        ious = [r.ious for r in records]
        p = round(tau * 100)
        out[f"NoC{budget}@{p}"] = mean_noc(ious, tau, budget)
        out[f"FR{budget}@{p}"] = 100.0 * failure_rate(ious, tau, budget)
    out["seconds"] = time.perf_counter() - start
    return out


def table(args: argparse.Namespace, dataset: Any, cache: EmbeddingCache) -> None:
    """Print the TTA table."""
    backend = cache.backend
    configs = args.configs or list(CONFIGS)
    stops = " and ".join(f"{tau:.2f} / {budget} clicks" for tau, budget in PROTOCOLS)
    print(f"protocol: click simulator through SamPromptEnv, point actions, no initial prompt; "
          f"stop at {stops}; Adam lr={args.lr}, per_class={args.per_class}, image_steps={args.image_steps}")
    columns = [f"{kind}{budget}@{round(tau * 100)}" for tau, budget in PROTOCOLS for kind in ("NoC", "FR")]
    print(f"{'config':8s} " + " ".join(f"{c:>9s}" for c in columns) + f" {'sec':>6s}  weights")
    original = _decoder_digest(backend)
    for name in configs:
        if not backend.is_sam and name != "none":
            print(f"{name:8s} skipped: test-time adaptation needs a SAM backend")
            continue
        row = run_config(name, dataset, cache, args.lr, args.per_class, args.image_steps)
        restored = "restored" if _decoder_digest(backend) == original else "CHANGED"
        cells = [f"{row[c]:9.2f}" if c.startswith("NoC") else f"{row[c]:8.1f}%" for c in columns]
        print(f"{name:8s} " + " ".join(cells) + f" {row['seconds']:6.0f}  {restored if original is not None else '-'}",
              flush=True)


def compare_simulator(dataset: Any, cache: EmbeddingCache, max_clicks: int) -> None:
    """Print NoC/FR of the env + ClickerPolicy path and of simulate_clicks on the same samples."""
    env = SamPromptEnv(dataset=dataset, cache=cache, action_mode="point", init_prompts="none", max_clicks=max_clicks)
    start = time.perf_counter()
    env_ious = [r.ious for r in run_episodes(ClickerPolicy(), env, range(len(dataset)), seeds=(0,))]
    env_seconds = time.perf_counter() - start
    start = time.perf_counter()
    sim_ious = []
    for index in range(len(dataset)):
        sample = dataset[index]
        sim_ious.append(simulate_clicks(cache.backend, sample.image, sample.target, sample.void,
                                        max_clicks=max_clicks, embedding=cache.get(sample.image)))
    sim_seconds = time.perf_counter() - start
    diff = np.abs(np.asarray(env_ious) - np.asarray(sim_ious))
    print(f"protocol: RITM click simulator, {max_clicks} clicks, no early stop, void excluded from IoU")
    for label, ious, seconds in (("env + ClickerPolicy", env_ious, env_seconds),
                                 ("simulate_clicks", sim_ious, sim_seconds)):
        print(f"{label:20s} NoC@85={mean_noc(ious, 0.85, max_clicks):.2f}"
              f"  NoC@90={mean_noc(ious, 0.90, max_clicks):.2f}"
              f"  FR@85={100 * failure_rate(ious, 0.85, max_clicks):.1f}%"
              f"  FR@90={100 * failure_rate(ious, 0.90, max_clicks):.1f}%  ({seconds:.0f} s)")
    print(f"max |IoU difference| over all clicks: {diff.max():.2e}; episodes differing: "
          f"{int((diff.max(axis=1) > 0).sum())} of {len(dataset)}")


def main() -> None:
    """Parse arguments and run."""
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    add_dataset_arguments(parser, default=None)
    add_backend_arguments(parser)
    parser.add_argument("--configs", nargs="*", choices=list(CONFIGS), default=None,
                        help=f"TTA configurations (default: every row, {' '.join(CONFIGS)})")
    parser.add_argument("--lr", type=float, default=DEFAULT_LR, help="Adam learning rate (default: %(default)s)")
    parser.add_argument("--image-steps", type=int, default=IMAGE_STEPS,
                        help="Adam steps after each successful image (default: %(default)s, the paper's; 2: wseseg)")
    parser.add_argument("--per-class", action="store_true", help="one decoder per sample.class_id")
    parser.add_argument("--compare-simulator", action="store_true",
                        help="compare env + ClickerPolicy with sam_gym.clicker.simulate_clicks instead")
    parser.add_argument("--max-clicks", type=int, default=20, help="clicks for --compare-simulator")
    args = parser.parse_args()
    dataset = dataset_from_args(args)
    cache = EmbeddingCache(backend_from_args(args), max_items=max(64, len(dataset)))
    print(f"dataset: {dataset.name} ({len(dataset)} samples)")
    print(f"backend: {cache.backend.description}" + ("" if cache.backend.is_sam else "  [NOT SAM]"))
    if args.compare_simulator:
        compare_simulator(dataset, cache, args.max_clicks)
    else:
        table(args, dataset, cache)


if __name__ == "__main__":
    main()
