"""Arguments shared by several sub-commands (dataset, backend, checkpoint, device)."""

from __future__ import annotations

import argparse
from typing import Any

__all__ = ["add_backend_arguments", "add_dataset_arguments", "backend_from_args", "dataset_from_args"]


def add_dataset_arguments(parser: argparse.ArgumentParser, default: str | None = "synthetic-shapes") -> None:
    """Add ``--dataset``, ``--void`` and ``--limit``."""
    parser.add_argument("--dataset", default=default, required=default is None,
                        help="'synthetic-shapes', 'synthetic-multi' or a folder with images/ and masks/ "
                             "(default: %(default)s)")
    parser.add_argument("--void", type=int, action="append", default=None, metavar="VALUE",
                        help="mask value to ignore (repeatable; the shared benchmark folders have presets)")
    parser.add_argument("--limit", type=int, default=None, help="use only the first N samples")


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
    """Build the dataset named by the parsed arguments (honouring ``--void`` and ``--limit``)."""
    from sam_gym.data import make_dataset
    from sam_gym.data.subset import Subset

    kwargs: dict[str, Any] = {}
    if args.void:
        kwargs["void_values"] = tuple(args.void)
    dataset = make_dataset(args.dataset, **kwargs)
    if args.limit is not None:
        dataset = Subset(dataset, range(min(args.limit, len(dataset))))
    return dataset
