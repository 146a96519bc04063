"""The ``sam-gym`` command line: one sub-command per module of :mod:`sam_gym.commands`.

Each command module defines ``HELP`` (one line), ``add_arguments(parser)`` and ``run(args) -> int``.
Errors a user can fix (bad path, unknown name, missing weights) are printed as one line, without a
traceback, and exit with status 2.
"""

from __future__ import annotations

import argparse
import importlib
import logging
import sys
from collections.abc import Sequence

__all__ = ["COMMANDS", "main"]

#: command name -> module implementing it
COMMANDS: dict[str, str] = {
    "cache": "sam_gym.commands.cache",
    "bench": "sam_gym.commands.bench",
    "eval": "sam_gym.commands.eval",
    "demo": "sam_gym.commands.demo",
    "train-aop": "sam_gym.commands.train_aop",
    "train-sapnet": "sam_gym.commands.train_sapnet",
    "train": "sam_gym.commands.train",
    "convert-run": "agents.alignsam.convert_command",
}


def build_parser() -> argparse.ArgumentParser:
    """Return the top-level parser with every sub-command registered."""
    from sam_gym import __version__

    parser = argparse.ArgumentParser(prog="sam-gym", description="Segment Anything as a Gymnasium environment.")
    parser.add_argument("--version", action="version", version=f"sam-gym {__version__}")
    parser.add_argument("-v", "--verbose", action="store_true", help="log debug messages")
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    for name, module_name in COMMANDS.items():
        module = importlib.import_module(module_name)
        cmd = sub.add_parser(name, help=module.HELP, description=module.HELP)
        module.add_arguments(cmd)
        cmd.set_defaults(_run=module.run)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """Run the ``sam-gym`` command line and return its exit status."""
    parser = build_parser()
    args = parser.parse_args(argv)
    level = logging.DEBUG if args.verbose else logging.INFO
    logging.basicConfig(level=level, format="%(levelname)s %(name)s: %(message)s")
    try:
        return int(args._run(args) or 0)
    except (ValueError, FileNotFoundError, ImportError, RuntimeError) as exc:
        if args.verbose:
            raise
        print(f"sam-gym {args.command}: error: {exc}", file=sys.stderr)
        return 2


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
