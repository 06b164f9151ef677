"""Synthesise a speech corpus: plan every utterance up front, render them in parallel, resumably.

The plan is a pure function of the text pool, the voices found, the options and the seed, so a run
is reproducible (same manifest, same audio) and a bigger budget extends a smaller one: each
language's stream of utterances is drawn in order, and the languages are interleaved to follow the
mix in estimated seconds. Each utterance's file name is a hash of what it says and how, so a
re-run renders only what is missing, and an interrupted run loses only the utterances in flight.

Test split: the held-out sentences of each language (texts.held_out) never enter the training
stream; each is rendered by `test_voices` voices at natural speed and pitch, outside the budget.
"""

from __future__ import annotations

import hashlib
import itertools
import math
import os
import re
import zlib
from collections.abc import Iterator
from dataclasses import dataclass
from multiprocessing import get_context
from pathlib import Path

import numpy as np
import soundfile as sf

from stepaudio.errors import DataError, StepAudioError
from stepaudio.rates import SAMPLE_RATE
from stepaudio.train.data.manifest import MANIFEST_NAME, Utterance, write_manifest
from stepaudio.train.data.texts import Sentence, held_out, text_hash
from stepaudio.tts_engines import Engine, Voice, get_engine

DEFAULT_MIX = {"en": 0.6, "zh": 0.25, "yue": 0.15}
CHARS_PER_SECOND = {"en": 14.0, "zh": 4.5, "yue": 4.5}  # at speed 1, to plan an hours budget
PEAK = 0.95
MIN_SECONDS = 0.2
MAX_REPEATS = 1000


@dataclass(frozen=True)
class Job:
    """One utterance to render; `seed` drives the engine's own randomness (Piper's noise)."""

    audio: str
    text: str
    language: str
    voice: Voice
    speed: float
    pitch: float
    split: str
    source: str
    seed: int

    def utterance(self, duration: float) -> Utterance:
        return Utterance(
            audio=self.audio,
            text=self.text,
            language=self.language,
            voice=self.voice.id,
            speed=self.speed,
            pitch=self.pitch,
            duration=round(duration, 3),
            split=self.split,
            source=self.source,
        )


@dataclass(frozen=True)
class SynthOptions:
    seed: int = 0
    mix: tuple[tuple[str, float], ...] = tuple(DEFAULT_MIX.items())
    hours: float | None = 1.0  # training-split budget (estimated while planning); None = no limit
    max_utterances: int | None = None  # training-split utterances; None = no limit
    test_voices: int = 2  # voices that read each held-out sentence
    speed_range: tuple[float, float] = (0.85, 1.2)
    pitch_range: tuple[float, float] = (0.88, 1.15)
    audio_format: str = "flac"

    def __post_init__(self) -> None:
        if self.hours is None and self.max_utterances is None:
            raise DataError("give a budget: hours or max_utterances")
        if (self.hours or 0) < 0 or (self.max_utterances or 0) < 0 or self.test_voices < 0:
            raise DataError(
                f"hours ({self.hours}), max_utterances ({self.max_utterances}) and test_voices ({self.test_voices}) "
                "cannot be negative"
            )
        for name, (low, high) in (("speed", self.speed_range), ("pitch", self.pitch_range)):
            if not 0.25 <= low <= high <= 4.0:
                raise DataError(f"{name} range {low}..{high} must satisfy 0.25 <= min <= max <= 4")
        if self.audio_format not in ("flac", "wav"):
            raise DataError(f"audio format must be flac or wav, got {self.audio_format!r}")
        if not self.mix or any(weight <= 0 for _, weight in self.mix):
            raise DataError(f"the language mix needs positive weights, got {dict(self.mix)}")


def _slug(text: str) -> str:
    return re.sub(r"[^A-Za-z0-9._+-]", "_", text)


def _job(sentence: Sentence, voice: Voice, speed: float, pitch: float, split: str, options: SynthOptions) -> Job:
    key = f"{options.seed}|{voice.id}|{speed:.2f}|{pitch:.2f}|{sentence.text}"
    digest = hashlib.sha1(key.encode("utf-8")).hexdigest()
    return Job(
        audio=f"audio/{_slug(voice.id)}/{digest[:20]}.{options.audio_format}",
        text=sentence.text,
        language=sentence.language,
        voice=voice,
        speed=speed,
        pitch=pitch,
        split=split,
        source=sentence.source,
        seed=int(digest[20:28], 16),
    )


def _train_stream(sentences: list[Sentence], voices: list[Voice], options: SynthOptions, rng) -> Iterator[Job]:
    """Endless training utterances of one language: sources take turns, sentences cycle, voices/speed/pitch drawn."""
    by_source: dict[str, list[Sentence]] = {}
    for sentence in sentences:
        by_source.setdefault(sentence.source, []).append(sentence)
    shuffled = [[group[i] for i in rng.permutation(len(group))] for _, group in sorted(by_source.items())]
    order = [s for turn in itertools.zip_longest(*shuffled) for s in turn if s is not None]
    for index in itertools.count():
        voice = voices[rng.integers(len(voices))]
        speed = round(float(rng.uniform(*options.speed_range)), 2)
        pitch = round(float(rng.uniform(*options.pitch_range)), 2)
        yield _job(order[index % len(order)], voice, speed, pitch, "train", options)


def plan(pool: dict[str, list[Sentence]], voices: list[Voice], options: SynthOptions) -> tuple[list[Job], list[str]]:
    """Test jobs then training jobs, in a fixed order; plus notes on languages left out."""
    mix = {language: weight for language, weight in options.mix}
    notes, streams, test_jobs = [], {}, []
    for language in mix:
        speakers = [v for v in voices if v.language == language]
        sentences = pool.get(language, [])
        if not speakers or not sentences:
            notes.append(f"language {language} left out: no {'voice' if not speakers else 'text'} for it")
            continue
        test = sorted(held_out(sentences), key=text_hash)
        by_text = {s.text: s for s in sentences}
        for index, text in enumerate(test):
            for k in range(min(options.test_voices, len(speakers))):
                voice = speakers[(index + k) % len(speakers)]
                test_jobs.append(_job(by_text[text], voice, 1.0, 1.0, "test", options))
        train = [s for s in sentences if s.text not in test]
        if train:
            rng = np.random.default_rng([options.seed, zlib.crc32(language.encode())])
            streams[language] = _train_stream(train, speakers, options, rng)
    if not streams:
        raise DataError("nothing to synthesise: " + "; ".join(notes))
    planned = {language: 0.0 for language in streams}  # estimated seconds per language
    train_jobs: list[Job] = []
    budget = math.inf if options.hours is None else options.hours * 3600
    limit = math.inf if options.max_utterances is None else options.max_utterances
    seen: set[str] = set()
    repeats = 0  # draws in a row that repeat an earlier utterance: a tiny pool can run out of new ones
    while sum(planned.values()) < budget and len(train_jobs) < limit and repeats < MAX_REPEATS:
        language = min(planned, key=lambda name: planned[name] / mix[name])
        job = next(streams[language])
        planned[language] += len(job.text) / CHARS_PER_SECOND.get(language, 10.0) / job.speed
        repeats = repeats + 1 if job.audio in seen else 0
        if not repeats:
            seen.add(job.audio)
            train_jobs.append(job)
    if repeats:
        notes.append(f"the texts and voices gave only {len(train_jobs)} distinct training utterances")
    return test_jobs + train_jobs, notes


def audio_duration(path: Path) -> float | None:
    """Seconds of a finished corpus file, or None when it is missing, partial or not 16 kHz mono 16-bit."""
    try:
        info = sf.info(str(path))
    except (sf.LibsndfileError, RuntimeError, OSError):
        return None
    ok = info.samplerate == SAMPLE_RATE and info.channels == 1 and info.subtype == "PCM_16" and info.frames > 0
    return info.frames / SAMPLE_RATE if ok else None


def render(job: Job, corpus: Path) -> float:
    """Render one job to its file (written beside it, then renamed: never half a file); return seconds."""
    from stepaudio.audio import peak_normalize, resample, save_audio

    samples, rate = get_engine(job.voice.engine).synthesize(job.voice, job.text, job.speed, job.pitch, job.seed)
    samples = resample(np.asarray(samples, dtype=np.float32).reshape(-1), rate, SAMPLE_RATE)
    if len(samples) < MIN_SECONDS * SAMPLE_RATE or np.abs(samples).max(initial=0.0) < 1e-4:
        raise DataError(f"{job.voice.id} gave no audio for {job.text!r}")
    path = corpus / job.audio
    path.parent.mkdir(parents=True, exist_ok=True)
    partial = path.with_name(f".{path.stem}.partial{path.suffix}")
    save_audio(partial, peak_normalize(samples, PEAK), SAMPLE_RATE)
    os.replace(partial, path)
    return len(samples) / SAMPLE_RATE


def _worker_init(threads: int) -> None:
    Engine.threads = threads


def _render_in_worker(task: tuple[int, Job, Path]) -> tuple[int, float | None, str | None]:
    index, job, corpus = task
    try:
        return index, render(job, corpus), None
    except StepAudioError as error:
        return index, None, str(error)


def synthesize_corpus(
    corpus: Path, jobs: list[Job], workers: int, progress: bool = True
) -> tuple[list[Utterance], list[str]]:
    """Render what is missing, then write the manifest of every finished job (also when interrupted).

    Returns the manifest's utterances and the errors of jobs that failed (they are left out).
    """
    from tqdm import tqdm

    corpus.mkdir(parents=True, exist_ok=True)
    durations = [audio_duration(corpus / job.audio) for job in jobs]
    todo = [(index, job, corpus) for index, job in enumerate(jobs) if durations[index] is None]
    errors: list[str] = []
    bar = tqdm(total=len(todo), unit="utt", desc="synth", disable=not progress)
    try:
        if workers <= 1:
            _worker_init(max(1, os.cpu_count() or 1))
            results: Iterator = map(_render_in_worker, todo)
            _collect(results, durations, errors, bar)
        else:
            threads = max(1, (os.cpu_count() or 1) // workers)
            with get_context("fork").Pool(workers, _worker_init, (threads,)) as pool:
                _collect(pool.imap_unordered(_render_in_worker, todo), durations, errors, bar)
    finally:
        bar.close()
        done = [job.utterance(seconds) for job, seconds in zip(jobs, durations, strict=True) if seconds is not None]
        write_manifest(corpus / MANIFEST_NAME, done)
    return done, errors


def _collect(results: Iterator, durations: list[float | None], errors: list[str], bar) -> None:
    for index, seconds, error in results:
        durations[index] = seconds
        if error:
            errors.append(error)
        bar.update()
