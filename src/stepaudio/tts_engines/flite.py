"""flite (Debian `flite`): the five English voices built into the binary."""

from __future__ import annotations

import tempfile
from pathlib import Path

import numpy as np
import soundfile as sf

from stepaudio.tts_engines import Engine, Voice, require_tool, run_tool

VOICES = ("kal", "kal16", "awb", "rms", "slt")  # awb_time is a talking clock: left out


class FliteEngine(Engine):
    name = "flite"

    def voices(self) -> list[Voice]:
        require_tool("flite", "apt-get install flite")
        listing = run_tool(["flite", "-lv"]).decode().split(":")[-1].split()
        return [Voice(self.name, voice, "en") for voice in VOICES if voice in listing]

    def render(self, voice: Voice, text: str, speed: float, seed: int) -> tuple[np.ndarray, int]:
        with tempfile.TemporaryDirectory(prefix="stepaudio-flite-") as folder:
            text_file, wav = Path(folder) / "in.txt", Path(folder) / "out.wav"
            text_file.write_text(text, encoding="utf-8")
            stretch = f"duration_stretch={1.0 / speed:.4f}"
            run_tool(["flite", "-voice", voice.name, "-f", str(text_file), "-o", str(wav), "--setf", stretch])
            samples, rate = sf.read(wav, dtype="float32")
        return samples, rate
