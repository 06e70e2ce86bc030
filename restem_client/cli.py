"""The `restem` command line. Subcommands are registered here as they become real."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from restem_client import __version__


def score(args: argparse.Namespace) -> int:
    from evals.score import default_output, score_file
    from restem_client.local_verifier import LocalVerifier

    if not args.input.is_file():
        print(f"restem score: input file not found: {args.input}", file=sys.stderr)
        return 2
    output = args.output or default_output(args.input)
    summary = score_file(args.input, output, LocalVerifier(timeout_s=args.timeout))
    print(f"wrote {output}", file=sys.stderr)
    return 1 if summary.invalid else 0


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="restem",
        description="ReST-EM self-training: sample, verify, filter, fine-tune, evaluate.",
    )
    parser.add_argument("--version", action="version", version=f"restem {__version__}")
    commands = parser.add_subparsers(dest="command", metavar="COMMAND")

    p = commands.add_parser("score", help="score a JSONL file of generations",
                            description="Score each line (task_id, completion, gold; optional "
                            "mode 'gsm8k' and extract false). Writes the results JSONL and a "
                            ".summary.json beside it; exits 1 if any line was malformed.")
    p.add_argument("input", type=Path, help="input JSONL")
    p.add_argument("-o", "--output", type=Path, help="results JSONL (default: "
                   "<input>_results.jsonl beside the input)")
    p.add_argument("--timeout", type=float, default=5.0, help="seconds per symbolic check")
    p.set_defaults(handler=score)
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
