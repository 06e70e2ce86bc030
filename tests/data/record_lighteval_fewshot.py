"""Record which few-shot exemplars lighteval picks for BBH and GSM8K, by running lighteval's
own sampler methods on the local data files (the fixture lighteval_fewshot.json).

lighteval itself is not installed here; its `FewShotSampler` methods are read out of its
source file (`src/lighteval/tasks/prompt_manager.py` at the commit smollm's SmolLM2
evaluation pins, ea46419a93fb390e8f694f7c6c64c1e684487c9d) and run as they are, with the
calls its `LightevalTask` makes around them: one random.Random seeded 42 shuffles the
documents, then each document in that order asks for its exemplars with few-shot seed 0.

    python tests/data/record_lighteval_fewshot.py PROMPT_MANAGER_PY DATA_DIR > fixture.json
"""

from __future__ import annotations

import ast
import json
import random
import sys
import textwrap
from collections import defaultdict
from dataclasses import dataclass
from itertools import cycle
from pathlib import Path
from types import SimpleNamespace
from typing import Any

SOURCE = ("lighteval commit ea46419a93fb390e8f694f7c6c64c1e684487c9d (the one smollm's SmolLM2 "
          "evaluation pins): its FewShotSampler methods run on the local files by "
          "tests/data/record_lighteval_fewshot.py; BBH: each task's balanced pool (row indices) "
          "and the exemplars of row 0 and of the pool's first row; GSM8K: the train rows drawn "
          "for four test rows")
METHODS = ("sample_fewshot_examples", "_init_fewshot_pool", "_sample_from_pool",
           "_init_fewshot_sampling_balanced", "_init_fewshot_sampling_random")


@dataclass
class Doc:  # the fields lighteval's equality sees for these tasks
    query: str
    choices: list[str]
    gold_index: int

    def get_golds(self) -> list[str]:
        return [self.choices[self.gold_index]]


class PromptManager:
    @staticmethod
    def doc_to_fewshot_sorting_class(doc: Doc) -> str:
        return doc.get_golds()[0]


def sampler_class(source: str) -> type:
    """lighteval's FewShotSampler methods, unchanged, in a class of their own."""
    tree = ast.parse(source)
    body = [ast.get_source_segment(source, f) for node in ast.walk(tree)
            if isinstance(node, ast.ClassDef) and node.name == "FewShotSampler"
            for f in node.body if isinstance(f, ast.FunctionDef) and f.name in METHODS]
    namespace: dict[str, Any] = {"Doc": Doc, "random": random, "defaultdict": defaultdict,
                                 "cycle": cycle, "PromptManager": PromptManager}
    exec("class Sampler:\n" + "".join(textwrap.indent(textwrap.dedent(f), "    ") + "\n"
                                      for f in body), namespace)
    return namespace["Sampler"]


def picks(sampler_cls: type, pool: list[Doc], docs: list[Doc], shots: int, sorting: str,
          with_sampling: bool) -> tuple[Any, dict[int, list[int]]]:
    """The exemplars (pool indices) each document gets, in lighteval's document order."""
    sampler = sampler_cls.__new__(sampler_cls)
    sampler.task = SimpleNamespace(fewshot_docs=lambda: list(pool))
    sampler.few_shots_select = SimpleNamespace(value=SimpleNamespace(
        sorting=sorting, with_sampling=with_sampling, fewshotpool_unique=True))
    sampler._fewshot_cache = {}
    rnd = random.Random()
    rnd.seed(42)
    order = list(range(len(docs)))
    rnd.shuffle(order)
    index = {id(d): k for k, d in enumerate(pool)}
    chosen = {i: [index[id(e)] for e in sampler.sample_fewshot_examples(
        num_fewshot=shots, variance_seed=0, sampler=rnd, formatted_doc=docs[i])] for i in order}
    return sampler._fewshot_cache[0], chosen


def main(prompt_manager: str, data_dir: str) -> None:
    sampler_cls = sampler_class(Path(prompt_manager).read_text())
    data = Path(data_dir)
    out: dict[str, Any] = {"source": SOURCE, "bbh": {}, "gsm8k": {}}
    for path in sorted((data / "bbh" / "bbh").glob("*.json")):
        rows = json.loads(path.read_text())["examples"]
        docs = [Doc(f"Question: {r['input']}\nAnswer: ", [r["target"]], 0) for r in rows]
        cache, chosen = picks(sampler_cls, docs, docs, 3, "balanced", False)
        pool = [next(k for k, d in enumerate(docs) if d is e) for e in cache]
        out["bbh"][path.stem] = {"pool": pool, "0": chosen[0], str(pool[0]): chosen[pool[0]]}
    read = lambda name: [json.loads(line) for line in (data / "gsm8k" / name).open()]  # noqa: E731
    train, test = read("train.jsonl"), read("test.jsonl")
    pool = [Doc(f"Question: {r['question']}\nAnswer:", [f" {r['answer']}"], 0) for r in train]
    docs = [Doc(f"Question: {r['question']}\nAnswer:", [f" {r['answer']}"], 0) for r in test]
    _, chosen = picks(sampler_cls, pool, docs, 5, "random", True)
    out["gsm8k"] = {str(i): chosen[i] for i in (0, 1, 784, len(test) - 1)}
    json.dump(out, sys.stdout, indent=1)
    print()


if __name__ == "__main__":
    main(*sys.argv[1:3])
