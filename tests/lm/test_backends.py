"""The LM backends without vLLM installed: the engine options refuse what cannot run before anything
loads, and the remote backend speaks vLLM's streamed completions API (checked here against a stand-in
server; `make test-vllm` runs it against a real `vllm serve`)."""

import importlib.util
import json
import socket
import subprocess
import sys
import threading
import time

import pytest
import torch

from stepaudio.errors import EngineError, OptionError
from stepaudio.lm import EngineOptions, Sampling
from stepaudio.lm.backends.remote import RemoteBackend
from stepaudio.lm.model import LMConfig

CONFIG = LMConfig(vocab_size=100, hidden_size=8, intermediate_size=16, num_layers=1, num_heads=2, num_kv_heads=1)


@pytest.mark.parametrize(
    "options, message",
    [
        ({"engine": "vlm"}, "give auto, local, llama.cpp, vllm or the URL"),
        ({"quantization": "awq"}, "need --engine vllm"),
        ({"tensor_parallel": 2}, "our engine runs on one device"),
        ({"engine": "vllm", "gpu_memory": 1.5}, "fraction of each GPU"),
        ({"engine": "http://127.0.0.1:1", "quantization": "fp8"}, "give --quantization and --tensor-parallel-size"),
    ],
)
def test_options_that_cannot_run_are_refused(options, message):
    with pytest.raises(OptionError, match=message):
        EngineOptions(**options)


@pytest.mark.skipif(importlib.util.find_spec("vllm") is not None, reason="vLLM is installed here")
def test_vllm_not_installed_says_how_to_get_it(mini_chat):
    from stepaudio.lm.loaders import load_lm

    with pytest.raises(EngineError, match=r"pip install 'stepaudio\[vllm\]'"):
        load_lm(mini_chat.source, engine=EngineOptions("vllm"))


def test_a_url_that_does_not_answer_is_a_clear_error():
    with socket.socket() as probe:  # a port nobody listens on
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    started = time.monotonic()
    with pytest.raises(EngineError, match=f"no vLLM server answers at http://127.0.0.1:{port}"):
        RemoteBackend(f"http://127.0.0.1:{port}", CONFIG)
    assert time.monotonic() - started < 10


def test_the_cli_refuses_a_bad_engine_without_a_traceback():
    command = [sys.executable, "-m", "stepaudio.cli", "generate", "--engine", "http://127.0.0.1:1", "hi"]
    result = subprocess.run(command, capture_output=True, text=True, timeout=120)
    assert result.returncode != 0
    assert "no vLLM server answers at http://127.0.0.1:1" in result.stderr
    assert "Traceback" not in result.stderr


class StandIn:
    """A stand-in for `vllm serve`: /v1/models, and /v1/completions streaming the token ids it is told
    to, one SSE chunk each, as vLLM does with return_token_ids. Records each request's body."""

    def __init__(self, tokens: list[int], delay: float = 0.0):
        from fastapi import FastAPI, Request
        from fastapi.responses import StreamingResponse

        self.tokens, self.delay, self.bodies, self.streamed = tokens, delay, [], 0
        app = FastAPI()

        @app.get("/v1/models")
        def models():
            return {"data": [{"id": "stand-in", "max_model_len": 64}]}

        @app.post("/v1/completions")
        async def completions(request: Request):
            self.bodies.append(await request.json())

            async def events():
                import asyncio

                for token in self.tokens:
                    await asyncio.sleep(self.delay)
                    self.streamed += 1
                    yield f"data: {json.dumps({'choices': [{'token_ids': [token]}]})}\n\n"
                yield "data: [DONE]\n\n"

            return StreamingResponse(events(), media_type="text/event-stream")

        self.app = app

    def __enter__(self):
        import uvicorn

        with socket.socket() as probe:
            probe.bind(("127.0.0.1", 0))
            self.port = probe.getsockname()[1]
        self.server = uvicorn.Server(uvicorn.Config(self.app, host="127.0.0.1", port=self.port, log_level="error"))
        threading.Thread(target=self.server.run, daemon=True).start()
        while not self.server.started:
            time.sleep(0.02)
        return f"http://127.0.0.1:{self.port}"

    def __exit__(self, *exc):
        self.server.should_exit = True


def test_remote_streams_token_ids_and_sends_our_sampling():
    stand_in = StandIn([5, 6, 7, 2, 9])
    with stand_in as url:
        backend = RemoteBackend(url + "/v1", CONFIG)
        decoder = backend.decoder(max_len=1000)
        assert decoder.capacity == 64  # the server's max_model_len bounds it
        allowed = torch.zeros(100, dtype=torch.bool)
        allowed[[2, 5, 6, 7]] = True
        sampling = Sampling(temperature=0.7, top_k=50, max_new_tokens=40, stop_ids=(2,), seed=3, repetition_window=10)
        assert list(decoder.stream([1, 2, 3], sampling, allowed=allowed)) == [5, 6, 7]  # the stop id ends it
        backend.close()
    body = stand_in.bodies[0]
    assert body["prompt"] == [1, 2, 3] and body["model"] == "stand-in" and body["stream"] and body["return_token_ids"]
    assert body["stop_token_ids"] == [2] and body["ignore_eos"]  # our stops only, not the model's own
    assert (body["temperature"], body["top_k"], body["seed"], body["max_tokens"]) == (0.7, 50, 3, 40)
    assert body["allowed_token_ids"] == [2, 5, 6, 7]
    assert body["vllm_xargs"] == {"repetition_window": 10, "repetition_limit": 2}


def test_remote_answers_are_capped_by_the_room_left():
    stand_in = StandIn([5] * 10)
    with stand_in as url:
        decoder = RemoteBackend(url, CONFIG).decoder()
        with pytest.raises(OptionError, match="does not fit"):
            list(decoder.stream(list(range(64)), Sampling(max_new_tokens=8)))
        list(decoder.stream(list(range(60)), Sampling(max_new_tokens=8)))
    assert stand_in.bodies[-1]["max_tokens"] == 4


def test_cancelling_a_remote_stream_closes_the_request():
    stand_in = StandIn(list(range(10, 60)), delay=0.05)
    cancel, tokens = threading.Event(), []
    with stand_in as url:
        for token in RemoteBackend(url, CONFIG).decoder().stream([1], Sampling(max_new_tokens=50), cancel):
            tokens.append(token)
            if len(tokens) == 3:
                cancel.set()
        time.sleep(0.5)  # the server notices the closed connection and stops streaming
        streamed = stand_in.streamed
    assert tokens == [10, 11, 12]
    assert streamed < 20


@pytest.fixture(scope="module")
def mini_llama_cpp(mini_chat):
    pytest.importorskip("llama_cpp", reason="llama-cpp-python is not installed (the llama-cpp extra)")
    from stepaudio.lm.loaders import load_lm

    return load_lm(mini_chat.source, engine=EngineOptions("llama.cpp"))


def test_llama_cpp_answers_with_our_tokenizer_and_rules(mini_llama_cpp, mini_chat):
    """llama.cpp computes the GGUF's 4-bit blocks itself (its greedy answer to the Paris question is
    SmolLM2's 4-bit one, "L'Étoile, la Marseillaise", as our bfloat16 model's): the same question with the
    voice chat's instructions is answered; our rules and masks hold."""
    lm, stops = mini_llama_cpp, mini_llama_cpp.stop_ids()
    messages = [
        {"role": "system", "content": "You are a helpful voice assistant. Answer in one or two short sentences."},
        {"role": "user", "content": "What is the capital of France?"},
    ]
    question = lm.chat.encode(lm.tokenizer, messages)
    answer = list(lm.backend.decoder().stream(question, Sampling(max_new_tokens=24, stop_ids=stops)))
    assert "Paris" in lm.tokenizer.decode(answer)
    ha = lm.tokenizer.encode("ha ha ha ha ha ha ha ha")  # the official rule: no token a third time in a row
    ruled = list(lm.backend.decoder().stream(ha, Sampling(max_new_tokens=24, repetition_window=10)))
    assert all(a != b for a, b in zip(ruled, ruled[1:], strict=False)), lm.tokenizer.decode(ruled)
    allowed = torch.zeros(mini_chat.config.vocab_size, dtype=torch.bool)
    allowed[:3000] = True
    floor = Sampling(max_new_tokens=12, min_new_tokens=12, stop_ids=stops)
    tokens = list(lm.backend.decoder().stream(question, floor, allowed=allowed))
    assert len(tokens) == 12 and max(tokens) < 3000


def test_llama_cpp_stops_when_cancelled_and_refuses_what_it_cannot_run(mini_llama_cpp, tmp_path):
    from lm_fixtures import write_step1_checkpoint

    from stepaudio.lm.loaders import load_lm

    cancel, tokens = threading.Event(), []
    question = mini_llama_cpp.tokenizer.encode("Once upon a time")
    for token in mini_llama_cpp.backend.decoder().stream(question, Sampling(max_new_tokens=200), cancel):
        tokens.append(token)
        if len(tokens) == 3:
            cancel.set()
    assert len(tokens) == 3
    write_step1_checkpoint(tmp_path / "step1")
    with pytest.raises(EngineError, match="llama.cpp runs GGUF files"):
        load_lm(tmp_path / "step1", engine=EngineOptions("llama.cpp"))
    with pytest.raises(OptionError, match="GGUF file's own quantisation"):
        EngineOptions("llama.cpp", quantization="int8")
