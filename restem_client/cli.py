"""The `restem` command line. Subcommands are registered here as they become real."""

from __future__ import annotations

import argparse
import sys

from restem_client import __version__


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="restem",
        description="ReST-EM self-training: sample, verify, filter, fine-tune, evaluate.",
    )
    parser.add_argument("--version", action="version", version=f"restem {__version__}")
    parser.add_subparsers(dest="command", metavar="COMMAND")
    return parser


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    if args.command is None:
        parser.print_help()
        return 0
    return args.handler(args)


if __name__ == "__main__":
    sys.exit(main())
