"""Arguments shared by the ``sam-gym`` commands (dataset, backend, checkpoint, device, the output path).

Public: the training commands of ``agents`` and the scripts of ``benchmarks/`` build their
arguments with these helpers too, so every command spells ``--backend`` and ``--dataset`` alike.
"""

from __future__ import annotations

import argparse
import shlex
import tempfile
from collections.abc import Callable, Collection
from pathlib import Path
from typing import Any

__all__ = [
    "add_backend_arguments",
    "add_dataset_arguments",
    "backend_from_args",
    "canonical_command",
    "check_out",
    "dataset_from_args",
]


def add_dataset_arguments(parser: argparse.ArgumentParser, default: str | None = "synthetic-shapes",
                          limit: bool = True) -> None:
    """Add ``--dataset``, ``--image-dir``, ``--void`` and (with ``limit``) ``--limit``."""
    parser.add_argument("--dataset", default=default, required=default is None,
                        help="'synthetic-clutter', 'synthetic-shapes', 'synthetic-multi', a folder with images/ and "
                             "masks/ (e.g. ../shared/data/GrabCut) or a COCO .json annotation file with --image-dir"
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
        tempfile.TemporaryFile(dir=folder).close()  # created and removed: the folder takes new files
    except OSError as exc:
        raise ValueError(f"Expected {flag} {out} in a writable folder, but {folder} is not writable "
                         f"({exc.strerror or exc})") from exc
    return out


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


def canonical_command(prog: str, add_arguments: Callable[[argparse.ArgumentParser], None],
                      args: argparse.Namespace, skip: Collection[str] = ()) -> str:
    """The command line that reproduces a run: every option of the command spelled out with its value.

    Options come in the order ``add_arguments`` adds them, under their first long name. An option
    whose value is ``None`` (not given, no default) or whose help is suppressed (a deprecated
    alias) is left out; a flag is written when set; a repeatable option once per value.

    Args:
        prog: The program and command, e.g. ``"sam-gym eval"``.
        add_arguments: The command's ``add_arguments`` (the options are read from the parser it builds).
        args: The parsed arguments, with the values the run used.
        skip: Destinations to leave out (options the run ignored).
    """
    parser = argparse.ArgumentParser(add_help=False)
    add_arguments(parser)
    argv = shlex.split(prog)
    for action in parser._actions:  # argparse has no public list of a parser's options
        if not action.option_strings or action.help == argparse.SUPPRESS or action.dest in skip:
            continue
        flag = [s for s in action.option_strings if s.startswith("--")][:1] or action.option_strings[:1]
        value = getattr(args, action.dest, None)
        if action.nargs == 0:  # a flag (store_true, store_false, store_const)
            if value == action.const:
                argv += flag
        elif value is None:
            continue
        elif isinstance(value, (list, tuple)):
            if action.nargs is None:  # a repeatable option (action="append"): once per value
                for item in value:
                    argv += [*flag, str(item)]
            else:  # one option with several values (nargs="+")
                argv += [*flag, *(str(item) for item in value)]
        else:
            argv += [*flag, str(value)]
    return shlex.join(argv)
