"""Arguments shared by several sub-commands (dataset, backend, checkpoint, device, the output path)."""

from __future__ import annotations

import argparse
import tempfile
from pathlib import Path
from typing import Any

__all__ = ["add_backend_arguments", "add_dataset_arguments", "backend_from_args", "check_out", "dataset_from_args"]


def add_dataset_arguments(parser: argparse.ArgumentParser, default: str | None = "synthetic-shapes",
                          limit: bool = True) -> None:
    """Add ``--dataset``, ``--image-dir``, ``--void`` and (with ``limit``) ``--limit``."""
    parser.add_argument("--dataset", default=default, required=default is None,
                        help="'synthetic-clutter', 'synthetic-shapes', 'synthetic-multi', a folder with images/ and masks/ (e.g. "
                             "../shared/data/GrabCut) or a COCO .json annotation file with --image-dir"
                             + (" (default: %(default)s)" if default else ""))
    parser.add_argument("--image-dir", default=None, metavar="DIR",
                        help="folder of the images named in a COCO --dataset .json file")
    parser.add_argument("--void", type=int, action="append", default=None, metavar="VALUE",
                        help="mask value to ignore in a folder dataset (repeatable; the shared benchmark folders "
                             "have presets)")
    if limit:
        parser.add_argument("--limit", type=int, default=None, help="use only the first N samples")


def check_out(path: str | Path, *, file: bool = False, flag: str = "--out") -> Path:
    """Check, before any work starts, that an output path can be written; nothing is created.

    Args:
        path: The output folder (or, with ``file``, the output file).
        file: ``path`` is a file to write, not a folder.
        flag: The option's name, for messages.

    Returns:
        ``path`` with ``~`` expanded.

    Raises:
        ValueError: If ``path`` is an existing file where a folder is expected (or the reverse), lies
            below a file, or its nearest existing folder does not accept new files.
    """
    out = Path(path).expanduser()
    if file and out.is_dir():
        raise ValueError(f"Expected {flag} to be a file to write, got the folder {out}")
    if not file and out.exists() and not out.is_dir():
        raise ValueError(f"Expected {flag} to be a folder, got the existing file {out}; pass another {flag}")
    folder = out if out.is_dir() else out.parent
    while not folder.exists():
        folder = folder.parent
    if not folder.is_dir():
        raise ValueError(f"Expected {flag} {out} inside a folder, but {folder} is a file")
    try:
        with tempfile.TemporaryFile(dir=folder):
            pass
    except OSError as exc:
        raise ValueError(f"Expected {flag} {out} in a writable folder, but {folder} is not writable "
                         f"({exc.strerror or exc})") from exc
    return out


def add_backend_arguments(parser: argparse.ArgumentParser) -> None:
    """Add ``--backend``, ``--checkpoint``, ``--device`` and ``--half``."""
    parser.add_argument("--backend", default="classical",
                        help="classical | sam_vit_h | sam_vit_l | sam_vit_b | mobilesam_vit_t (default: %(default)s)")
    parser.add_argument("--checkpoint", default=None,
                        help="SAM weights: a path, 'auto' (download on first use) or 'random' (tests only)")
    parser.add_argument("--device", default=None, help="torch device for SAM backends (default: cuda if available)")
    parser.add_argument("--half", action="store_true", help="half precision on GPU (SAM backends)")


def backend_from_args(args: argparse.Namespace) -> Any:
    """Build the backend named by the parsed arguments."""
    from sam_gym.backends import make_backend

    kwargs: dict[str, Any] = {}
    if args.backend not in ("classical",):
        kwargs = {"checkpoint": args.checkpoint or "auto", "device": args.device, "half": args.half}
    elif args.checkpoint or args.half or args.device:
        raise ValueError("Expected no --checkpoint/--device/--half with --backend classical (it has no weights)")
    return make_backend(args.backend, **kwargs)


def dataset_from_args(args: argparse.Namespace) -> Any:
    """Build the dataset named by the parsed arguments.

    Honours ``--image-dir`` (COCO files), ``--void`` (folders), ``on_error`` (folders and COCO files,
    when the command has that option) and ``--limit``.

    Raises:
        ValueError: On an unknown dataset, a COCO file without ``--image-dir``, or an option the
            dataset kind does not take (``--void`` with a built-in dataset, for instance).
    """
    from sam_gym.data import make_dataset
    from sam_gym.data.subset import Subset

    path = Path(str(args.dataset)).expanduser()
    kind = "coco" if path.suffix.lower() == ".json" else "folder" if path.is_dir() else "builtin"
    image_dir, on_error = getattr(args, "image_dir", None), getattr(args, "on_error", None)
    for flag, value, needed, what in (("--void", args.void, "folder", "a folder dataset (images/ and masks/)"),
                                      ("--image-dir", image_dir, "coco", "a COCO .json --dataset")):
        if value and kind != needed:
            if kind == "builtin":
                make_dataset(args.dataset)  # an unknown name raises its own error first
            raise ValueError(f"Expected {flag} only with {what}, got --dataset {args.dataset}")
    kwargs: dict[str, Any] = {}
    if kind == "coco":
        if not image_dir:
            raise ValueError(f"Expected --image-dir DIR (the folder of its images) with the COCO file {path}")
        kwargs["image_dir"] = image_dir
    if args.void:
        kwargs["void_values"] = tuple(args.void)
    if on_error and kind != "builtin":
        kwargs["on_error"] = on_error
    dataset = make_dataset(args.dataset, **kwargs)
    if args.limit is not None:
        dataset = Subset(dataset, range(min(args.limit, len(dataset))))
    return dataset


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
    from agents.aop.scenes import MultiInstanceScenes, group_scenes

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
