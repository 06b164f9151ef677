"""`stepaudio tts` and `stepaudio voices` from the command line (tiny models stand in for mini)."""

import io

import pytest
import soundfile as sf
import torch
from tts_fixtures import tiny_tts

from conftest import speechlike
from stepaudio.cli import main
from stepaudio.tts import TTS


@pytest.fixture
def fake_load(tmp_path, monkeypatch):
    tts = tiny_tts(tmp_path)
    loads = []
    monkeypatch.setattr(
        TTS, "load", classmethod(lambda cls, model, device, engine: loads.append((model, device)) or tts)
    )
    return loads


def test_tts_writes_speech_from_an_argument_or_stdin(tmp_path, fake_load, monkeypatch, capsys):
    assert main(["tts", "Hi there.", "-o", str(tmp_path / "a.wav"), "--seed", "0", "--stream", "--tts", "model"]) == 0
    samples, rate = sf.read(tmp_path / "a.wav")
    assert rate == 22050 and len(samples) > 0
    assert "RTF" in capsys.readouterr().out
    monkeypatch.setattr("sys.stdin", io.StringIO("Hi.\n"))
    assert main(["tts", "-o", str(tmp_path / "b.wav"), "--tags", "快速1", "--voice", "anna", "--tts", "model"]) == 0
    assert sf.info(tmp_path / "b.wav").frames > 0 and fake_load == [("mini", "auto"), ("mini", "auto")]


def test_tts_refuses_bad_input_before_loading_models(tmp_path, fake_load, monkeypatch, capsys):
    assert main(["tts", "Hi.", "-o", str(tmp_path / "a.wav"), "--tags", "shout"]) == 1
    assert "unknown style tag 'shout'" in capsys.readouterr().err
    monkeypatch.setattr("sys.stdin", io.StringIO("  \n"))
    assert main(["tts", "-", "-o", str(tmp_path / "a.wav")]) == 1
    assert "no text" in capsys.readouterr().err and fake_load == []
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    assert main(["tts", "Hi.", "-o", str(tmp_path / "a.wav"), "--device", "cuda"]) == 1
    assert "torch sees no GPU" in capsys.readouterr().err and fake_load == []
    assert main(["tts", "Hi.", "-o", str(tmp_path / "a.m4a")]) == 1
    assert "cannot write audio as .m4a" in capsys.readouterr().err
    assert main(["tts", "Hi.", "-o", str(tmp_path / "nowhere" / "a.wav")]) == 1
    assert "does not exist" in capsys.readouterr().err and fake_load == []


def test_tts_writes_ogg_and_mp3(tmp_path, fake_load):
    for name in ("a.ogg", "a.mp3"):
        assert main(["tts", "Hi there.", "-o", str(tmp_path / name), "--seed", "0", "--stream", "--tts", "model"]) == 0
        assert sf.info(tmp_path / name).samplerate == 22050 and sf.read(tmp_path / name)[0].size > 0


def test_voices_list_add_remove(tmp_path, monkeypatch, capsys):
    monkeypatch.setenv("STEPAUDIO_VOICES_DIR", str(tmp_path / "voices"))
    sf.write(tmp_path / "me.wav", speechlike(1.5, 16_000), 16_000)
    assert main(["voices", "add", "me", str(tmp_path / "me.wav"), "Words I said."]) == 0
    assert main(["voices", "list"]) == 0
    listing = capsys.readouterr().out
    assert "me\tuser\tWords I said." in listing and "joe\tbuilt-in" in listing
    assert main(["voices", "remove", "me"]) == 0 and main(["voices", "remove", "me"]) == 1
    assert "no user voice 'me'" in capsys.readouterr().err
