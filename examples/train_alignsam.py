"""Train a small AlignSAM agent, then evaluate it against the random policy on held-out images.

    python examples/train_alignsam.py            # ~3 minutes on 2 CPU cores
    python examples/train_alignsam.py --tiny     # a few seconds (smoke test)

Uses the built-in ``synthetic-multi`` scenes (every red shape is the target, so the clicks after
the first prompt matter) and the weight-free classical backend (a graph cut, NOT SAM);
pass ``--backend sam_vit_b --checkpoint PATH`` for real SAM. Points are ``(x, y)`` image pixels.
"""

from __future__ import annotations

import argparse
import tempfile
from pathlib import Path
from typing import Any

import numpy as np

from agents.alignsam.config import TrainConfig
from agents.alignsam.policy import AlignSAMPolicy
from agents.alignsam.training import train
from agents.simple import RandomPolicy
from sam_gym.data import make_dataset
from sam_gym.envs import SamPromptEnv
from sam_gym.evaluation import run_episodes


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--tiny", action="store_true", help="a few hundred steps, two evaluation images")
    parser.add_argument("--backend", default="classical", help="classical (NOT SAM) | sam_vit_b | ...")
    parser.add_argument("--checkpoint", default=None, help="SAM weights path (SAM backends)")
    parser.add_argument("--out", default=None, help="run folder (default: a temporary folder)")
    args = parser.parse_args()
    if args.out:
        return run(args, Path(args.out))
    with tempfile.TemporaryDirectory(prefix="alignsam-") as tmp:
        return run(args, Path(tmp) / "run")


def run(args: argparse.Namespace, out: Path) -> int:
    """Train into ``out``, evaluate, print."""
    sizes: dict[str, Any] = {"timesteps": 5000, "dataset_kwargs": {"n": 80}}
    if args.tiny:
        sizes = {"timesteps": 100, "n_steps": 50, "batch_size": 50, "n_epochs": 1, "n_train": 8,
                 "srm_warmup_steps": 10, "dataset_kwargs": {"n": 10}, "progress_bar": False}
    config = TrainConfig(dataset="synthetic-multi", out=str(out), backend=args.backend, checkpoint=args.checkpoint,
                         **sizes)
    run_dir = train(config)

    agent = AlignSAMPolicy.load(run_dir)
    dataset = make_dataset(config.dataset, **config.dataset_kwargs)
    held_out = range(config.n_train, len(dataset))
    print(f"Held-out images {held_out.start}..{held_out.stop - 1}, backend: {agent.run_info['backend']['description']}")
    # Both click in the same env: labels and initial prompts from the agent's SRM (random = "w/o RL").
    for name, policy in (("alignsam", agent), ("random", RandomPolicy())):
        env = SamPromptEnv(dataset=dataset, backend=config.backend, checkpoint=config.checkpoint, **agent.env_kwargs)
        records = run_episodes(policy, env, held_out, seeds=[0])
        hits = np.mean([h for r in records for h in r.on_target])
        miou = np.mean([r.ious[-1] for r in records])
        print(f"{name:>9}: foreground-hit rate {hits:.3f}, mean IoU after {len(records[0].ious)} clicks {miou:.3f}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
