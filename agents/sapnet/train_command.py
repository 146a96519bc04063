"""``sam-gym train-sapnet``: train SAPNet's proposal selection module (MIL) and write it atomically."""

from __future__ import annotations

import argparse
import json

from agents.scene_command import add_scene_arguments, epoch_progress, scenes_from_args
from sam_gym.commands.common import backend_from_args, check_out

HELP = "train SAPNet's proposal selection (MIL over mask proposals of one point per instance)"


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """Add the command's arguments."""
    add_scene_arguments(parser, epochs=20, lr=1e-3, out_files="sapnet.pt + sapnet.json")
    parser.add_argument("--class-mode", choices=("dataset", "supercategory", "agnostic"), default="dataset",
                        help="train on the dataset's classes, their COCO supercategories (COCO_MVal names, VOC "
                             "class ids) or one 'object' class (default: %(default)s)")


def run(args: argparse.Namespace) -> int:
    """Group the dataset's instances by image, train with a progress bar, save, print a summary."""
    check_out(args.out)
    from agents.sapnet import fit, save_sapnet
    from agents.sapnet.labels import label_source
    from sam_gym.cache import EmbeddingCache

    scenes, name = scenes_from_args(args)
    if args.class_mode != "agnostic" and any(c is None for s in scenes for c in s.classes):
        raise ValueError(f"Expected class labels for every instance of {name} with --class-mode {args.class_mode} "
                         f"(instance folders with class maps, COCO_MVal names); use --class-mode agnostic")
    source = label_source(name) if args.class_mode == "supercategory" else None
    backend = backend_from_args(args)
    bar, progress = epoch_progress(args.epochs, f"train-sapnet {name} ({backend.name})")
    model, losses = fit(backend, scenes, epochs=args.epochs, lr=args.lr, seed=args.seed, class_mode=args.class_mode,
                        label_source=source, embed=EmbeddingCache(backend).get, progress=progress)
    bar.close()
    path = save_sapnet(model, args.out, extra={
        "dataset": name, "images": len(scenes), "image_ids": [s.image_id for s in scenes], "epochs": args.epochs,
        "class_mode": args.class_mode,
        "lr": args.lr, "seed": args.seed, "losses": losses, "backend_description": backend.description})
    print(json.dumps({"model": str(path), "classes": list(model.config.classes), "first_loss": round(losses[0], 5),
                      "last_loss": round(losses[-1], 5), "backend": backend.description}))
    return 0
