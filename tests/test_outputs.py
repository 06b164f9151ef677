"""The commands' output files: refused before any model loads when they cannot be written or would
overwrite an input, written whole or not at all, replaced with a note; a folder given as input is named."""

import json
import os
import resource
import shutil
import signal
import stat
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf

from conftest import speechlike, tone
from stepaudio.audio import open_audio_writer, save_audio
from stepaudio.cli import main
from stepaudio.errors import OptionError
from stepaudio.outputs import atomic_output, check_output

EXAMPLE = Path(__file__).resolve().parent.parent / "examples" / "conversation"
# A folder that exists but where nobody, root included, can make a file (root ignores permission bits).
UNWRITABLE = Path("/sys")


@pytest.fixture
def speech(tmp_path) -> Path:
    save_audio(tmp_path / "in.wav", speechlike(1.0, 16000), 16000)
    return tmp_path / "in.wav"


def command_writing(name: str, speech: Path, output: Path) -> list[str]:
    """`name`'s command line reading `speech` (where it reads audio) and writing `output` (or in its folder)."""
    return {
        "tts": ["tts", "Hello.", "-o", str(output), "--prompt-wav", str(speech), "--prompt-text", "Hello."],
        "resynth": ["resynth", str(speech), "-o", str(output)],
        "chat": ["chat", str(speech), "-o", str(output)],
        "features": ["features", str(speech), "-o", str(output)],
        "simulate": ["simulate", str(EXAMPLE), "-o", str(output.parent)],  # results in a folder
    }[name]


def refused(argv: list[str], capsys) -> str:
    """The one-line error of a command that must stop before loading anything or writing its output."""
    assert main(argv) == 1
    captured = capsys.readouterr()
    assert "loading" not in captured.out + captured.err and "wrote" not in captured.out
    assert captured.err.startswith(f"stepaudio {argv[0]}: error: ") and captured.err.count("\n") == 1
    return captured.err


def leftovers(folder: Path) -> list[str]:
    return sorted(path.name for path in folder.iterdir() if ".partial" in path.name)


def can_create_in(folder: Path) -> bool:
    try:
        (folder / "probe.wav").touch()
    except OSError:
        return False
    (folder / "probe.wav").unlink()
    return True


# 1. A folder that exists but cannot be written is refused before the work.


@pytest.mark.skipif(not UNWRITABLE.is_dir() or can_create_in(UNWRITABLE), reason="needs Linux's read-only /sys")
@pytest.mark.parametrize("name", ["tts", "resynth", "chat", "features", "simulate"])
def test_an_unwritable_output_folder_is_refused_before_any_model_loads(name, speech, capsys):
    out = UNWRITABLE / ("out.npy" if name == "features" else "out.wav")
    assert f"cannot write in the folder {UNWRITABLE}" in refused(command_writing(name, speech, out), capsys)


@pytest.mark.skipif(os.geteuid() == 0, reason="root writes in a read-only folder")
def test_a_read_only_folder_is_refused(tmp_path):
    tmp_path.chmod(stat.S_IRUSR | stat.S_IXUSR)
    try:
        with pytest.raises(OptionError, match="cannot write in the folder"):
            check_output(tmp_path / "out.wav")
    finally:
        tmp_path.chmod(stat.S_IRWXU)


# 2. Outputs are written beside and moved into place when complete.


def test_a_failure_inside_atomic_output_keeps_the_old_file_and_leaves_nothing(tmp_path):
    (tmp_path / "out.json").write_text("old")
    with pytest.raises(RuntimeError, match="crash"), atomic_output(tmp_path / "out.json") as temp:
        temp.write_text("half of the new")
        assert temp.parent == tmp_path and (tmp_path / "out.json").read_text() == "old"
        raise RuntimeError("crash")
    assert sorted(path.name for path in tmp_path.iterdir()) == ["out.json"]
    assert (tmp_path / "out.json").read_text() == "old"


def test_atomic_output_gives_the_new_file_the_usual_permissions(tmp_path):
    (tmp_path / "out.txt").write_text("old")
    (tmp_path / "out.txt").chmod(0o600)
    with atomic_output(tmp_path / "out.txt") as temp:
        temp.write_text("new")
    umask = os.umask(0)
    os.umask(umask)
    assert (tmp_path / "out.txt").read_text() == "new" and leftovers(tmp_path) == []
    assert stat.S_IMODE((tmp_path / "out.txt").stat().st_mode) == 0o666 & ~umask


def test_an_audio_write_interrupted_midway_keeps_the_old_wav(tmp_path):
    save_audio(tmp_path / "out.wav", tone(1.0, 16000), 16000)
    with pytest.raises(KeyboardInterrupt), open_audio_writer(tmp_path / "out.wav", 16000) as out:
        out.write(tone(0.5, 16000, freq=880.0))
        raise KeyboardInterrupt
    assert sf.info(tmp_path / "out.wav").frames == 16000 and leftovers(tmp_path) == []


def test_a_growing_audio_file_is_written_in_place(tmp_path):
    with open_audio_writer(tmp_path / "live.wav", 16000, growing=True) as out:
        out.write(tone(0.5, 16000))
        out.flush()
        assert sf.info(tmp_path / "live.wav").frames == 8000 and leftovers(tmp_path) == []


def no_room_after(limit: int) -> None:
    """In a child process: files may not grow past `limit` bytes, as on a nearly full disk."""
    signal.signal(signal.SIGXFSZ, signal.SIG_IGN)  # a failed write, not a killed process
    resource.setrlimit(resource.RLIMIT_FSIZE, (limit, resource.getrlimit(resource.RLIMIT_FSIZE)[1]))


@pytest.mark.parametrize("suffix", [".wav", ".flac"])
def test_a_full_disk_is_a_clean_error_and_keeps_the_old_file(tmp_path, suffix):
    save_audio(tmp_path / f"out{suffix}", tone(0.2, 16000), 16000)
    before = (tmp_path / f"out{suffix}").read_bytes()
    noise = np.random.default_rng(0).uniform(-0.5, 0.5, 160_000).astype(np.float32)
    np.save(tmp_path / "noise.npy", noise)
    code = (
        "import sys, numpy as np\nfrom stepaudio.audio import save_audio\nfrom stepaudio.errors import OptionError\n"
        "try:\n    save_audio(sys.argv[2], np.load(sys.argv[1]), 16000)\n"
        "except OptionError as error:\n    print(error)\n"
    )
    args = [sys.executable, "-c", code, str(tmp_path / "noise.npy"), str(tmp_path / f"out{suffix}")]
    result = subprocess.run(args, capture_output=True, text=True, timeout=60, preexec_fn=lambda: no_room_after(50_000))
    assert "could not be written to its end" in result.stdout, result.stderr
    assert (tmp_path / f"out{suffix}").read_bytes() == before and leftovers(tmp_path) == []


def test_a_full_disk_through_the_command_keeps_the_old_output(speech, tmp_path):
    np.save(tmp_path / "f.npy", np.zeros((3, 3), np.float32))
    before = (tmp_path / "f.npy").read_bytes()
    script = Path(sys.executable).parent / "stepaudio"
    args = [str(script), "features", str(speech), "--kind", "paraformer", "-o", str(tmp_path / "f.npy")]
    result = subprocess.run(args, capture_output=True, text=True, timeout=120, preexec_fn=lambda: no_room_after(4096))
    assert result.returncode == 1 and "Traceback" not in result.stderr
    assert "f.npy could not be written to its end (File too large); is the disk full?" in result.stderr
    assert (tmp_path / "f.npy").read_bytes() == before and leftovers(tmp_path) == []


# 3. An output that is an input is refused before the work.


@pytest.mark.parametrize("name", ["tts", "resynth", "chat"])
def test_an_output_that_is_the_input_is_refused(name, speech, capsys):
    before = speech.read_bytes()
    same = speech.parent / "sub" / ".." / speech.name  # another spelling of the same path
    (speech.parent / "sub").mkdir()
    assert "is also an input" in refused(command_writing(name, speech, same), capsys)
    assert speech.read_bytes() == before


def test_an_output_linked_to_the_input_is_refused(speech, capsys):
    hard, soft = speech.parent / "hard.npy", speech.parent / "soft.wav"
    os.link(speech, hard)
    assert f"{hard} is also an input" in refused(command_writing("features", speech, hard), capsys)
    soft.symlink_to(speech)
    assert f"{soft} is also an input" in refused(command_writing("resynth", speech, soft), capsys)


def test_simulate_refuses_results_that_would_overwrite_a_recording(tmp_path, capsys):
    folder = tmp_path / "conversation"
    shutil.copytree(EXAMPLE, folder)
    spec = json.loads((folder / "conversation.json").read_text())
    (folder / spec["turns"][0]["audio"]).rename(folder / "assistant.wav")
    spec["turns"][0]["audio"] = "assistant.wav"
    (folder / "conversation.json").write_text(json.dumps(spec))
    err = refused(["simulate", str(folder), "-o", str(folder)], capsys)
    assert f"{folder / 'assistant.wav'} is also an input" in err


# 4. A folder given as input is named as one.


def test_a_folder_given_as_audio_is_named_a_folder(tmp_path):
    result = subprocess.run(
        [str(Path(sys.executable).parent / "stepaudio"), "resynth", str(tmp_path), "-o", str(tmp_path / "out.wav")],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert result.returncode == 1 and "Traceback" not in result.stderr
    assert f"error: {tmp_path} is a folder, not an audio file" in result.stderr


# 5. Replacing an existing output is said on stderr, once.


def test_replacing_an_output_is_noted(speech, tmp_path, capsys):
    argv = command_writing("features", speech, tmp_path / "f.npy")
    assert main(argv) == 0
    assert "replacing" not in capsys.readouterr().err
    os.utime(tmp_path / "f.npy", (0, 0))
    assert main(argv) == 0
    assert capsys.readouterr().err == f"stepaudio: replacing {tmp_path / 'f.npy'}\n"
    assert (tmp_path / "f.npy").stat().st_mtime > 0 and np.load(tmp_path / "f.npy").shape[1] == 560
