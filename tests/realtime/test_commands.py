"""The voice commands' argument checks (the model runs are in the slow tests)."""

from pathlib import Path

from stepaudio.cli import main

EXAMPLE = Path(__file__).resolve().parents[2] / "examples" / "conversation"


def test_chat_wants_audio_or_text_and_an_output(tmp_path, capsys):
    assert main(["chat"]) == 1
    assert "give a spoken question" in capsys.readouterr().err
    assert main(["chat", str(tmp_path / "q.wav")]) == 1
    assert "-o OUT.wav" in capsys.readouterr().err


def test_chat_checks_the_speech_style_before_loading(speech_path, tmp_path, capsys):
    assert main(["chat", str(speech_path), "-o", str(tmp_path / "a.wav"), "--tags", "大声"]) == 1
    err = capsys.readouterr().err
    assert "unknown style tag" in err and "loading" not in err
    assert main(["chat", str(speech_path), "-o", str(tmp_path / "missing" / "a.wav")]) == 1
    captured = capsys.readouterr()
    assert "does not exist" in captured.err and captured.out == ""


def test_simulate_refuses_a_file_for_its_output_folder_before_loading(tmp_path, capsys):
    (tmp_path / "taken").write_text("a file, not a folder")
    assert main(["simulate", str(EXAMPLE), "-o", str(tmp_path / "taken")]) == 1
    captured = capsys.readouterr()
    assert "cannot make the output folder" in captured.err and "loading" not in captured.out


def test_simulate_and_talk_check_the_speech_style_before_loading(capsys):
    assert main(["simulate", str(EXAMPLE), "--speed", "5"]) == 1
    err = capsys.readouterr().err
    assert "speed must be between" in err and "loading" not in err
    assert main(["talk", "--tags", "大声"]) == 1
    assert "unknown style tag" in capsys.readouterr().err


def test_talk_without_an_audio_device_says_what_to_install(capsys):
    assert main(["talk"]) == 1
    err = capsys.readouterr().err
    assert "stepaudio talk: error:" in err and ("stepaudio[talk]" in err or "microphone" in err)
