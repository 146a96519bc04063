"""``sam-gym train-sapnet``: train SAPNet's proposal selection module (MIL) and write it atomically."""

from __future__ import annotations

import argparse
import json

from sam_gym.commands.common import add_backend_arguments, add_dataset_arguments, backend_from_args, dataset_from_args

HELP = "train SAPNet's proposal selection (MIL over mask proposals of one point per instance)"


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """Add the command's arguments."""
    add_dataset_arguments(parser, default="multi-instance-scenes")
    add_backend_arguments(parser)
    parser.add_argument("--epochs", type=int, default=20, help="passes over the images (default: %(default)s)")
    parser.add_argument("--lr", type=float, default=1e-3, help="Adam learning rate (default: %(default)s)")
    parser.add_argument("--scenes", type=int, default=32,
                        help="images of 'multi-instance-scenes' (seeded synthetic, several shapes each)")
    parser.add_argument("--class-mode", choices=("dataset", "agnostic"), default="dataset",
                        help="train on the dataset's classes or one 'object' class (default: %(default)s)")
    parser.add_argument("--seed", type=int, default=0, help="weights, negatives and synthetic scenes seed")
    parser.add_argument("--out", required=True, help="output folder: sapnet.pt + sapnet.json")


def run(args: argparse.Namespace) -> int:
    """Group the dataset's instances by image, train with a progress bar, save, print a summary."""
    from tqdm import tqdm

    from agents.aop.scenes import MultiInstanceScenes, group_scenes
    from agents.sapnet import fit, save_sapnet
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
    if args.class_mode == "dataset" and any(c is None for s in scenes for c in s.classes):
        raise ValueError(f"Expected class labels for every instance of {name} with --class-mode dataset "
                         f"(instance folders with class maps, COCO_MVal names); use --class-mode agnostic")
    backend = backend_from_args(args)
    bar = tqdm(total=args.epochs, desc=f"train-sapnet {name} ({backend.name})", unit="epoch")

    def progress(epoch: int, loss: float) -> None:
        bar.set_postfix(loss=f"{loss:.4f}")
        bar.update(1)

    model, losses = fit(backend, scenes, epochs=args.epochs, lr=args.lr, seed=args.seed, class_mode=args.class_mode,
                        embed=EmbeddingCache(backend).get, progress=progress)
    bar.close()
    path = save_sapnet(model, args.out, extra={
        "dataset": name, "images": len(scenes), "image_ids": [s.image_id for s in scenes], "epochs": args.epochs,
        "lr": args.lr, "seed": args.seed, "losses": losses, "backend_description": backend.description})
    print(json.dumps({"model": str(path), "classes": list(model.config.classes), "first_loss": round(losses[0], 5),
                      "last_loss": round(losses[-1], 5), "backend": backend.description}))
    return 0
