"""`stepaudio data`: build training corpora (synthesise speech, import recordings) and report on them."""

from __future__ import annotations

import argparse
import os
import time
from pathlib import Path

from stepaudio.errors import DataError


def _pair(value: str) -> tuple[float, float]:
    try:
        low, high = (float(part) for part in value.split(","))
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected MIN,MAX (e.g. 0.9,1.1), got {value!r}") from None
    return low, high


def _mix(value: str) -> tuple[tuple[str, float], ...]:
    try:
        pairs = [item.split("=") for item in value.split(",") if item]
        return tuple((language.strip(), float(weight)) for language, weight in pairs)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected LANG=WEIGHT,... (e.g. en=0.6,zh=0.4), got {value!r}") from None


def _text_file(value: str) -> tuple[str, Path]:
    language, sep, path = value.partition("=")
    if not sep or not path:
        raise argparse.ArgumentTypeError(f"expected LANG=FILE (e.g. en=my_sentences.txt), got {value!r}")
    return language, Path(path)


def _print_voices(voices, notes) -> None:
    engines: dict[str, list[str]] = {}
    for voice in voices:
        engines.setdefault(voice.engine, []).append(f"{voice.name} ({voice.language})")
    for engine, names in engines.items():
        print(f"{engine}: {len(names)} voices: {', '.join(names)}")
    for note in notes:
        print(f"note: {note}")


def cmd_voices(args: argparse.Namespace) -> None:
    from stepaudio.tts_engines import find_voices

    _print_voices(*find_voices(tuple(args.voices.split(","))))


def cmd_synth(args: argparse.Namespace) -> None:
    from stepaudio.train.data.stats import corpus_stats, format_stats
    from stepaudio.train.data.synth import SynthOptions, plan, synthesize_corpus
    from stepaudio.train.data.texts import load_sentences
    from stepaudio.tts_engines import find_voices

    options = SynthOptions(
        seed=args.seed,
        mix=args.mix,
        hours=args.hours if args.hours is not None or args.max_utterances is not None else 1.0,
        max_utterances=args.max_utterances,
        test_voices=args.test_voices,
        speed_range=args.speed,
        pitch_range=args.pitch,
        audio_format=args.format,
    )
    voices, voice_notes = find_voices(tuple(args.voices.split(",")))
    _print_voices(voices, voice_notes)
    if not voices:
        raise DataError(f"no TTS voice matches {args.voices!r}; see `stepaudio data voices` and the notes above")
    text_files: dict[str, list[Path]] = {}
    for language, path in args.text:
        text_files.setdefault(language, []).append(path)
    languages = tuple(language for language, _ in options.mix)
    sources = tuple(name for name in args.sources.split(",") if name)  # "" = only --text files
    pool, text_notes = load_sentences(sources, languages, text_files)
    jobs, plan_notes = plan(pool, voices, options)
    for note in text_notes + plan_notes:
        print(f"note: {note}")
    print("texts: " + ", ".join(f"{language} {len(sentences)} sentences" for language, sentences in pool.items()))
    tests = sum(job.split == "test" for job in jobs)
    print(f"plan: {len(jobs) - tests} training + {tests} test utterances -> {args.out} ({args.jobs} jobs)")
    started = time.perf_counter()
    utterances, errors = synthesize_corpus(Path(args.out), jobs, args.jobs, progress=not args.quiet)
    print(format_stats(corpus_stats(utterances)))
    seconds = time.perf_counter() - started
    print(f"wrote {Path(args.out) / 'manifest.jsonl'}: {len(utterances)} utterances in {seconds:.1f} s")
    if errors:
        print(f"{len(errors)} utterances failed and were left out; first: {errors[0]}")


def cmd_add_real(args: argparse.Namespace) -> None:
    from stepaudio.train.data.real import add_real
    from stepaudio.train.data.texts import held_out, load_sentences

    pool, _ = load_sentences(languages=(args.language,))
    added, skipped = add_real(
        Path(args.folder),
        Path(args.corpus),
        args.language,
        speaker=args.speaker,
        split=args.split,
        test_sentences=frozenset(held_out(pool[args.language])),
    )
    seconds = sum(utt.duration for utt in added)
    print(f"added {len(added)} recordings ({seconds / 60:.1f} min) to {Path(args.corpus) / 'manifest.jsonl'}")
    for reason in skipped:
        print(f"skipped {reason}")


def cmd_stats(args: argparse.Namespace) -> None:
    import json

    from stepaudio.train.data.manifest import read_manifest
    from stepaudio.train.data.stats import corpus_stats, format_stats

    table = corpus_stats(read_manifest(args.manifest))
    print(json.dumps(table, indent=2) if args.json else format_stats(table))


def cmd_tokenize(args: argparse.Namespace) -> None:
    from stepaudio.tokenizer.dual import DualTokenizer
    from stepaudio.train.data.tokenize import tokenize_corpus

    tokenizer = DualTokenizer.load(args.model)
    count = tokenize_corpus(args.corpus, *tokenizer.stream_encoders())
    print(f"tokenized {count} utterances; the manifest now points at tokens/*.npy")


def cmd_align(args: argparse.Namespace) -> None:
    from stepaudio.train.data.align import ALIGNED_LANGUAGES, align_corpus

    aligned, failed = align_corpus(args.corpus, threads=args.threads)
    print(f"aligned {aligned} utterances ({', '.join(ALIGNED_LANGUAGES)}); {failed} could not be aligned")


def register(commands: argparse._SubParsersAction) -> None:
    data = commands.add_parser(
        "data",
        help="build training corpora: synthesise speech, import recordings, report hours",
        description="Build speech corpora for training (manifest.jsonl + 16 kHz mono 16-bit audio).",
    )
    actions = data.add_subparsers(dest="action", metavar="ACTION", required=True)

    tokenize = actions.add_parser(
        "tokenize",
        help="speech tokens for every utterance of a corpus (resumable)",
        description="Tokenize every utterance of a corpus with the dual tokenizer into tokens/<stem>.npy "
        "(interleaved audio indices 0..5119) and record the paths in the manifest; the decoder and TTS recipes "
        "train on them. Re-running skips utterances already tokenized, unless their token files were made by another "
        "tokenizer (checked by encoding a few again): then the stream that changed (semantic, acoustic or both) is "
        "made again in all of them.",
    )
    tokenize.add_argument("corpus", type=Path, help="corpus folder or its manifest.jsonl")
    tokenize.add_argument("--model", default="mini", help="'mini' or a directory of official checkpoints")
    tokenize.set_defaults(run=cmd_tokenize)

    align = actions.add_parser(
        "align",
        help="word timings of a corpus's English utterances, for the TTS LM's attention guide (resumable)",
        description="Align each English utterance's text (as the TTS LM reads it) to its audio with Whisper "
        "tiny.en and record the words' start and end times in the manifest's `words` field. `stepaudio train "
        "tts` then guides its attention to the word being spoken instead of an even pace through the text. "
        "Re-running skips utterances already aligned. Needs faster-whisper (the train extra).",
    )
    align.add_argument("corpus", type=Path, help="corpus folder or its manifest.jsonl")
    align.add_argument("--threads", type=int, default=2, help="CPU threads for Whisper (default: 2)")
    align.set_defaults(run=cmd_align)

    voices = actions.add_parser("voices", help="list the TTS engines and voices installed here")
    voices.add_argument("--voices", default="*", help="comma-separated patterns on engine:voice (default: all)")
    voices.set_defaults(run=cmd_voices)

    synth = actions.add_parser(
        "synth",
        help="synthesise a corpus with every TTS voice installed here",
        description="Render text (dialogues, fortunes, word lists, generated sentences) with every installed "
        "TTS voice at varied speed and pitch. Deterministic for a seed; re-running resumes. 30 sentences per "
        "language are held out as the test split.",
    )
    synth.add_argument("out", metavar="OUT_DIR", help="corpus folder (manifest.jsonl and audio/)")
    synth.add_argument("--hours", type=float, help="training audio to plan, in hours (default 1 if no budget given)")
    synth.add_argument("--max-utterances", type=int, help="at most this many training utterances")
    synth.add_argument(
        "--mix", type=_mix, default="en=0.6,zh=0.25,yue=0.15", help="share of hours per language (default: %(default)s)"
    )
    synth.add_argument("--voices", default="*", help="patterns on engine:voice, e.g. 'piper:*,espeak:en*'")
    synth.add_argument(
        "--sources",
        default="chatterbot,fortunes,words,generated",
        help="text sources, '' for none (default: %(default)s)",
    )
    synth.add_argument(
        "--text", type=_text_file, action="append", default=[], metavar="LANG=FILE", help="extra sentences, one a line"
    )
    synth.add_argument("--seed", type=int, default=0)
    synth.add_argument("--jobs", type=int, default=os.cpu_count() or 1, help="parallel processes (default: all cores)")
    synth.add_argument("--speed", type=_pair, default="0.85,1.2", metavar="MIN,MAX", help="speed factors (%(default)s)")
    synth.add_argument("--pitch", type=_pair, default="0.88,1.15", metavar="MIN,MAX", help="f0 factors (%(default)s)")
    synth.add_argument("--test-voices", type=int, default=2, help="voices reading each held-out sentence (default: 2)")
    synth.add_argument("--format", choices=("flac", "wav"), default="flac", help="audio files (default: flac)")
    synth.add_argument("--quiet", action="store_true", help="no progress bar")
    synth.set_defaults(run=cmd_synth)

    real = actions.add_parser(
        "add-real",
        help="import recordings with transcripts into a corpus",
        description="Add real recordings to a corpus: clip.wav + clip.txt/.lab pairs, or a Sphinx/Kaldi "
        "transcription listing (`<s> text </s> (clip)` or `clip text`). Audio becomes 16 kHz mono 16-bit.",
    )
    real.add_argument("folder", metavar="DIR", help="folder of recordings and transcripts (searched recursively)")
    real.add_argument("--corpus", required=True, metavar="OUT_DIR", help="corpus folder whose manifest to extend")
    real.add_argument("--language", default="en", help="language of the recordings (default: en)")
    real.add_argument("--speaker", help="speaker name for the voice field (default: the folder's name)")
    real.add_argument(
        "--split",
        choices=("auto", "train", "test"),
        default="auto",
        help="auto: held-out test sentences go to test, the rest to train (default)",
    )
    real.set_defaults(run=cmd_add_real)

    stats = actions.add_parser("stats", help="hours per language, voice, split and source of a corpus")
    stats.add_argument("manifest", metavar="MANIFEST", help="manifest.jsonl or its corpus folder")
    stats.add_argument("--json", action="store_true", help="print JSON")
    stats.set_defaults(run=cmd_stats)
