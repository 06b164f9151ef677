from stepaudio.cli import main


def test_bad_limits_are_clean_errors_before_anything_loads(capsys):
    assert main(["serve", "--max-sessions", "0"]) == 1
    assert "max-sessions must be positive" in capsys.readouterr().err
