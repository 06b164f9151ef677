"""espeak-ng (Debian `espeak-ng`): English accents, Mandarin and Cantonese formant voices.

Mandarin goes to `cmn-latn-pinyin` as tone-numbered pinyin made with pypinyin (which reads polyphonic
characters from phrase context, e.g. 重庆 -> chong2 qing4), because 1.51's `cmn` voice reads its own
tone digits as English ("ni three"). Pitch is native (`-p`): the table maps f0 factors to `-p`
values, measured as median f0 (pyin) over en-us, en-us+f3, yue and cmn-latn-pinyin, which agree
within 0.1 octave.
"""

from __future__ import annotations

import io
import re

import numpy as np
import soundfile as sf

from stepaudio.tts_engines import Engine, Voice, require_tool, run_tool

# voice (with optional +variant) -> language; a few variants (+f = female, +m = male) per accent.
# British with a variant must be spelled "en+..." ("en-gb+f2" silently drops the variant in 1.51).
VOICES = {
    "en-us": "en",
    "en-us+f3": "en",
    "en-us-nyc+f1": "en",
    "en-gb": "en",
    "en+f2": "en",
    "en-gb-scotland": "en",
    "en-gb-x-rp+f4": "en",
    "en-gb-x-gbclan": "en",
    "en-gb-x-gbcwmd+m3": "en",
    "en-029": "en",
    "cmn-latn-pinyin": "zh",
    "cmn-latn-pinyin+f3": "zh",
    "yue": "yue",
    "yue+f2": "yue",
}
DEFAULT_WORDS_PER_MINUTE = 175
_PITCH_LOG2 = (-0.62, -0.31, 0.0, 0.36, 0.74)  # median f0 / f0 at -p 50, in octaves ...
_PITCH_ARG = (0, 25, 50, 75, 99)  # ... at these -p values
# Full-width and CJK punctuation -> the ASCII marks espeak pauses on.
_PUNCTUATION = str.maketrans(
    {"，": ",", "、": ",", "。": ".", "！": "!", "？": "?", "；": ";", "：": ":", "（": "(", "）": ")"}
    | {mark: " " for mark in "“”‘’《》「」『』【】…—・"}
)


def pitch_argument(pitch: float) -> int:
    """f0 factor (1.0 = natural) -> espeak-ng `-p` (0..99, 50 = natural)."""
    return int(round(float(np.interp(np.log2(pitch), _PITCH_LOG2, _PITCH_ARG))))


class EspeakEngine(Engine):
    name = "espeak"

    def voices(self) -> list[Voice]:
        require_tool("espeak-ng", "apt-get install espeak-ng")
        lines = run_tool(["espeak-ng", "--voices"]).decode("utf-8", errors="replace").splitlines()[1:]
        languages = {line.split()[1] for line in lines if len(line.split()) > 1}
        return [Voice(self.name, voice, lang) for voice, lang in VOICES.items() if voice.split("+")[0] in languages]

    def render(self, voice: Voice, text: str, speed: float, seed: int) -> tuple[np.ndarray, int]:
        return self.synthesize(voice, text, speed, 1.0, seed)

    def synthesize(self, voice: Voice, text: str, speed: float, pitch: float, seed: int) -> tuple[np.ndarray, int]:
        if voice.name.startswith("cmn"):
            text = to_pinyin(text)
        command = ["espeak-ng", "-v", voice.name, "-b", "1", "--stdout"]
        command += ["-s", str(round(DEFAULT_WORDS_PER_MINUTE * speed)), "-p", str(pitch_argument(pitch))]
        samples, rate = sf.read(io.BytesIO(run_tool(command, text)), dtype="float32")
        return samples, rate


def to_pinyin(text: str) -> str:
    """Chinese text -> space-separated tone-numbered pinyin (neutral tone 5) with ASCII punctuation.

    Characters pypinyin does not know (Latin words, digits) pass through unchanged.
    """
    from pypinyin import Style, lazy_pinyin

    syllables = lazy_pinyin(text.translate(_PUNCTUATION), style=Style.TONE3, neutral_tone_with_five=True)
    spoken = " ".join(syllable.strip() for syllable in syllables if syllable.strip())
    spoken = re.sub(r"\s+([,.!?;:)])", r"\1", spoken)
    return re.sub(r"([,.!?;:])(?=[^\s\d,.!?;:])", r"\1 ", spoken)
