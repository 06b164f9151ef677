"""Third-party TTS engines that install here, behind one small interface, and the voices they offer.

Training synthesises corpora with them (`train.data.synth`); at run time Piper is the mini voice
chat's stand-in speaker (`realtime.piper_speaker`). A package apart from `stepaudio.tts`, whose
import loads torch: Piper's child process and the synthesis workers stay light.

Every engine is optional (all are GPL or data-heavy and live in the `piper` and `train` extras or the
Makefile's `system-packages`): one that is not installed is skipped with a note saying how to install it.
Speed is always engine-native. Pitch is native where the engine has it (espeak-ng); elsewhere the
engine renders at speed/pitch and the samples are declared to be at rate*pitch, which raises f0 and
formants by `pitch` and brings the duration back to 1/speed: a vocal-tract-length change, and no
extra dependency.
"""

from __future__ import annotations

import fnmatch
import os
import shutil
import subprocess
from abc import ABC, abstractmethod
from dataclasses import dataclass
from typing import ClassVar

import numpy as np

from stepaudio.errors import DataError


class EngineUnavailable(DataError):
    """The engine (or all its voices) is not installed here; the message says how to install it."""


@dataclass(frozen=True)
class Voice:
    engine: str  # "espeak", "piper", "flite", "festival"
    name: str  # the engine's own voice name, e.g. "en-us+f3"
    language: str  # "en", "zh", "yue"

    @property
    def id(self) -> str:
        return f"{self.engine}:{self.name}"


class Engine(ABC):
    name: ClassVar[str]
    threads: int = 1  # CPU threads one synthesis may use (set per worker process)

    @abstractmethod
    def voices(self) -> list[Voice]:
        """The voices installed here; raises EngineUnavailable when there are none."""

    @abstractmethod
    def render(self, voice: Voice, text: str, speed: float, seed: int) -> tuple[np.ndarray, int]:
        """Speak `text` at `speed` x the natural rate -> (float32 samples, sample rate)."""

    def synthesize(self, voice: Voice, text: str, speed: float, pitch: float, seed: int) -> tuple[np.ndarray, int]:
        """Speak at `speed` with f0 x `pitch`; this default shifts pitch by re-declaring the sample rate."""
        samples, rate = self.render(voice, text, speed / pitch, seed)
        return samples, round(rate * pitch)


def run_tool(command: list[str], text: str | None = None, timeout: float = 120.0) -> bytes:
    """Run an engine's command line with UTF-8 text on stdin; failures become DataError."""
    env = {**os.environ, "LANG": "C.UTF-8", "LC_ALL": "C.UTF-8"}
    try:
        done = subprocess.run(
            command, input=None if text is None else text.encode("utf-8"), capture_output=True, env=env, timeout=timeout
        )
    except subprocess.TimeoutExpired:
        raise DataError(f"{command[0]} did not finish within {timeout:g} s") from None
    if done.returncode != 0:
        raise DataError(f"{' '.join(command[:3])} ... failed: {done.stderr.decode(errors='replace').strip()[-300:]}")
    return done.stdout


def require_tool(tool: str, install: str) -> str:
    path = shutil.which(tool)
    if path is None:
        raise EngineUnavailable(f"{tool} not found ({install})")
    return path


def engine_classes() -> dict[str, type[Engine]]:
    from stepaudio.tts_engines.espeak import EspeakEngine
    from stepaudio.tts_engines.festival import FestivalEngine
    from stepaudio.tts_engines.flite import FliteEngine
    from stepaudio.tts_engines.piper import PiperEngine

    return {cls.name: cls for cls in (PiperEngine, EspeakEngine, FliteEngine, FestivalEngine)}


_ENGINES: dict[str, Engine] = {}  # one instance per engine and process (Piper keeps its ONNX sessions)


def get_engine(name: str) -> Engine:
    if name not in _ENGINES:
        classes = engine_classes()
        if name not in classes:
            raise DataError(f"unknown TTS engine {name!r}; known: {', '.join(classes)}")
        _ENGINES[name] = classes[name]()
    return _ENGINES[name]


def find_voices(patterns: tuple[str, ...] = ("*",)) -> tuple[list[Voice], list[str]]:
    """Every installed voice whose id ("engine:name") matches a pattern, sorted; plus notes on engines skipped."""
    voices, notes = [], []
    for name in engine_classes():
        try:
            found = get_engine(name).voices()
        except EngineUnavailable as missing:
            notes.append(f"engine {name} skipped: {missing}")
            continue
        voices += [v for v in found if any(fnmatch.fnmatchcase(v.id, pattern) for pattern in patterns)]
    return sorted(voices, key=lambda v: v.id), notes
