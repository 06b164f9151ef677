"""Festival (Debian `festival` + voice packages such as `festvox-us-slt-hts`, `festvox-kallpc16k`).

Speed: HTS voices take the engine's `-r` rate; the others take `Duration_Stretch` (which HTS ignores).
"""

from __future__ import annotations

import tempfile
from pathlib import Path

import numpy as np
import soundfile as sf

from stepaudio.tts_engines import Engine, EngineUnavailable, Voice, require_tool, run_tool


class FestivalEngine(Engine):
    name = "festival"

    def voices(self) -> list[Voice]:
        require_tool("festival", "apt-get install festival festvox-us-slt-hts festvox-kallpc16k")
        require_tool("text2wave", "apt-get install festival")
        listing = run_tool(["festival", "--pipe"], "(print (voice.list))").decode().strip().strip("()").split()
        if not listing:
            raise EngineUnavailable("festival has no voices (apt-get install festvox-us-slt-hts festvox-kallpc16k)")
        # Every festival voice in Debian main is English.
        return [Voice(self.name, voice, "en") for voice in listing]

    def render(self, voice: Voice, text: str, speed: float, seed: int) -> tuple[np.ndarray, int]:
        if voice.name.endswith("_hts"):
            setting = f'(set! hts_engine_params (append hts_engine_params (list (list "-r" {speed:.4f}))))'
        else:
            setting = f"(Parameter.set 'Duration_Stretch {1.0 / speed:.4f})"
        with tempfile.TemporaryDirectory(prefix="stepaudio-festival-") as folder:
            wav = Path(folder) / "out.wav"
            run_tool(["text2wave", "-o", str(wav), "-eval", f"(voice_{voice.name})", "-eval", setting], text)
            samples, rate = sf.read(wav, dtype="float32")
        return samples, rate
