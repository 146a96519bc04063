"""Train RLlib's PPO on SamPrompt-v0 with action masking, then play the trained policy greedily.

    python examples/train_rllib.py                      # ~10 iterations of 2000 steps, 2 env runners
    python examples/train_rllib.py --tiny               # a few hundred steps, no remote runner (smoke test)
    python examples/train_rllib.py --address auto       # on a running Ray cluster

Needs ``pip install "sam-gym[ray]"``. The env creator is registered with ``ray.tune.register_env``
(``sam_gym.rllib_env``); each env runner builds its own backend (the weight-free classical one here,
a graph cut, NOT SAM; ``--backend sam_vit_b --checkpoint PATH`` for real SAM) and sees the
observation ``{"action_mask", "observations"}`` of RLlib's action-masking RLModule, so clicked
patches are never chosen. Runs offline; see docs/scaling.md.
"""

from __future__ import annotations

import argparse
import os
import sys
import tempfile
from pathlib import Path


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--tiny", action="store_true", help="200 env steps in the driver, 2 greedy episodes")
    parser.add_argument("--iterations", type=int, default=10, help="training iterations (default: %(default)s)")
    parser.add_argument("--env-runners", type=int, default=2, help="remote env runners (default: %(default)s)")
    parser.add_argument("--backend", default="classical", help="classical (NOT SAM) | sam_vit_b | ...")
    parser.add_argument("--checkpoint", default=None, help="SAM weights path (SAM backends)")
    parser.add_argument("--cache-dir", default=None, help="embedding cache folder every runner reads "
                                                          "(precompute it with sam-gym cache [--ray])")
    parser.add_argument("--address", default=None, help="Ray cluster to join (default: a new local instance)")
    parser.add_argument("--out", default=None, help="checkpoint folder (default: a temporary folder)")
    args = parser.parse_args()
    try:
        import ray

        from agents.rllib import load_module, ppo_config, run_greedy, train
    except ImportError as exc:
        print(f'{exc}\nThis example needs Ray: pip install "sam-gym[ray]"', file=sys.stderr)
        return 2

    env_config = {"env_id": "SamPrompt-v0", "backend": args.backend, "checkpoint": args.checkpoint,
                  "cache_dir": args.cache_dir, "max_clicks": 5, "dataset_kwargs": {"n": 40}}
    sizes = {"num_env_runners": args.env_runners, "train_batch_size": 2000, "minibatch_size": 250, "num_epochs": 4}
    iterations, episodes = args.iterations, 5
    if args.tiny:
        env_config["dataset_kwargs"] = {"n": 8}
        sizes = {"num_env_runners": 0, "train_batch_size": 100, "minibatch_size": 50, "num_epochs": 1,
                 "hidden": (32,)}
        iterations, episodes = 2, 2
    os.environ.setdefault("RAY_USAGE_STATS_ENABLED", "0")
    ray.init(address=args.address, include_dashboard=False, **({"num_cpus": 2} if args.tiny else {}))
    try:
        with tempfile.TemporaryDirectory(prefix="rllib-") as tmp:
            out = Path(args.out) if args.out else Path(tmp) / "checkpoint"
            summary = train(ppo_config(env_config, **sizes), iterations, checkpoint_dir=out)
            print(f"trained {summary.env_steps} env steps, {summary.episodes} episodes, return "
                  f"{summary.episode_return_mean:.2f}, policy loss {summary.policy_loss:.4f} -> {summary.checkpoint}")
            played = run_greedy(load_module(out), env_config, episodes=episodes)
    finally:
        ray.shutdown()
    for i, episode in enumerate(played):
        print(f"greedy episode {i}: return {episode.episode_return:.1f}, {episode.length} clicks, final IoU "
              f"{episode.final_iou:.3f}, masked actions chosen {episode.masked_choices}")
    print(f"Backend: {args.backend}{' (weight-free graph cut, NOT SAM)' if args.backend == 'classical' else ''}")
    return 0 if all(e.masked_choices == 0 for e in played) else 1


if __name__ == "__main__":
    sys.exit(main())
