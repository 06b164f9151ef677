"""The corpus manifest: JSONL, one utterance per line, audio paths relative to the manifest.

Every recipe that trains on speech reads this one format, whether the audio was synthesised or
recorded, so the fields are few and always present.
"""

from __future__ import annotations

import dataclasses
import json
import os
from dataclasses import dataclass
from pathlib import Path

from stepaudio.errors import DataError

SPLITS = ("train", "test")
MANIFEST_NAME = "manifest.jsonl"


@dataclass(frozen=True)
class Utterance:
    audio: str  # path relative to the manifest's folder
    text: str  # what is said, as written (not the engine's pinyin or phonemes)
    language: str  # "en", "zh" (Mandarin), "yue" (Cantonese), ...
    voice: str  # "engine:voice", e.g. "espeak:en-us+f3"; "real:<speaker>" for recordings
    speed: float  # speaking-rate factor, 1.0 = the voice's natural rate
    pitch: float  # f0 factor, 1.0 = the voice's natural pitch
    duration: float  # seconds
    split: str  # "train" or "test"
    source: str  # where the text came from: "chatterbot", "fortunes", "words", "generated", a file, ...
    tokens: str | None = None  # .npy of its speech tokens (ids 0..5119), relative to the manifest, once tokenized
    # [[word, start s, end s], ...] of the text the TTS LM reads, once aligned (`stepaudio data align`); [] if it failed
    words: list | None = None

    def __post_init__(self) -> None:
        if self.split not in SPLITS:
            raise DataError(f"split must be one of {SPLITS}, got {self.split!r}")
        if not self.text.strip():
            raise DataError(f"utterance {self.audio} has an empty text")


FIELDS = tuple(field.name for field in dataclasses.fields(Utterance))
REQUIRED = tuple(field.name for field in dataclasses.fields(Utterance) if field.default is dataclasses.MISSING)


def write_manifest(path: str | os.PathLike, utterances: list[Utterance]) -> None:
    """Write atomically (temp file + rename): a reader never sees half a manifest."""
    path = Path(path)
    tmp = path.with_name(path.name + ".tmp")
    with open(tmp, "w", encoding="utf-8") as out:
        for utt in utterances:
            out.write(json.dumps(dataclasses.asdict(utt), ensure_ascii=False) + "\n")
    os.replace(tmp, path)


def read_manifest(path: str | os.PathLike) -> list[Utterance]:
    """Read and validate a manifest; errors name the line that is wrong."""
    path = Path(path)
    if path.is_dir():
        path = path / MANIFEST_NAME
    if not path.is_file():
        raise DataError(f"no manifest at {path}; build one with `stepaudio data synth` or `stepaudio data add-real`")
    utterances = []
    with open(path, encoding="utf-8") as lines:
        for number, line in enumerate(lines, 1):
            if not line.strip():
                continue
            try:
                record = json.loads(line)
                missing = [name for name in REQUIRED if name not in record]
                if missing:
                    raise DataError(f"missing fields {missing}")
                utterances.append(Utterance(**{name: record[name] for name in FIELDS if name in record}))
            except (json.JSONDecodeError, TypeError, DataError) as error:
                raise DataError(f"{path}:{number}: not a manifest line ({error})") from None
    return utterances


def read_split(path: str | os.PathLike, split: str) -> list[Utterance]:
    """The utterances of one split; an empty split is an error, since a recipe cannot train on it."""
    utterances = [utt for utt in read_manifest(path) if utt.split == split]
    if not utterances:
        raise DataError(f"{path} has no utterances in split {split!r}")
    return utterances


def manifest_dir(path: str | os.PathLike) -> Path:
    """The folder that the manifest's relative paths start from."""
    path = Path(path)
    return path if path.is_dir() else path.parent
