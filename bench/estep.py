"""E-step wall time and samples/s: verification streamed shard by shard (restem_client.estep)
against verification after all sampling (evals.evaluate, as the loop did before), with 1
engine in a local child process and 2 Ray actors on a two-raylet cluster on this machine.
Same problems, params and model for every row, in one run; medians over --rounds.

    .venv/bin/python bench/estep.py --problems 24 -n 4 --max-tokens 48 --rounds 2
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


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", default="smollm2-135m-instruct")
    parser.add_argument("--problems", type=int, default=24)
    parser.add_argument("-n", type=int, default=4)
    parser.add_argument("--max-tokens", type=int, default=48)
    parser.add_argument("--shard-size", type=int, default=4)
    parser.add_argument("--rounds", type=int, default=2)
    args = parser.parse_args()

    import ray
    from ray.cluster_utils import Cluster

    from evals.evaluate import evaluate
    from evals.sampling import preset
    from evals.tasks import load
    from restem_client.client import open_verifier
    from restem_client.engines import EngineSpec, LocalEngines, RayEngines
    from restem_client.estep import run_estep
    from restem_client.models import resolve

    problems = load("arith", "train", None)[: args.problems]
    params = preset("estep", n=args.n, max_tokens=args.max_tokens, seed=7)
    spec = EngineSpec("hf", str(resolve(args.model)), {"batch_size": 16})
    verifier = open_verifier(None, None, sandbox="auto")
    cluster = Cluster(initialize_head=True, head_node_args={"num_cpus": 1})
    cluster.add_node(num_cpus=1)
    ray.init(address=cluster.address, log_to_driver=False, logging_level="ERROR")

    def streamed(engines: object, out: Path) -> None:
        run_estep(problems, engines, verifier, params, out, shard_size=args.shard_size,
                  chat=True)

    def after(engines: object, out: Path) -> None:
        evaluate(problems, engines, verifier, params, out, chat=True)

    rows = {}
    for replicas in (1, 2):
        for name, step in (("streamed", streamed), ("after sampling", after)):
            times = []
            for _ in range(args.rounds):
                engines = LocalEngines(spec) if replicas == 1 else RayEngines(spec, 2)
                if replicas > 1:  # loading the engines is not part of the step
                    ray.get([actor.where.remote() for actor in engines.actors])
                out = Path(tempfile.mkdtemp(prefix="bench-estep-"))
                started = time.perf_counter()
                step(engines, out)
                times.append(time.perf_counter() - started)
                engines.close()
                shutil.rmtree(out)
            rows[(replicas, name)] = statistics.median(times)
    ray.shutdown()
    cluster.shutdown()
    verifier.close()
    samples = len(problems) * args.n
    print(f"# bench/estep.py: {len(problems)} arith problems x {args.n}, {args.max_tokens} "
          f"tokens, shards of {args.shard_size}, HF sampler, median of {args.rounds}")
    print("| engines | verification | wall s | samples/s | vs. after sampling |")
    print("| --- | --- | ---: | ---: | ---: |")
    for (replicas, name), wall in rows.items():
        ratio = rows[(replicas, "after sampling")] / wall
        print(f"| {replicas} | {name} | {wall:.1f} | {samples / wall:.2f} | {ratio:.2f}x |")


if __name__ == "__main__":
    main()
