"""What the model can read decides what a spoken turn becomes; the official listener streams tokens."""

from types import SimpleNamespace

import numpy as np
import pytest

from stepaudio.realtime.listen import Heard, StepAudioListener
from stepaudio.realtime.respond import ChatResponder


class _Chat:
    """Just enough of a LanguageModel for ChatResponder's bookkeeping."""

    def __init__(self, vocab: int = 10, text: int = 10):
        self.config = SimpleNamespace(vocab_size=vocab)
        self.tokenizer = SimpleNamespace(vocab_size=text)

    def stop_ids(self):
        return (0,)


@pytest.mark.parametrize("reads_audio, expected", [(False, "hello"), (True, "<audio_3><audio_1027>")])
def test_the_user_turn_is_text_or_audio_tokens_by_capability(reads_audio, expected):
    from stepaudio.lm.sampling import Sampling

    responder = ChatResponder(_Chat(), Sampling(), reads_audio=reads_audio)
    assert responder.user_content(Heard("hello", np.array([3, 1027]), 0.1)) == expected


def test_answers_are_text_even_where_the_model_has_audio_tokens():
    from stepaudio.lm.sampling import Sampling

    assert ChatResponder(_Chat(), Sampling(), reads_audio=False).text_only is None
    mask = ChatResponder(_Chat(vocab=14, text=10), Sampling(), reads_audio=True).text_only
    assert mask.tolist() == [True] * 10 + [False] * 4


class _Tokenizer:
    """10 tokens a second of audio."""

    def __init__(self):
        self.calls = 0

    def encode(self, samples, sample_rate):
        self.calls += 1
        return SimpleNamespace(interleaved=np.arange(len(samples) // 1600, dtype=np.int64) % 2)


def test_the_official_listener_transcribes_the_tokens_of_the_whole_turn_so_far():
    tokenizer = _Tokenizer()
    listener = StepAudioListener(tokenizer, asr_lm=None)
    seen = []
    listener.transcribe = lambda audio: seen.append(audio.tolist()) or "transcribed"
    stream = listener.stream()
    for _ in range(3):
        stream.step(np.zeros(3200, np.float32))
    heard = stream.hear()
    assert heard.transcript == "transcribed" and len(heard.audio) == 6 and heard.seconds == pytest.approx(0.6)
    assert seen == [[0, 1, 0, 1, 0, 1]]
    assert stream.hear() is heard and tokenizer.calls == 1  # nothing new heard: nothing redone
    stream.step(np.zeros(1600, np.float32))
    assert len(stream.hear().audio) == 7


def test_the_official_listener_hears_nothing_in_a_blip():
    listener = StepAudioListener(_Tokenizer(), asr_lm=None)
    stream = listener.stream()
    stream.step(np.zeros(100, np.float32))
    assert stream.hear().transcript == "" and listener.tokenizer.calls == 0


def test_the_official_chat_model_answers_at_the_release_length(tmp_path, monkeypatch):
    """Step-Audio-Chat may answer 2048 new tokens, as in the release (stepaudio.py:37), and a voice
    session keeps that much of its context free for the answer."""
    import asyncio
    import json

    from realtime_fakes import ToneSpeaker

    from lm.lm_fixtures import write_step1_checkpoint
    from stepaudio.realtime.engine import ChatEngine
    from stepaudio.realtime.session import RealtimeSession
    from stepaudio.tokenizer.dual import DualTokenizer

    chat = tmp_path / "Step-Audio-Chat"
    write_step1_checkpoint(chat)
    config = json.loads((chat / "config.json").read_text())
    (chat / "config.json").write_text(json.dumps(config | {"max_seq_len": 32768}))  # as released
    monkeypatch.setattr(DualTokenizer, "load", classmethod(lambda cls, model: _Tokenizer()))
    engine = ChatEngine.load(tmp_path, speaker=ToneSpeaker())
    assert engine.responder.answer_tokens == 2048 and engine.responder.sampling.top_p == 0.9

    async def session_budget():
        session = RealtimeSession(engine)
        try:
            return session._responder.capacity, session.context.budget
        finally:
            await session.close()

    capacity, budget = asyncio.run(session_budget())
    assert capacity - budget >= 2048
