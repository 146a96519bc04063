"""``sam-gym bench``: decoder, env, vector-env and training throughput, env overhead, encoder speed, memory.

Example (CPU, weight-free classical backend, which is not SAM)::

    sam-gym bench --batch 1,8 --steps 200 --out bench-classical.json

The env's own cost, with the zero-cost ``null`` backend (a measuring stub, NOT a segmenter; with
``--device`` its outputs are torch tensors on that device)::

    sam-gym bench --backend null --batch 1,8,64,256 --rss-steps 0 --out bench-null.json

GPU, SAM ViT-B decoder in bf16, batch 256::

    sam-gym bench --backend sam_vit_b --checkpoint auto --device cuda --half --steps 500 --out bench-gpu.json

The measuring functions live in :mod:`sam_gym.benchmark`; this module parses, runs and writes.
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path
from typing import Any

from sam_gym.atomic import atomic_write_bytes
from sam_gym.commands.common import (
    add_backend_arguments,
    add_dataset_arguments,
    backend_from_args,
    check_out,
    dataset_from_args,
)

HELP = "measure decoder, env, vector-env and PPO throughput, env overhead, encoder speed and memory growth"


def _batches(text: str) -> list[int]:
    try:
        values = [int(v) for v in text.split(",") if v.strip()]
    except ValueError:
        raise argparse.ArgumentTypeError(f"Expected comma-separated positive integers, got {text!r}") from None
    if not values or any(v < 1 for v in values):
        raise argparse.ArgumentTypeError(f"Expected comma-separated positive integers, got {text!r}")
    return values


def _backend(args: argparse.Namespace) -> Any:
    """The backend of the arguments; ``--backend null --device D`` builds the stub with torch outputs on ``D``."""
    if args.backend != "null" or not args.device:
        return backend_from_args(args)
    if args.checkpoint or args.half:
        raise ValueError(f"Expected no --checkpoint or --half with --backend null (a measuring stub without weights), "
                         f"got --checkpoint {args.checkpoint} --half {args.half}")
    from sam_gym.backends.null import NullBackend

    return NullBackend(device=args.device)


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """Add the ``bench`` arguments."""
    add_dataset_arguments(parser)
    add_backend_arguments(parser)
    parser.add_argument("--batch", type=_batches, default=[1, 8, 64, 256],
                        help="vector-env batch sizes, comma-separated, for the vector, decoder-ratio and null-backend "
                             "overhead figures (default: 1,8,64,256)")
    parser.add_argument("--steps", type=int, default=200,
                        help="timed single-env steps (and the same steps' decoder calls) (default: %(default)s)")
    parser.add_argument("--vector-steps", type=int, default=None,
                        help="timed vector-env steps per batch size and pass (default: max(2, steps / 4))")
    parser.add_argument("--train-envs", type=int, default=8,
                        help="sub-envs of the end-to-end PPO measurement (default: %(default)s)")
    parser.add_argument("--train-n-steps", type=int, default=16,
                        help="PPO rollout steps per sub-env (default: %(default)s)")
    parser.add_argument("--train-rollouts", type=int, default=2,
                        help="timed PPO rollouts, each with its update, 0 to skip (default: %(default)s)")
    parser.add_argument("--rss-steps", type=int, default=10_000,
                        help="env steps of the resident-memory growth measurement, 0 to skip (default: %(default)s)")
    parser.add_argument("--encoder-images", type=int, default=4,
                        help="images encoded for the encoder speed, one of them warm-up (default: %(default)s)")
    parser.add_argument("--info-iou", choices=("full", "none"), default="full",
                        help="env option: per-step full-resolution IoU in info, or only at episode end")
    parser.add_argument("--seed", type=int, default=0, help="seed of the envs and actions (default: %(default)s)")
    parser.add_argument("--out", type=Path, required=True, help="JSON file to write")


def run(args: argparse.Namespace) -> int:
    """Run the benchmark, print the figures and write the JSON atomically."""
    check_out(args.out, file=True)
    from sam_gym.benchmark import run_benchmark

    if args.steps < 1 or args.rss_steps < 0 or args.encoder_images < 2:
        raise ValueError(f"Expected --steps >= 1, --rss-steps >= 0 and --encoder-images >= 2, got "
                         f"{args.steps}, {args.rss_steps}, {args.encoder_images}")
    if args.vector_steps is not None and args.vector_steps < 1:
        raise ValueError(f"Expected --vector-steps >= 1, got {args.vector_steps}")
    if args.train_envs < 1 or args.train_n_steps < 1 or args.train_rollouts < 0:
        raise ValueError(f"Expected --train-envs >= 1, --train-n-steps >= 1 and --train-rollouts >= 0, got "
                         f"{args.train_envs}, {args.train_n_steps}, {args.train_rollouts}")
    backend = _backend(args)
    dataset = dataset_from_args(args)
    results = run_benchmark(
        backend,
        dataset,
        batches=args.batch,
        steps=args.steps,
        vector_steps=args.vector_steps,
        rss_steps=args.rss_steps,
        encoder_images=args.encoder_images,
        seed=args.seed,
        env_kwargs={"info_iou": args.info_iou},
        train_envs=args.train_envs,
        train_n_steps=args.train_n_steps,
        train_rollouts=args.train_rollouts,
    )
    results["arguments"] = {k: str(v) for k, v in sorted(vars(args).items()) if not k.startswith("_")}
    out = atomic_write_bytes(Path(args.out), (json.dumps(results, indent=2) + "\n").encode())
    print(f"wrote {out}")
    return 0
