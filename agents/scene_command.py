"""What the multi-instance trainers' commands share (``sam-gym train-aop``, ``sam-gym train-sapnet``).

Both train on scenes (an image with all its instance masks, :mod:`sam_gym.data.scenes`): the
seeded synthetic ``multi-instance-scenes`` or a dataset's samples grouped by image.
"""

from __future__ import annotations

import argparse
from typing import Any

from sam_gym.commands.common import add_backend_arguments, add_dataset_arguments, dataset_from_args

__all__ = ["add_scene_arguments", "epoch_progress", "scenes_from_args"]


def add_scene_arguments(parser: argparse.ArgumentParser, epochs: int, lr: float, out_files: str) -> None:
    """Add the arguments of the multi-instance trainers (``train-aop``, ``train-sapnet``)."""
    add_dataset_arguments(parser, default="multi-instance-scenes")
    add_backend_arguments(parser)
    parser.add_argument("--epochs", type=int, default=epochs, help="passes over the images (default: %(default)s)")
    parser.add_argument("--lr", type=float, default=lr, help="Adam learning rate (default: %(default)s)")
    parser.add_argument("--scenes", type=int, default=32,
                        help="images of 'multi-instance-scenes' (seeded synthetic, several shapes each)")
    parser.add_argument("--seed", type=int, default=0, help="weights, sampling and synthetic scenes seed")
    parser.add_argument("--out", required=True, help=f"output folder: {out_files}")


def scenes_from_args(args: argparse.Namespace) -> tuple[list[Any], str]:
    """Return the multi-instance scenes (all instances of an image together) and their name."""
    from sam_gym.data.scenes import MultiInstanceScenes, group_scenes

    if args.epochs < 1:
        raise ValueError(f"Expected --epochs >= 1, got {args.epochs}")
    if args.dataset == "multi-instance-scenes":
        dataset = MultiInstanceScenes(n=args.scenes, seed=args.seed)
        scenes = dataset.scenes()[: args.limit] if args.limit else dataset.scenes()
        return scenes, f"{dataset.name}(n={args.scenes}, seed={args.seed})"
    dataset = dataset_from_args(args)
    return group_scenes(dataset), dataset.name


def epoch_progress(total: int, desc: str) -> tuple[Any, Any]:
    """Return a tqdm bar over epochs and the ``progress(epoch, loss)`` callback that advances it."""
    from tqdm import tqdm

    bar = tqdm(total=total, desc=desc, unit="epoch")

    def progress(epoch: int, loss: float) -> None:
        bar.set_postfix(loss=f"{loss:.4f}")
        bar.update(1)

    return bar, progress
