"""Voices: a name for a prompt recording and its exact transcript, built in or added by the user.

A voice is stored as `NAME.wav` (the prompt recording as given, mixed to mono, at its own rate) and
`NAME.json` (its transcript). Mini conditions the recording (16 kHz, peak-normalised, silence-trimmed as
the official tokenizer does for prompts) for all it needs; official weights condition it as the release
does (tokens from the conditioned audio, the flow's prompt mel and speaker embedding from the whole
recording: `SpeechDecoder.voice_as_released`). What the models
need from it (the prompt's speech tokens and speaker embedding) depends on the tokenizer, so it is
cached beside it per tokenizer as `NAME.<tag>.npz` (`official`, or `mini-` and a hash of
mini's codebooks: `stepaudio.tokenizer.dual.mini_tokens_tag`); the built-in mini voices ship with theirs.
Built-in voices live in the package (mini) or in the official `speakers/` folder; user voices in
$STEPAUDIO_VOICES_DIR, else $XDG_DATA_HOME/stepaudio/voices (~/.local/share/stepaudio/voices).
"""

from __future__ import annotations

import json
import os
import re
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from stepaudio.audio import load_audio, peak_normalize, save_audio, trim_silence
from stepaudio.audio.io import AudioSource
from stepaudio.errors import AudioError, OptionError
from stepaudio.tokenizer.input import SAMPLE_RATE, as_16k_mono

VOICES_DIR_ENV = "STEPAUDIO_VOICES_DIR"
MAX_PROMPT_SECONDS = 30.0
_NAME = re.compile(r"\w[\w.-]{0,63}")


def user_voices_dir() -> Path:
    explicit = os.environ.get(VOICES_DIR_ENV)
    if explicit:
        return Path(explicit).expanduser()
    data_home = os.environ.get("XDG_DATA_HOME") or Path.home() / ".local" / "share"
    return Path(data_home) / "stepaudio" / "voices"


def condition_prompt(samples: np.ndarray, sample_rate: int) -> np.ndarray:
    """A prompt as the official prepares it: mono, 16 kHz, peak-normalised, silence-trimmed."""
    mono = as_16k_mono(samples, sample_rate)
    if np.abs(mono).max(initial=0.0) < 1e-3:
        raise AudioError("the voice prompt is silent")
    conditioned = trim_silence(peak_normalize(mono), SAMPLE_RATE)
    if len(conditioned) < SAMPLE_RATE // 2:
        raise AudioError("the voice prompt holds less than 0.5 s of speech")
    return conditioned


def read_prompt(source: AudioSource) -> tuple[np.ndarray, int]:
    """A prompt recording as the release reads it: mono (channels averaged) at its own rate, untrimmed and
    not normalised; at most MAX_PROMPT_SECONDS; refused (AudioError) when silent or shorter than 0.5 s of
    speech, as `condition_prompt` refuses it."""
    samples, rate = load_audio(source, max_seconds=MAX_PROMPT_SECONDS)
    condition_prompt(samples, rate)
    return samples, rate


def check_transcript(transcript: str) -> str:
    transcript = " ".join(transcript.split())
    if not transcript:
        raise OptionError("a voice prompt needs the exact transcript of what it says")
    return transcript


@dataclass(frozen=True)
class VoiceEntry:
    name: str
    wav: Path
    transcript: str
    builtin: bool

    def cache_file(self, tag: str) -> Path:
        return self.wav.with_name(f"{self.name}.{tag}.npz")

    def samples(self) -> np.ndarray:
        """The stored recording conditioned as mini reads prompts: 16 kHz, peak-normalised, silence-trimmed."""
        samples, rate = load_audio(self.wav, max_seconds=MAX_PROMPT_SECONDS)
        return condition_prompt(samples, rate)

    def recording(self) -> tuple[np.ndarray, int]:
        """(mono samples, rate): the recording as stored, as the release reads a speaker's wav."""
        return read_prompt(self.wav)


class VoiceRegistry:
    """Built-in voices (read-only) and the user's (added and removed here); names are unique."""

    def __init__(self, builtin: list[VoiceEntry], user_dir: Path):
        self.builtin = {voice.name: voice for voice in builtin}
        self.user_dir = Path(user_dir)

    @classmethod
    def load(cls, builtin_dir: Path | None, user_dir: Path | None = None) -> VoiceRegistry:
        builtin = read_voice_dir(builtin_dir, builtin=True) if builtin_dir else []
        return cls(builtin, user_dir or user_voices_dir())

    @classmethod
    def for_model(cls, model: str | Path = "mini") -> VoiceRegistry:
        """The voices of a model: mini's packaged ones, or the official `speakers/` folder (inside
        Step-Audio-TTS-3B or beside it), plus the user's."""
        from stepaudio.models.store import resolve_model

        resolved = resolve_model(model)
        if resolved.kind == "mini":
            return cls.load(resolved.require("voices"))
        folder = resolved.require("tts")
        return cls(
            read_official_speakers(folder / "speakers") or read_official_speakers(folder.parent / "speakers"),
            user_voices_dir(),
        )

    def user_voices(self) -> dict[str, VoiceEntry]:
        return {voice.name: voice for voice in read_voice_dir(self.user_dir, builtin=False)}

    def names(self) -> list[str]:
        return sorted(self.builtin) + sorted(set(self.user_voices()) - set(self.builtin))

    def get(self, name: str) -> VoiceEntry:
        voice = self.builtin.get(name) or self.user_voices().get(name)
        if voice is None:
            raise OptionError(f"unknown voice {name!r}; the voices are: {', '.join(self.names()) or 'none'}")
        return voice

    def add(self, name: str, source: AudioSource, transcript: str) -> VoiceEntry:
        """Register a prompt file (any format load_audio reads, any channels and rate) as `name`: kept as
        recorded (mono, its own rate, not trimmed or normalised), so official weights condition it as the
        release conditions a clone prompt; refused when silent, shorter than 0.5 s of speech or longer than
        MAX_PROMPT_SECONDS."""
        if not _NAME.fullmatch(name):
            raise OptionError(f"voice name {name!r}: use letters, digits, '.', '-' or '_' (at most 64)")
        if name in self.builtin:
            raise OptionError(f"{name!r} is a built-in voice; choose another name")
        transcript = check_transcript(transcript)
        samples, rate = read_prompt(source)
        self.user_dir.mkdir(parents=True, exist_ok=True)
        for stale in self.user_dir.glob(f"{glob_escape(name)}.*.npz"):  # caches of a replaced voice
            stale.unlink()
        save_audio(self.user_dir / f"{name}.wav", samples, rate)
        (self.user_dir / f"{name}.json").write_text(json.dumps({"transcript": transcript}, ensure_ascii=False) + "\n")
        return VoiceEntry(name, self.user_dir / f"{name}.wav", transcript, builtin=False)

    def remove(self, name: str) -> None:
        if name in self.builtin:
            raise OptionError(f"{name!r} is a built-in voice and cannot be removed")
        voice = self.user_voices().get(name)
        if voice is None:
            raise OptionError(f"no user voice {name!r} in {self.user_dir}")
        for path in [voice.wav, voice.wav.with_suffix(".json"), *self.user_dir.glob(f"{glob_escape(name)}.*.npz")]:
            path.unlink(missing_ok=True)


def glob_escape(name: str) -> str:
    return re.sub(r"([*?\[])", r"[\1]", name)


def read_voice_dir(directory: Path, builtin: bool) -> list[VoiceEntry]:
    """Voices of a folder: `NAME.json` ({"transcript": ...}) beside `NAME.wav`."""
    directory = Path(directory)
    if not directory.is_dir():
        return []
    voices = []
    for meta in sorted(directory.glob("*.json")):
        wav = meta.with_suffix(".wav")
        if wav.is_file():
            transcript = json.loads(meta.read_text(encoding="utf-8"))["transcript"]
            voices.append(VoiceEntry(meta.stem, wav, transcript, builtin))
    return voices


def read_official_speakers(directory: Path) -> list[VoiceEntry]:
    """The release's `speakers/`: `speakers_info.json` ({id: transcript}) and `<id>_prompt.wav`."""
    info = Path(directory) / "speakers_info.json"
    if not info.is_file():
        return []
    speakers = json.loads(info.read_text(encoding="utf-8"))
    return [
        VoiceEntry(name, Path(directory) / f"{name}_prompt.wav", transcript, builtin=True)
        for name, transcript in speakers.items()
        if (Path(directory) / f"{name}_prompt.wav").is_file()
    ]
