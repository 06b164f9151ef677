"""The voice commands' argument checks (the model runs are in the slow tests)."""

from stepaudio.cli import main


def test_chat_wants_audio_or_text_and_an_output(tmp_path, capsys):
    assert main(["chat"]) == 1
    assert "give a spoken question" in capsys.readouterr().err
    assert main(["chat", str(tmp_path / "q.wav")]) == 1
    assert "-o OUT.wav" in capsys.readouterr().err


def test_chat_checks_the_speech_style_before_loading(speech_path, tmp_path, capsys):
    assert main(["chat", str(speech_path), "-o", str(tmp_path / "a.wav"), "--tags", "大声"]) == 1
    err = capsys.readouterr().err
    assert "unknown style tag" in err and "loading" not in err


def test_talk_without_an_audio_device_says_what_to_install(capsys):
    assert main(["talk"]) == 1
    err = capsys.readouterr().err
    assert "stepaudio talk: error:" in err and ("stepaudio[talk]" in err or "microphone" in err)
