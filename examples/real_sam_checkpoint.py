"""Evaluate the click simulator and a baseline with a real SAM checkpoint instead of the classical backend.

Usage::

    python examples/real_sam_checkpoint.py --checkpoint ~/weights/sam_vit_b_01ec64.pth
    python examples/real_sam_checkpoint.py --backend mobilesam_vit_t --checkpoint mobile_sam.pt \\
        --dataset ../shared/data/GrabCut --episodes 10
    python examples/real_sam_checkpoint.py --tiny      # RANDOM weights: plumbing only (used by the tests)

The weights are never bundled: pass a checkpoint file you have (official SAM ``sam_vit_b_01ec64.pth``
etc., or MobileSAM's ``mobile_sam.pt``), or ``--checkpoint auto`` to download the official file
once (needs internet). Offline without a file, the script prints the weights error and exits
with status 1.

``--tiny`` runs the same code with ``checkpoint="random"``: an untrained network whose masks are
meaningless. It only shows that the pipeline works; its numbers say nothing about SAM.
Points are ``(x, y)`` in image pixels; masks ``(H, W)`` indexed ``[row, col]``.
"""

from __future__ import annotations

import argparse
import sys

from sam_gym.backends import make_backend
from sam_gym.cache import EmbeddingCache
from sam_gym.data import make_dataset
from sam_gym.data.subset import Subset
from sam_gym.evaluation import compare_policies
from sam_gym.policies import make_policy
from sam_gym.reporting import build_results, results_markdown


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--backend", default="sam_vit_b", help="sam_vit_b | sam_vit_l | sam_vit_h | mobilesam_vit_t")
    parser.add_argument("--checkpoint", default="auto", help="weights file, or 'auto' (official file, downloaded)")
    parser.add_argument("--dataset", default="synthetic-shapes", help="'synthetic-shapes' or a folder")
    parser.add_argument("--episodes", type=int, default=8, help="first N samples")
    parser.add_argument("--max-clicks", type=int, default=10)
    parser.add_argument("--device", default=None, help="torch device (default: cuda if available)")
    parser.add_argument("--tiny", action="store_true", help="RANDOM weights, 1 image, 1 click (plumbing only)")
    args = parser.parse_args()

    backend_name, checkpoint, episodes, max_clicks = args.backend, args.checkpoint, args.episodes, args.max_clicks
    if args.tiny:
        backend_name, checkpoint, episodes, max_clicks = "mobilesam_vit_t", "random", 1, 1
        print("!" * 78 + "\n!! --tiny: RANDOM, UNTRAINED weights (checkpoint='random'), MobileSAM ViT-T, 1 click.\n"
              "!! The masks and numbers below are meaningless; this only checks the pipeline.\n" + "!" * 78)
    try:
        backend = make_backend(backend_name, checkpoint=checkpoint, device=args.device)
    except (ValueError, RuntimeError, ImportError) as exc:  # missing file, no network for 'auto', no package
        print(f"error: could not load the {backend_name} weights: {exc}", file=sys.stderr)
        return 1
    print(f"backend: {backend.description}")

    dataset = make_dataset(args.dataset, **({"n": episodes} if args.dataset == "synthetic-shapes" else {}))
    dataset = Subset(dataset, range(min(episodes, len(dataset))))
    policies = {"clicker": make_policy("clicker")}
    if not args.tiny:
        policies["random"] = make_policy("random")
    runs = compare_policies(policies, dataset, EmbeddingCache(backend), max_clicks=max_clicks,
                            indices=range(len(dataset)), seeds=[0])
    command = " ".join(["python examples/real_sam_checkpoint.py", *sys.argv[1:]])
    results = build_results(runs, backend=backend, dataset=dataset.name, max_clicks=max_clicks, command=command)
    print(results_markdown(results))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
