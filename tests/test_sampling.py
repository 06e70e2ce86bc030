"""Sampling params, presets and the transformers sampler on the real SmolLM2 checkpoint."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from evals.sampling import SamplingParams, cut_at_stop, preset
from restem_client.sampling import make_sampler

PROMPTS = ["Q: What is 2 + 3?\nA:", "The capital of France is",
           "Write a short poem about the sea.\n"]


def test_presets_are_the_papers() -> None:
    assert (preset("estep").temperature, preset("estep").top_k) == (0.7, 40)
    assert preset("greedy").greedy
    assert (preset("passk").temperature, preset("passk").top_p) == (1.0, 0.95)
    assert preset("estep", n=32).n == 32


@pytest.mark.parametrize("bad, named", [
    ({"n": 0}, "n must"), ({"temperature": -1}, "temperature"), ({"top_p": 0}, "top_p"),
    ({"top_k": -1}, "top_k"), ({"max_tokens": 0}, "max_tokens"),
    ({"temperature": 0, "n": 4}, "greedy"),
])
def test_bad_params_name_the_field(bad: dict, named: str) -> None:
    with pytest.raises(ValueError, match=named):
        SamplingParams(**bad)


def test_unknown_preset_and_field() -> None:
    with pytest.raises(ValueError, match="unknown sampling preset 'hot'"):
        preset("hot")
    with pytest.raises(ValueError, match="temp"):
        preset("estep", temp=1.0)


def test_cut_at_stop_takes_the_earliest() -> None:
    assert cut_at_stop("a\n\nb Q: c", ("Q:", "\n\n")) == ("a", True)
    assert cut_at_stop("abc", ("x",)) == ("abc", False)


def test_unknown_backend_and_missing_model(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="unknown sampling backend"):
        make_sampler("tgi", "x")
    with pytest.raises(FileNotFoundError, match="does not exist"):
        make_sampler("hf", str(tmp_path / "nope"))


@pytest.fixture(scope="module")
def hf(smollm2: Path):
    sampler = make_sampler("hf", str(smollm2), batch_size=4)
    yield sampler
    sampler.close()


def test_hf_returns_n_completions_per_prompt(hf) -> None:
    out = hf.generate(PROMPTS, preset("estep", n=3, max_tokens=24))
    assert [len(c) for c in out] == [3, 3, 3]
    for completions in out:
        for c in completions:
            assert 1 <= c.tokens <= 24 and c.finish_reason in ("stop", "length")
            assert c.finish_reason == "stop" or c.tokens == 24
    assert len({c.text for c in out[2]}) > 1  # sampled, not copied


def test_hf_same_seed_same_samples(hf) -> None:
    params = preset("passk", n=2, max_tokens=16, seed=7)
    first = hf.generate(PROMPTS, params)
    assert hf.generate(PROMPTS, params) == first
    assert hf.generate(PROMPTS, preset("passk", n=2, max_tokens=16, seed=8)) != first


def test_hf_greedy_does_not_depend_on_batching(smollm2: Path, hf) -> None:
    """Left padding: a prompt gives the same greedy text alone and in a padded batch."""
    params = preset("greedy", max_tokens=16)
    batched = hf.generate(PROMPTS, params)
    alone = [hf.generate([p], params)[0] for p in PROMPTS]
    assert batched == alone


def test_hf_stop_strings_and_length(hf) -> None:
    out = hf.generate(["Count: 1, 2, 3,"], preset("greedy", max_tokens=40, stop=(",",)))[0][0]
    assert "," not in out.text and out.finish_reason == "stop"
    cut = hf.generate(PROMPTS[2:], preset("greedy", max_tokens=3))[0][0]
    assert (cut.tokens, cut.finish_reason) == (3, "length")


def test_hf_chat_prompt_uses_the_template(hf) -> None:
    chat = [{"role": "user", "content": "What is 2 + 3? Answer with a number."}]
    reply = hf.generate([chat], preset("greedy", max_tokens=20))[0][0]
    assert "5" in reply.text and reply.finish_reason == "stop"
    assert "<|im_start|>" not in reply.text


def test_prepare_model_cli_writes_a_checkpoint_that_generates(tmp_path: Path) -> None:
    out = tmp_path / "smol"
    run = subprocess.run([sys.executable, "-m", "restem_client.cli", "prepare-model",
                          "smollm2-135m-instruct", "--out", str(out)],
                         capture_output=True, text=True, timeout=600)
    assert run.returncode == 0, run.stderr[-2000:]
    assert run.stdout.strip() == str(out)
    for name in ("config.json", "model.safetensors", "tokenizer.json", "chat_template.jinja"):
        assert (out / name).is_file(), name
    config = json.loads((out / "config.json").read_text())
    assert "quantization_config" not in config  # plain weights, loadable by vLLM
    check = json.loads((out / "restem-prepared.json").read_text())
    assert "5" in check["check_reply"]
