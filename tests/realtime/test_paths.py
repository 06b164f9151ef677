"""What the model can read decides what a spoken turn becomes; the official listener streams tokens."""

import numpy as np
import pytest

from stepaudio.realtime.listen import Heard, StepAudioListener
from stepaudio.realtime.respond import ChatResponder


class _Chat:
    """Just enough of a LanguageModel for ChatResponder's bookkeeping."""

    def stop_ids(self):
        return (0,)


@pytest.mark.parametrize("reads_audio, expected", [(False, "hello"), (True, "<audio_3><audio_1027>")])
def test_the_user_turn_is_text_or_audio_tokens_by_capability(reads_audio, expected):
    from stepaudio.lm.sampling import Sampling

    responder = ChatResponder(_Chat(), Sampling(), reads_audio=reads_audio)
    assert responder.user_content(Heard("hello", np.array([3, 1027]), 0.1)) == expected


class _TokenStream:
    def step(self, samples):
        return np.arange(len(samples) // 1600, dtype=np.int64)  # 10 tokens a second


class _Tokenizer:
    def stream(self):
        return _TokenStream()


def test_the_official_listener_transcribes_the_tokens_streamed_so_far():
    listener = StepAudioListener(_Tokenizer(), asr_lm=None)
    seen = []
    listener.transcribe = lambda audio: seen.append(audio.tolist()) or "transcribed"
    stream = listener.stream()
    for _ in range(3):
        stream.step(np.zeros(3200, np.float32))
    heard = stream.hear()
    assert heard.transcript == "transcribed" and len(heard.audio) == 6 and heard.seconds == pytest.approx(0.6)
    assert seen == [[0, 1, 0, 1, 0, 1]]
