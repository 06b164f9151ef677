"""Import real recordings with transcripts into a corpus, in the manifest format synthesis writes.

Transcripts are found in a folder (searched recursively) in either form:
  - beside each recording: `clip.wav` + `clip.txt` or `clip.lab` (the whole file is the text);
  - one listing file (e.g. `transcription`, `text`, `*.trans.txt`) with one utterance per line,
    Sphinx style `<s> the text </s> (clip)` or Kaldi style `clip the text`.
Each recording is converted to 16 kHz mono 16-bit under `audio/real/<speaker>/` in the corpus.
"""

from __future__ import annotations

import re
from pathlib import Path

from stepaudio.errors import AudioError, DataError
from stepaudio.rates import SAMPLE_RATE
from stepaudio.train.data.manifest import MANIFEST_NAME, Utterance, read_manifest, write_manifest

AUDIO_SUFFIXES = (".wav", ".flac", ".ogg", ".mp3")
TRANSCRIPT_SUFFIXES = (".txt", ".lab")
LISTING_NAMES = ("transcription", "transcriptions", "text", "transcripts.txt")
_SPHINX_LINE = re.compile(r"^(?P<text>.*)\((?P<id>[^()\s]+)\)\s*$")
_SENTENCE_MARKS = re.compile(r"</?s>")


def _parse_listing(path: Path) -> dict[str, str]:
    texts = {}
    for line in path.read_text(encoding="utf-8").splitlines():
        line = line.strip()
        if not line:
            continue
        sphinx = _SPHINX_LINE.match(line)
        if sphinx:
            utt_id, text = sphinx["id"], sphinx["text"]
        else:
            utt_id, _, text = line.partition(" ")
        text = " ".join(_SENTENCE_MARKS.sub(" ", text).split())
        if text:
            texts[utt_id] = text
    return texts


def find_pairs(folder: Path) -> list[tuple[Path, str]]:
    """(recording, transcript) for every recording in `folder` that has a transcript, sorted by path."""
    if not folder.is_dir():
        raise DataError(f"no such folder of recordings: {folder}")
    listed: dict[str, str] = {}
    for path in sorted(folder.rglob("*")):
        if path.is_file() and (path.name in LISTING_NAMES or path.name.endswith(".trans.txt")):
            listed.update(_parse_listing(path))
    pairs = []
    for audio in sorted(p for p in folder.rglob("*") if p.suffix.lower() in AUDIO_SUFFIXES and p.is_file()):
        beside = [audio.with_suffix(suffix) for suffix in TRANSCRIPT_SUFFIXES if audio.with_suffix(suffix).is_file()]
        text = " ".join(beside[0].read_text(encoding="utf-8").split()) if beside else listed.get(audio.stem)
        if text:
            pairs.append((audio, text))
    if not pairs:
        raise DataError(
            f"found no recordings with transcripts in {folder}: put clip.txt/.lab beside each clip.wav, "
            f"or one listing file ({', '.join(LISTING_NAMES)}) with `<s> text </s> (clip)` or `clip text` lines"
        )
    return pairs


def add_real(
    folder: Path,
    corpus: Path,
    language: str,
    speaker: str | None = None,
    split: str = "auto",
    test_sentences: frozenset[str] = frozenset(),
) -> tuple[list[Utterance], list[str]]:
    """Convert and add the recordings to the corpus manifest (replacing earlier imports of the same files).

    split "auto": an utterance whose text is one of `test_sentences` (the synthetic corpus's held-out
    sentences) goes to "test", the others to "train". Returns the utterances added and the
    recordings skipped (unreadable audio), with the reason.
    """
    from stepaudio.audio import load_audio, save_audio

    if split not in ("auto", "train", "test"):
        raise DataError(f"split must be auto, train or test, got {split!r}")
    pairs = find_pairs(folder)
    corpus.mkdir(parents=True, exist_ok=True)
    speaker = speaker or folder.resolve().name
    added, skipped = [], []
    for audio, text in pairs:
        relative = Path("audio") / "real" / speaker / audio.relative_to(folder).with_suffix(".flac")
        try:
            samples, _ = load_audio(audio, SAMPLE_RATE)
        except AudioError as error:
            skipped.append(f"{audio}: {error}")
            continue
        (corpus / relative).parent.mkdir(parents=True, exist_ok=True)
        save_audio(corpus / relative, samples, SAMPLE_RATE)
        chosen = split if split != "auto" else ("test" if text in test_sentences else "train")
        added.append(
            Utterance(
                audio=relative.as_posix(),
                text=text,
                language=language,
                voice=f"real:{speaker}",
                speed=1.0,
                pitch=1.0,
                duration=round(len(samples) / SAMPLE_RATE, 3),
                split=chosen,
                source=f"real:{folder.name}",
            )
        )
    manifest = corpus / MANIFEST_NAME
    existing = read_manifest(manifest) if manifest.is_file() else []
    replaced = {utt.audio for utt in added}
    write_manifest(manifest, [utt for utt in existing if utt.audio not in replaced] + added)
    return added, skipped
