"""Arguments shared by the ``sam-gym`` commands (dataset, backend, checkpoint, device).

Public: the training commands of ``agents`` and the scripts of ``benchmarks/`` build their
arguments with these helpers too, so every command spells ``--backend`` and ``--dataset`` alike.
"""

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
    from sam_gym.backends import available_backends

    parser.add_argument("--backend", default="classical",
                        help=f"{' | '.join(available_backends())} (default: %(default)s)")
    parser.add_argument("--checkpoint", default=None,
                        help="SAM weights: a path, 'auto' (download on first use) or 'random' (tests only)")
    parser.add_argument("--device", default=None, help="torch device for SAM backends (default: cuda if available)")
    parser.add_argument("--half", action="store_true", help="half precision on GPU (SAM backends)")


def backend_from_args(args: argparse.Namespace) -> Any:
    """Build the backend named by the parsed arguments (a weight-free one refuses ``--checkpoint`` etc.)."""
    from sam_gym.backends import make_backend

    return make_backend(args.backend, checkpoint=args.checkpoint, device=args.device, half=args.half)


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
