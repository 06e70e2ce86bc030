"""E-step wall time and samples/s on the code task: verification streamed shard by shard
against verification after all sampling (both `evals.evaluate`, `stream=True` / `False`),
with one engine in a local child process and, with --ray, two Ray actors on a two-raylet
cluster on this machine. Same problems, params and model for every row, in one run; medians
over --rounds. The verifier is the loop's in-process one (MBPP's tests in the sandbox); its
share of the wall time is the time the verifier spent on the step's checks. Each step gets a
fresh engine and verifier (loaded before the clock starts), so neither vLLM's prefix cache
nor the sandbox's caches carry over from the step before, and the two ways take turns at
going first.

    .venv/bin/python bench/estep.py --task mbpp --problems 32 -n 8 --max-tokens 160 \
        --shard-size 8 --backend vllm --rounds 2
"""

from __future__ import annotations

import argparse
import shutil
import statistics
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))


class TimedVerifier:
    """The verifier, with the seconds its check_many calls took (observation only)."""

    def __init__(self, verifier: object) -> None:
        self.verifier, self.seconds = verifier, 0.0

    def check_many(self, checks: list) -> list:
        started = time.perf_counter()
        try:
            return self.verifier.check_many(checks)
        finally:
            self.seconds += time.perf_counter() - started


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", default="smollm2-135m-instruct")
    parser.add_argument("--task", default="mbpp")
    parser.add_argument("--data-dir", type=Path,
                        default=Path(__file__).resolve().parents[2] / "shared" / "data")
    parser.add_argument("--backend", choices=("hf", "vllm"), default="vllm")
    parser.add_argument("--sandbox", default="auto")
    parser.add_argument("--problems", type=int, default=32)
    parser.add_argument("-n", type=int, default=8)
    parser.add_argument("--max-tokens", type=int, default=160)
    parser.add_argument("--shard-size", type=int, default=8)
    parser.add_argument("--no-chat", dest="chat", action="store_false",
                        help="the task's few-shot prompt instead of a chat")
    parser.add_argument("--rounds", type=int, default=2)
    parser.add_argument("--ray", action="store_true", help="also two Ray actors")
    args = parser.parse_args()

    from evals.evaluate import evaluate
    from evals.sampling import preset
    from evals.tasks import load, show_tests
    from restem_client.client import open_verifier
    from restem_client.engines import EngineSpec, LocalEngines, RayEngines
    from restem_client.models import resolve
    from restem_client.sampling import sampler_options

    problems = load(args.task, "train", args.data_dir)[: args.problems]
    if args.task.startswith("mbpp"):  # as the loop's E-step prompts them
        problems = [show_tests(p, 1) for p in problems]
    params = preset("estep", n=args.n, max_tokens=args.max_tokens, seed=7)
    options = sampler_options(args.backend, batch_size=16, max_model_len=4096)
    spec = EngineSpec(args.backend, str(resolve(args.model)), options)
    replica_counts = (1, 2) if args.ray else (1,)
    if args.ray:
        import ray
        from ray.cluster_utils import Cluster

        cluster = Cluster(initialize_head=True, head_node_args={"num_cpus": 1})
        cluster.add_node(num_cpus=1)
        ray.init(address=cluster.address, log_to_driver=False, logging_level="ERROR")

    rows: dict[tuple[int, str], list[tuple[float, float, float]]] = {}
    ways = [("streamed", True), ("after sampling", False)]
    for round_ in range(args.rounds):  # rounds outside, so both ways see the same machine
        for replicas in replica_counts:
            for name, stream in ways if round_ % 2 == 0 else ways[::-1]:
                engines = LocalEngines(spec) if replicas == 1 else RayEngines(spec, 2)
                if replicas > 1:  # loading the engines is not part of the step
                    ray.get([actor.where.remote() for actor in engines.actors])
                verifier = TimedVerifier(open_verifier(None, None, sandbox=args.sandbox))
                verifier.verifier.core.start_sandbox()  # not at the first check, on the clock
                out = Path(tempfile.mkdtemp(prefix="bench-estep-"))
                started = time.perf_counter()
                metrics = evaluate(problems, engines, verifier, params, out,
                                   shard_size=args.shard_size, stream=stream,
                                   data_dir=args.data_dir, chat=args.chat, label=name)
                wall = time.perf_counter() - started
                rows.setdefault((replicas, name), []).append(
                    (wall, verifier.seconds, metrics["accuracy"]))
                shutil.rmtree(out)
                engines.close()
                verifier.verifier.close()
    if args.ray:
        ray.shutdown()
        cluster.shutdown()
    samples = len(problems) * args.n
    print(f"# bench/estep.py: {len(problems)} {args.task} train problems x {args.n}, "
          f"{args.max_tokens} tokens, {'chat' if args.chat else 'few-shot'} prompts, shards "
          f"of {args.shard_size}, {args.backend} sampler, "
          f"sandbox {args.sandbox}, median of {args.rounds}")
    print("| engines | verification | wall s | samples/s | verifier s | verifier share "
          "| vs. after sampling | reward |")
    print("| --- | --- | ---: | ---: | ---: | ---: | ---: | ---: |")
    medians = {key: [statistics.median(column) for column in zip(*runs, strict=True)]
               for key, runs in rows.items()}
    for (replicas, name), (wall, verify_s, reward) in medians.items():
        ratio = medians[(replicas, "after sampling")][0] / wall
        print(f"| {replicas} | {name} | {wall:.1f} | {samples / wall:.2f} | {verify_s:.2f} "
              f"| {100 * verify_s / wall:.1f} % | {ratio:.2f}x | {100 * reward:.1f} % |")


if __name__ == "__main__":
    main()
