import socket

from stepaudio.cli import main


def test_bad_limits_are_clean_errors_before_anything_loads(capsys):
    assert main(["serve", "--max-sessions", "0"]) == 1
    assert "max-sessions must be positive" in capsys.readouterr().err


def test_bad_session_defaults_fail_before_loading(capsys):
    assert main(["serve", "--end-ms", "-1"]) == 1
    err = capsys.readouterr().err
    assert "bad VAD settings" in err and "loading" not in err


def test_bad_speech_style_fails_before_loading(capsys):
    assert main(["serve", "--tags", "大声"]) == 1
    err = capsys.readouterr().err
    assert "unknown style tag" in err and "loading" not in err
    assert main(["serve", "--speed", "5"]) == 1
    assert "speed must be between" in capsys.readouterr().err


def test_a_bad_or_taken_address_fails_before_loading(capsys):
    assert main(["serve", "--port", "99999"]) == 1
    err = capsys.readouterr().err
    assert "99999 is not a port number" in err and "loading" not in err
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        assert main(["serve", "--port", str(taken.getsockname()[1])]) == 1
    err = capsys.readouterr().err
    assert "cannot serve on 127.0.0.1" in err and "in use" in err and "loading" not in err


def test_the_readme_lists_every_server_limit_and_its_default():
    import dataclasses
    from pathlib import Path

    from stepaudio.serve.settings import Limits

    readme = (Path(__file__).resolve().parents[2] / "README.md").read_text(encoding="utf-8")
    for limit in dataclasses.fields(Limits):
        flag, default = f"--{limit.name.replace('_', '-')}", getattr(Limits(), limit.name)
        shown = f"{default:g}" if isinstance(default, float) else str(default)
        assert f"| `{flag}` | {shown} |" in readme, flag
