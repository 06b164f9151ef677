"""Who speaks `stepaudio tts` (issue #33 point 6): with mini, a Piper voice by default while the mini TTS
LM is not intelligible; the mini TTS LM with --tts model; without Piper, an error that says how to get it."""

import json
from pathlib import Path

import pytest
import soundfile as sf
from tts_fixtures import tiny_tts

import stepaudio
from stepaudio.cli import main
from stepaudio.models.measured import MINI_TTS_WER, mini_tts_intelligible
from stepaudio.realtime.piper_speaker import PiperSpeaker
from stepaudio.tts import TTS
from stepaudio.tts_engines import EngineUnavailable, get_engine


def piper_installed() -> bool:
    try:
        return bool(get_engine("piper").voices())
    except EngineUnavailable:
        return False


@pytest.fixture
def loads(tmp_path, monkeypatch):
    """TTS.load gives a tiny TTS (standing in for the mini TTS LM) and records each call."""
    tts, calls = tiny_tts(tmp_path), []
    monkeypatch.setattr(TTS, "load", classmethod(lambda cls, model, device, engine: calls.append(model) or tts))
    return calls


@pytest.fixture
def no_piper(monkeypatch):
    def missing(voice=None):
        raise EngineUnavailable("pip install piper-tts onnx (the `train` extra)")

    monkeypatch.setattr("stepaudio.realtime.piper_speaker.PiperSpeaker", missing)


def test_the_figures_are_the_benchmarks_and_mini_is_not_intelligible_yet():
    report = Path(stepaudio.__file__).parent / "assets" / "mini" / "tts" / "report.json"
    assert MINI_TTS_WER == round(json.loads(report.read_text())["results"]["wer"], 2)
    assert not mini_tts_intelligible()  # when it is, `auto` speaks with the mini TTS LM again


def test_speakers_name_their_engine(tmp_path):
    assert tiny_tts(tmp_path).engine == "mini-tts" and PiperSpeaker.engine == "piper"


@pytest.mark.skipif(not piper_installed(), reason="Piper is not installed (stepaudio install piper)")
def test_mini_speaks_with_piper_by_default_and_says_so(tmp_path, loads, capsys):
    out = tmp_path / "hi.wav"
    assert main(["tts", "(快速1)Hello there, how are you today?", "-o", str(out), "--tags", "高兴1"]) == 0
    err = capsys.readouterr().err
    assert "spoken by Piper (en_US-joe-medium)" in err and f"WER {MINI_TTS_WER:.2f}" in err and "--tts model" in err
    assert "not 高兴1" in err  # Piper renders the speed tags only
    assert sf.info(out).duration > 0.5 and loads == []  # the mini TTS LM was never loaded


def test_without_piper_mini_fails_with_the_install_hint_and_writes_nothing(tmp_path, loads, no_piper, capsys):
    out = tmp_path / "hi.wav"
    for tts in ("auto", "piper"):
        assert main(["tts", "Hello there.", "-o", str(out), "--tts", tts]) == 1
        err = capsys.readouterr().err
        assert "stepaudio install piper" in err and "--tts model" in err and "Traceback" not in err
    assert not out.exists() and loads == []


def test_tts_model_still_speaks_with_the_mini_tts_lm(tmp_path, loads, no_piper, capsys):
    out = tmp_path / "hi.wav"
    assert main(["tts", "Hello there.", "-o", str(out), "--tts", "model", "--seed", "0"]) == 0
    assert loads == ["mini"] and sf.info(out).frames > 0
    assert f"spoken by the mini TTS LM: experimental, not intelligible yet (WER {MINI_TTS_WER:.2f})" in (
        capsys.readouterr().err
    )


def test_what_piper_cannot_do_is_an_error_naming_tts_model(tmp_path, loads, no_piper, capsys, speech_path):
    out = tmp_path / "x.wav"
    asks = [
        ["Cloned.", "--prompt-wav", str(speech_path), "--prompt-text", "Words."],  # cloning
        ["你好，今天天气很好。"],  # not English
    ]
    for ask in asks:
        assert main(["tts", ask[0], "-o", str(out), *ask[1:]]) == 1
        err = capsys.readouterr().err
        assert "Piper" in err and "--tts model" in err and f"WER {MINI_TTS_WER:.2f}" in err
    assert not out.exists() and loads == []


def test_the_help_marks_the_mini_tts_lm_experimental(capsys):
    with pytest.raises(SystemExit):
        main(["tts", "--help"])
    assert "EXPERIMENTAL" in capsys.readouterr().out
