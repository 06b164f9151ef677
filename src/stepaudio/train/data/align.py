"""Word timings of a corpus's English utterances, for the TTS LM's attention guide.

A decoder-only TTS model learns to read by attending, at each speech token, to the text being spoken.
The guide (`stepaudio.train.attention_guide`) can only point at that text if it knows where it is:
without timings it assumes an even pace through the text and allows a band a fifth of the text wide
(several words of a sentence); with each word's time it points at the word itself. Whisper tiny.en
aligns a known transcript to its audio (dynamic time warping over the cross-attention of its alignment
heads: faster-whisper's `find_alignment`), so English utterances get timings and the others keep the
even pace.

The timings are of the text the LM reads (`stepaudio.tts.text.normalize`), one `[word, start, end]`
(seconds) per whitespace-separated word, in the manifest's `words` field (`[]` where Whisper could not
align it: another word split, or longer than its 30-s window).
"""

from __future__ import annotations

import dataclasses
from pathlib import Path

import numpy as np
from tqdm import tqdm

from stepaudio.audio import load_audio
from stepaudio.errors import DataError
from stepaudio.rates import SAMPLE_RATE
from stepaudio.train.data.manifest import manifest_dir, read_manifest, write_manifest
from stepaudio.tts.text import normalize

ALIGNED_LANGUAGES = ("en",)  # what Whisper tiny.en can align
WINDOW_FRAMES = 3000  # Whisper's 30-s window of 10-ms mel frames
# An utterance is aligned in a window of its own length plus 1-2 s of silence, not the whole 30 s: the
# encoder's time falls with the window (5-9x for 3-s utterances), and the words' times move little (on 20 corpus
# utterances: by 0.02 s at the median, 0.06 s at the 90th percentile).
WINDOW_STEP = 100

Words = list[list]  # [[word, start s, end s], ...]


class WordAligner:
    """Known English text + 16 kHz audio -> the words' times, by Whisper tiny.en (the mini model's)."""

    def __init__(self, threads: int = 2):
        try:
            from faster_whisper import WhisperModel
            from faster_whisper.tokenizer import Tokenizer
        except ImportError:
            raise DataError("word alignment needs faster-whisper: pip install 'stepaudio[train]'") from None
        from stepaudio.models import resolve_model

        folder = resolve_model("mini").require("whisper")
        self.model = WhisperModel(str(folder), device="cpu", compute_type="int8", cpu_threads=threads)
        self.tokenizer = Tokenizer(self.model.hf_tokenizer, False, task="transcribe", language="en")

    def __call__(self, samples16: np.ndarray, text: str) -> Words | None:
        """The times of `text`'s whitespace-separated words; None where Whisper splits it otherwise or the
        audio is longer than one window."""
        features = self.model.feature_extractor(samples16)
        frames = features.shape[-1] - 1  # the extractor's STFT gives one frame past the audio
        if frames > WINDOW_FRAMES:
            return None
        window = min(WINDOW_FRAMES, (frames // WINDOW_STEP + 2) * WINDOW_STEP)
        encoded = self.model.encode(np.pad(features, ((0, 0), (0, window - features.shape[-1]))))
        ids = self.tokenizer.encode(" " + text)
        timed = []  # Whisper's words, punctuation merged into them as the text writes it
        for piece in self.model.find_alignment(self.tokenizer, [ids], encoded, frames)[0]:
            start, end = round(float(piece["start"]), 3), round(float(piece["end"]), 3)
            if piece["word"].startswith(" ") or not timed:
                timed.append([piece["word"].strip(), start, end])
            else:  # punctuation, which has no sound of its own, or a word after an opening quote
                timed[-1][0] += piece["word"]
                timed[-1][2] = end if any(c.isalnum() for c in piece["word"]) else timed[-1][2]
        return timed if [word for word, _, _ in timed] == text.split() else None


def align_corpus(manifest: Path, threads: int = 2, progress: bool = True) -> tuple[int, int]:
    """Fill the `words` field of the English utterances that lack it; returns (aligned, not aligned).
    Resumable: the manifest is written every 500 utterances."""
    root, utterances = manifest_dir(manifest), read_manifest(manifest)
    manifest_path = root / "manifest.jsonl" if Path(manifest).is_dir() else Path(manifest)
    todo = [i for i, u in enumerate(utterances) if u.language in ALIGNED_LANGUAGES and u.words is None]
    aligner = WordAligner(threads) if todo else None
    done = failed = 0
    for count, index in enumerate(tqdm(todo, desc="align", unit="utt", disable=not progress), 1):
        utt = utterances[index]
        samples, _ = load_audio(root / utt.audio, SAMPLE_RATE)
        words = aligner(samples, normalize(utt.text, utt.language))
        utterances[index] = dataclasses.replace(utt, words=words or [])
        done, failed = (done + 1, failed) if words else (done, failed + 1)
        if count % 500 == 0:  # an interrupted run keeps what it computed
            write_manifest(manifest_path, utterances)
    if todo:
        write_manifest(manifest_path, utterances)
    return done, failed
