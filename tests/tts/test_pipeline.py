"""The TTS pipeline on tiny random models: streaming, the duration cap, audio-only generation,
voices and cloning, cancellation and errors."""

import math
import threading

import numpy as np
import pytest
import soundfile as sf
import torch
from tts_fixtures import tiny_speech_lm, tiny_tts

from conftest import speechlike
from stepaudio.errors import OptionError
from stepaudio.tokenizer.interleave import AUDIO_TOKENS_PER_SECOND
from stepaudio.tts.pipeline import (
    MAX_DURATION_FACTOR,
    MIN_DURATION_FACTOR,
    expected_seconds,
)
from stepaudio.tts.prompt import SPEED_TAG_RATES, tagged_rate
from stepaudio.tts.text import normalize


@pytest.fixture(scope="module")
def lm(tmp_path_factory):
    return tiny_speech_lm(tmp_path_factory.mktemp("lm"))


@pytest.fixture
def tts(tmp_path, lm):
    return tiny_tts(tmp_path, lm)


def spy_generation(monkeypatch, tts):
    """Record each prompt and the audio indices the LM gives for it."""
    calls, generate = [], tts.lm.generate

    def recording(prompt, max_new_tokens, cancel=None, seed=None, min_new_tokens=0):
        calls.append({"prompt": prompt, "cap": max_new_tokens, "floor": min_new_tokens, "tokens": []})
        for token in generate(prompt, max_new_tokens, cancel, seed, min_new_tokens):
            calls[-1]["tokens"].append(token)
            yield token

    monkeypatch.setattr(tts.lm, "generate", recording)
    return calls


@pytest.mark.parametrize(("text", "language"), [("Hi there.", "en"), ("你好。", "zh")])
def test_speech_never_runs_past_twice_the_expected_duration(tts, text, language):
    pcm, rate = tts.synthesize(text, seed=0)
    assert rate == tts.sample_rate == 22050 and pcm.dtype == np.float32 and pcm.ndim == 1
    expected = expected_seconds(normalize(text), language)
    assert 0 < len(pcm) / rate <= MAX_DURATION_FACTOR * expected + 0.05  # a random LM never stops by itself


def test_sentences_are_spoken_one_by_one_in_the_voice_prompt_format(tts, monkeypatch):
    calls = spy_generation(monkeypatch, tts)
    chunks = list(tts.stream("One. Two!", tags=["快速1"], seed=0))
    assert len(calls) == 2 and len(chunks) >= 2
    text = [tts.lm.tokenizer.decode(call["prompt"]) for call in calls]
    transcript = "<|BOT|>human\nThis is my voice.<|EOT|><|BOT|>assistant\n<audio_"  # the voice as the example turn
    assert all(transcript in t for t in text)
    assert text[0].endswith("<|BOT|>human\n(快速1)One.<|EOT|><|BOT|>assistant\n")
    assert text[1].endswith("<|BOT|>human\n(快速1)Two!<|EOT|><|BOT|>assistant\n")
    for call, sentence in zip(calls, ("One.", "Two!"), strict=True):
        expected_tokens = expected_seconds(sentence, "en", ["快速1"]) * AUDIO_TOKENS_PER_SECOND
        assert call["cap"] == int(MAX_DURATION_FACTOR * expected_tokens)
        assert call["floor"] == 5 * math.ceil(MIN_DURATION_FACTOR * expected_tokens / 5) <= len(call["tokens"])
    total = sum(len(call["tokens"]) for call in calls)
    seconds = total / AUDIO_TOKENS_PER_SECOND / SPEED_TAG_RATES["快速1"]  # mini's decoder renders the tag
    assert abs(sum(map(len, chunks)) / 22050 - seconds) < 0.1  # every token was voiced


def test_only_speech_can_come_out(tts, monkeypatch):
    """Even an LM that prefers text (e.g. repeating the transcript) can only choose audio or the end."""
    head = tts.lm.model.lm_head.weight
    original = head.detach().clone()
    try:
        with torch.no_grad():
            head[: tts.lm.tokenizer.audio_offset] *= 100  # text tokens now dominate every distribution
        calls = spy_generation(monkeypatch, tts)
        tts.synthesize("Hi.", seed=1)
    finally:
        with torch.no_grad():
            head.copy_(original)  # the LM is shared by the module's tests
    tokens = calls[0]["tokens"]
    assert tokens and all(0 <= t < 5120 for t in tokens)


def test_cancel_stops_the_stream(tts):
    cancel = threading.Event()
    stream = tts.stream("The first sentence is here. The second one follows it.", cancel=cancel, seed=0)
    first = next(stream)
    cancel.set()
    assert len(first) > 0 and list(stream) == []


def test_cloning_from_a_multichannel_prompt_file(tts, tmp_path, monkeypatch):
    stereo = np.stack([speechlike(1.2, 48_000, seed=5)] * 2, axis=1)
    sf.write(tmp_path / "prompt.wav", stereo, 48_000)
    calls = spy_generation(monkeypatch, tts)
    pcm, _ = tts.synthesize("Hi.", prompt_wav=tmp_path / "prompt.wav", prompt_text="Some 2 words.", seed=0)
    samples, rate, prompt = tts.fake_tokenizer.calls[-1]
    assert samples.ndim == 1 and rate == 16_000 and prompt  # mono 16 kHz, trimmed as a prompt
    assert "<|BOT|>human\nSome two words.<|EOT|>" in tts.lm.tokenizer.decode(calls[0]["prompt"])
    assert len(pcm) > 0


def test_builtin_voice_features_are_cached(tts):
    entry = tts.voices.get("anna")
    tts.synthesize("Hi.", seed=0)
    assert entry.cache_file("mini").is_file() and len(tts.fake_tokenizer.calls) == 1
    tts._prepared.clear()
    tts.synthesize("Hi.", seed=0)
    assert len(tts.fake_tokenizer.calls) == 1  # tokens and embedding came from the cache


def test_speed_time_scales_the_same_speech(tts):
    normal, _ = tts.synthesize("Hi there.", seed=3)
    faster, _ = tts.synthesize("Hi there.", seed=3, speed=1.25)
    assert abs(len(faster) - len(normal) / 1.25) <= 2 * 256  # the same tokens over 1/1.25 of the mel frames


def test_mini_renders_the_speed_tags_in_the_decoder(tts):
    rendered, _ = tts.synthesize("Hi there.", tags=["快速2"], seed=3)
    tts.lm.follows_speed_tags = True  # as the official LM: the tags are its business
    spoken, _ = tts.synthesize("Hi there.", tags=["快速2"], seed=3)
    assert abs(len(rendered) - len(spoken) / SPEED_TAG_RATES["快速2"]) <= 2 * 256
    assert tagged_rate(1.0, ["慢速1", "高兴1"]) == SPEED_TAG_RATES["慢速1"]
    assert tagged_rate(2.0, ["快速2"]) == 2.0  # kept in the decoder's range


def test_bad_requests_are_option_errors(tts, tmp_path):
    for kwargs, message in [
        ({"text": " "}, "no text"),
        ({"text": "Hi.", "voice": "nobody"}, "unknown voice"),
        ({"text": "Hi.", "tags": ["loud"]}, "unknown style tag"),
        ({"text": "Hi.", "speed": 4.0}, "speed must be between"),
        ({"text": "Hi.", "prompt_text": "words"}, "both the prompt wav"),
        ({"text": "Hi.", "voice": "anna", "prompt_wav": tmp_path / "x.wav", "prompt_text": "x"}, "not both"),
    ]:
        with pytest.raises(OptionError, match=message):
            tts.synthesize(**kwargs)


def test_punctuation_only_text_gives_no_audio(tts):
    pcm, _ = tts.synthesize("...")
    assert len(pcm) == 0


def test_a_voice_prompt_that_fills_the_context_is_refused(tts):
    with pytest.raises(OptionError, match="shorter voice prompt"):
        list(tts.lm.generate(list(range(1, tts.lm.max_len + 1)), 10))


def test_an_incomplete_export_says_what_is_missing(tmp_path):
    from stepaudio.errors import ModelNotFound
    from stepaudio.tts.speech_lm import SpeechLM

    (tmp_path / "lm.json").write_text("{}")
    with pytest.raises(ModelNotFound, match="lm.safetensors, tokenizer.model, tts.json"):
        SpeechLM.from_mini(tmp_path)


@pytest.mark.slow
def test_mini_speaks_every_test_sentence_within_half_to_twice_its_expected_duration():
    from stepaudio.errors import ModelNotFound
    from stepaudio.tts import TTS

    try:
        mini = TTS.load("mini")
    except ModelNotFound as error:
        pytest.skip(str(error))
    for text in (
        "Hello there, how are you today?",
        "The train to the station is forty minutes late.",
        "你好，今天天气很好。",
    ):
        pcm, rate = mini.synthesize(text, seed=0)
        ratio = len(pcm) / rate / expected_seconds(normalize(text), "zh" if "你" in text else "en")
        assert 0.5 <= ratio <= MAX_DURATION_FACTOR, (text, ratio)
