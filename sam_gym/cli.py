"""The ``sam-gym`` command line: one sub-command per module named in :data:`COMMANDS`.

Each command module defines ``HELP`` (one line), ``add_arguments(parser)`` and ``run(args) -> int``.
The library's commands live in :mod:`sam_gym.commands`; the training commands live beside their
trainers in ``agents`` and are named here by module string only (``sam_gym`` never imports
``agents``; the module is imported when the parser is built). Errors a user can fix (bad path,
unknown name, missing weights) are printed as one line, without a traceback, and exit with status 2.
"""

from __future__ import annotations

import argparse
import logging
import sys
from collections.abc import Sequence

from sam_gym.registry import Entry, lookup

__all__ = ["COMMANDS", "main"]

#: command name -> the module implementing it
COMMANDS: dict[str, Entry] = {
    "cache": Entry("sam_gym.commands.cache"),
    "bench": Entry("sam_gym.commands.bench"),
    "eval": Entry("sam_gym.commands.eval"),
    "compare": Entry("sam_gym.commands.compare"),
    "demo": Entry("agents.demo_command"),
    "train-aop": Entry("agents.aop.train_command"),
    "train-sapnet": Entry("agents.sapnet.train_command"),
    "train": Entry("agents.alignsam.train_command"),
    "convert-run": Entry("agents.alignsam.convert_command"),
}


def build_parser() -> argparse.ArgumentParser:
    """Return the top-level parser with every sub-command registered."""
    from sam_gym import __version__

    parser = argparse.ArgumentParser(prog="sam-gym", description="Segment Anything as a Gymnasium environment.")
    parser.add_argument("--version", action="version", version=f"sam-gym {__version__}")
    parser.add_argument("-v", "--verbose", action="store_true", help="log debug messages")
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    for name, entry in COMMANDS.items():
        module = entry.resolve()
        cmd = sub.add_parser(name, help=module.HELP, description=module.HELP)
        module.add_arguments(cmd)
        cmd.set_defaults(_run=module.run)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """Run the ``sam-gym`` command line and return its exit status."""
    argv = list(sys.argv[1:] if argv is None else argv)
    parser = build_parser()
    command = next((a for a in argv if not a.startswith("-")), None)
    if command is not None:
        try:
            lookup(COMMANDS, command, kind="command")
        except ValueError as exc:
            parser.error(f"invalid choice: {exc}")
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
