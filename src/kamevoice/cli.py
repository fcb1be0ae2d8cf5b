"""The `kamevoice` command: one entry point, one subcommand per job.

Each package that offers commands has a `commands.py` with a
`register(subparsers)` function. Registration must stay cheap: handlers import
torch and friends only when they run, so `kamevoice --help` is instant.
"""

from __future__ import annotations

import argparse
import importlib
import importlib.util
import logging
import sys
from collections.abc import Sequence

import kamevoice

# Modules that contribute subcommands, in the order `--help` lists them.
COMMAND_MODULES: tuple[str, ...] = (
    "kamevoice.runtime.commands",
    "kamevoice.server.commands",
    "kamevoice.frontend.commands",
    "kamevoice.bench.commands",
    "kamevoice.data.commands",
    "kamevoice.knowledge.commands",
    "kamevoice.train.commands",
    "kamevoice.eval.commands",
    "kamevoice.tiny.commands",
)


def add_group(sub: argparse._SubParsersAction, name: str, help: str) -> argparse._SubParsersAction:
    """Add a command group (`kamevoice NAME SUBCOMMAND`) and return its subparsers."""
    group = sub.add_parser(name, help=help, description=help)
    group.set_defaults(group_parser=group)
    return group.add_subparsers(dest=f"{name}_command", metavar="SUBCOMMAND")


def _module_exists(name: str) -> bool:
    try:
        return importlib.util.find_spec(name) is not None
    except ModuleNotFoundError:  # a parent package is absent
        return False


def build_parser() -> argparse.ArgumentParser:
    """The full argument parser, every registered subcommand included."""
    parser = argparse.ArgumentParser(
        prog="kamevoice",
        description="KAME voice assistants: an instant speech front-end fed by a knowledgeable back-end.",
    )
    parser.add_argument("--version", action="version", version=f"kamevoice {kamevoice.__version__}")
    parser.add_argument("-v", "--verbose", action="count", default=0, help="more logging (-vv for debug)")
    parser.add_argument("--config", metavar="FILE", help="settings file (TOML or YAML); env KAMEVOICE_CONFIG")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    for name in COMMAND_MODULES:
        if not _module_exists(name):
            continue  # an optional part that is not present in this checkout
        importlib.import_module(name).register(sub)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """Run the `kamevoice` command line; returns the process exit code."""
    parser = build_parser()
    args = parser.parse_args(argv)
    logging.basicConfig(
        level=(logging.WARNING, logging.INFO, logging.DEBUG)[min(args.verbose, 2)],
        format="%(asctime)s %(levelname)s %(name)s: %(message)s",
    )
    if args.config:
        import os

        os.environ["KAMEVOICE_CONFIG"] = args.config
    handler = getattr(args, "handler", None)
    if handler is None:
        # A group (e.g. `kamevoice bench`) without its subcommand prints its own help.
        (getattr(args, "group_parser", None) or parser).print_help()
        return 2
    from kamevoice.errors import KameVoiceError

    try:
        return int(handler(args) or 0)
    except KameVoiceError as exc:
        print(f"kamevoice: error: {exc}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        return 130


if __name__ == "__main__":
    sys.exit(main())
