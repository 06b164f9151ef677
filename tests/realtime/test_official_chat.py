"""The official voice path end to end, on tiny random checkpoints in the published layout: the dual
tokenizer streams the turn, Step-Audio-Chat answers its audio tokens (in the user message), Step-Audio-
TTS-3B speaks the answer. A random LM's transcript (ASR prompt) is mostly empty, which the voice
path treats as "no words heard"; its input is checked and a transcript stands in for its output."""

import numpy as np
import pytest
import soundfile as sf

from lm.lm_fixtures import write_step1_checkpoint
from stepaudio.cli import main
from stepaudio.realtime.listen import StepAudioListener
from tokenizer.official_reference import write_official_dir
from tts.tts_fixtures import write_official_tts

pytest.importorskip("funasr")  # writes the tiny Paraformer
pytest.importorskip("onnxruntime")  # runs the tiny S3 tokenizer and CAMPPlus
pytestmark = pytest.mark.slow  # ~40 s: the random chat model answers at its full length, and all of it is spoken


@pytest.fixture(scope="module")
def official_models(tmp_path_factory):
    root = tmp_path_factory.mktemp("models")
    write_official_dir(root)
    write_step1_checkpoint(root / "Step-Audio-Chat", seed=1)
    write_official_tts(root)
    return root


def test_chat_answers_a_spoken_turn_with_the_official_checkpoints(
    official_models, speech_path, tmp_path, capsys, monkeypatch
):
    monkeypatch.setenv("STEPAUDIO_VOICES_DIR", str(tmp_path / "voices"))
    heard = []
    transcribe = StepAudioListener.transcribe

    def transcript(listener, audio):
        heard.append(audio)
        transcribe(listener, audio)  # the model runs its ASR prompt on the tokens
        return "Hello there."

    monkeypatch.setattr(StepAudioListener, "transcribe", transcript)
    out = tmp_path / "answer.wav"
    assert main(["chat", str(speech_path), "-o", str(out), "--model", str(official_models)]) == 0
    printed = capsys.readouterr().out
    assert "you: Hello there." in printed and "assistant: " in printed
    seconds = sf.info(speech_path).duration
    assert abs(len(heard[-1]) - seconds * 125 / 3) <= 10  # 41.67 interleaved tokens a second, all heard
    audio, rate = sf.read(out)
    assert rate == 22050 and len(audio) > 0 and np.isfinite(audio).all()
