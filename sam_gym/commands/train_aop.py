"""``sam-gym train-aop``: train AoP-SAM's Prompt Predictor and write it atomically to ``--out``."""

from __future__ import annotations

import argparse
import json

from sam_gym.commands.common import add_backend_arguments, add_dataset_arguments, backend_from_args, dataset_from_args

HELP = "train AoP-SAM's prompt predictor (confidence map) on a dataset's instance masks"


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """Add the command's arguments."""
    add_dataset_arguments(parser, default="multi-instance-scenes")
    add_backend_arguments(parser)
    parser.add_argument("--epochs", type=int, default=40, help="passes over the images (default: %(default)s)")
    parser.add_argument("--lr", type=float, default=2e-3, help="Adam learning rate (default: %(default)s)")
    parser.add_argument("--scenes", type=int, default=32,
                        help="images of 'multi-instance-scenes' (seeded synthetic, several shapes each)")
    parser.add_argument("--seed", type=int, default=0, help="weights, shuffling and synthetic scenes seed")
    parser.add_argument("--out", required=True, help="output folder: aop_predictor.pt + aop_predictor.json")


def run(args: argparse.Namespace) -> int:
    """Group the dataset's instances by image, train with a progress bar, save, print a summary."""
    from tqdm import tqdm

    from agents.aop.predictor import save_predictor, train_predictor
    from agents.aop.scenes import MultiInstanceScenes, group_scenes
    from sam_gym.cache import EmbeddingCache

    if args.epochs < 1:
        raise ValueError(f"Expected --epochs >= 1, got {args.epochs}")
    if args.dataset == "multi-instance-scenes":
        dataset = MultiInstanceScenes(n=args.scenes, seed=args.seed)
        scenes = dataset.scenes()[: args.limit] if args.limit else dataset.scenes()
        name = f"{dataset.name}(n={args.scenes}, seed={args.seed})"
    else:
        dataset = dataset_from_args(args)
        scenes, name = group_scenes(dataset), dataset.name
    backend = backend_from_args(args)
    cache = EmbeddingCache(backend)
    bar = tqdm(total=args.epochs, desc=f"train-aop {name} ({backend.name})", unit="epoch")

    def progress(epoch: int, loss: float) -> None:
        bar.set_postfix(loss=f"{loss:.4f}")
        bar.update(1)

    model, losses = train_predictor(backend, scenes, epochs=args.epochs, lr=args.lr, seed=args.seed,
                                    embed=cache.get, progress=progress)
    bar.close()
    path = save_predictor(model, args.out, extra={
        "dataset": name, "images": len(scenes), "instances": sum(len(s.masks) for s in scenes),
        "image_ids": [s.image_id for s in scenes], "epochs": args.epochs, "lr": args.lr, "seed": args.seed,
        "losses": losses, "backend_description": backend.description})
    print(json.dumps({"predictor": str(path), "images": len(scenes), "first_loss": round(losses[0], 5),
                      "last_loss": round(losses[-1], 5), "backend": backend.description}))
    return 0
