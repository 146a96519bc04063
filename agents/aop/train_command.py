"""``sam-gym train-aop``: train AoP-SAM's Prompt Predictor and write it atomically to ``--out``."""

from __future__ import annotations

import argparse
import json

from agents.scene_command import add_scene_arguments, epoch_progress, scenes_from_args
from sam_gym.commands.common import backend_from_args, check_out

HELP = "train AoP-SAM's prompt predictor (confidence map) on a dataset's instance masks"


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """Add the command's arguments."""
    add_scene_arguments(parser, epochs=40, lr=2e-3, out_files="aop_predictor.pt + aop_predictor.json")


def run(args: argparse.Namespace) -> int:
    """Group the dataset's instances by image, train with a progress bar, save, print a summary."""
    check_out(args.out)
    from agents.aop.predictor import save_predictor, train_predictor
    from sam_gym.cache import EmbeddingCache

    scenes, name = scenes_from_args(args)
    backend = backend_from_args(args)
    bar, progress = epoch_progress(args.epochs, f"train-aop {name} ({backend.name})")
    model, losses = train_predictor(backend, scenes, epochs=args.epochs, lr=args.lr, seed=args.seed,
                                    embed=EmbeddingCache(backend).get, progress=progress)
    bar.close()
    path = save_predictor(model, args.out, extra={
        "dataset": name, "images": len(scenes), "instances": sum(len(s.masks) for s in scenes),
        "image_ids": [s.image_id for s in scenes], "epochs": args.epochs, "lr": args.lr, "seed": args.seed,
        "losses": losses, "backend_description": backend.description})
    print(json.dumps({"predictor": str(path), "images": len(scenes), "first_loss": round(losses[0], 5),
                      "last_loss": round(losses[-1], 5), "backend": backend.description}))
    return 0
