"""Our engine and vLLM (in this process, and a real `vllm serve`) give the same greedy tokens for the
same prompt and rules; cancelling a stream aborts the vLLM request; what vLLM cannot run is refused
before anything starts."""

import threading
import time

import pytest
from servers import running_requests

from stepaudio.errors import EngineError
from stepaudio.lm import EngineOptions, Sampling
from stepaudio.lm.loaders import load_lm

QUESTIONS = ["What is the capital of France?", "Name three colours.", "Write a haiku about the sea."]


def prompt_of(lm, question: str) -> list[int]:
    return lm.chat.encode(lm.tokenizer, [{"role": "user", "content": question}])


def same_greedy_tokens(lm, reference, sampling: Sampling, allowed=None) -> None:
    for question in QUESTIONS:
        prompt = prompt_of(lm, question)
        ours = list(reference.backend.decoder().stream(prompt, sampling, allowed=allowed))
        theirs = list(lm.backend.decoder().stream(prompt, sampling, allowed=allowed))
        assert theirs == ours, (question, lm.tokenizer.decode(theirs), reference.tokenizer.decode(ours))


@pytest.fixture(params=["in-process", "remote"])
def engine_lm(request, mini_local):
    if request.param == "in-process":
        return request.getfixturevalue("mini_vllm")
    return load_lm(mini_local.source, engine=EngineOptions(request.getfixturevalue("vllm_server")))


def test_greedy_answers_are_our_engines(engine_lm, mini_local):
    same_greedy_tokens(engine_lm, mini_local, Sampling(max_new_tokens=48, stop_ids=mini_local.stop_ids()))


def test_the_official_repetition_rule_runs_in_vllm(engine_lm, mini_local):
    """On a text that invites repeating, the rule (a logits processor in vLLM) bans the same tokens ours
    bans; a repetition penalty is applied as ours applies it."""
    prompt = mini_local.tokenizer.encode("ha ha ha ha ha ha ha ha")
    rule = Sampling(max_new_tokens=32, repetition_window=10, repetition_limit=2)
    ours = list(mini_local.backend.decoder().stream(prompt, rule))
    assert ours != list(mini_local.backend.decoder().stream(prompt, Sampling(max_new_tokens=32))), (
        "the rule changed nothing here: the test would not see it missing"
    )
    assert list(engine_lm.backend.decoder().stream(prompt, rule)) == ours
    same_greedy_tokens(engine_lm, mini_local, Sampling(max_new_tokens=32, repetition_penalty=1.3))


def test_allowed_tokens_and_a_length_floor(engine_lm, mini_local):
    import torch

    allowed = torch.zeros(mini_local.config.vocab_size, dtype=torch.bool)
    allowed[:5000] = True
    allowed[list(mini_local.stop_ids())] = True
    same_greedy_tokens(engine_lm, mini_local, Sampling(max_new_tokens=24, stop_ids=mini_local.stop_ids()), allowed)
    floor = Sampling(max_new_tokens=40, min_new_tokens=30, stop_ids=mini_local.stop_ids())
    assert len(list(engine_lm.backend.decoder().stream(prompt_of(engine_lm, "Say hi."), floor))) >= 30


def test_cancelling_aborts_the_request(engine_lm, mini_local):
    cancel, tokens = threading.Event(), []
    stream = engine_lm.backend.decoder().stream(
        prompt_of(engine_lm, QUESTIONS[2]), Sampling(max_new_tokens=500), cancel
    )
    for token in stream:
        tokens.append(token)
        if len(tokens) == 3:
            cancel.set()
    assert len(tokens) == 3
    # the engine is free again: no request left decoding, and the next answer is whole
    if engine_lm.backend.name == "vllm":
        deadline = time.monotonic() + 10
        while engine_lm.backend.engine.output_processor.get_num_unfinished_requests():
            assert time.monotonic() < deadline, "the cancelled request still runs in vLLM"
            time.sleep(0.1)
    else:
        deadline = time.monotonic() + 10
        while running_requests(engine_lm.backend.base):
            assert time.monotonic() < deadline, "the cancelled request still runs in vllm serve"
            time.sleep(0.1)
    same_greedy_tokens(engine_lm, mini_local, Sampling(max_new_tokens=8, stop_ids=mini_local.stop_ids()))


def test_what_vllm_cannot_run_is_refused_before_it_starts(tmp_path, mini_local):
    from lm_fixtures import write_step1_checkpoint

    write_step1_checkpoint(tmp_path / "step1")
    started = time.monotonic()
    with pytest.raises(EngineError, match="square-root ALiBi"):
        load_lm(tmp_path / "step1", engine=EngineOptions("vllm"))
    with pytest.raises(EngineError, match="GPUs; this machine has none"):
        load_lm(mini_local.source, engine=EngineOptions("vllm", tensor_parallel=2))
    with pytest.raises(EngineError, match="vLLM cannot run"):
        load_lm(mini_local.source, engine=EngineOptions("vllm", quantization="awq"))  # not an AWQ checkpoint
    assert time.monotonic() - started < 60  # nothing was started
