"""`stepaudio transcribe`: speech to text with the mini model's Whisper tiny.en (English)."""

from __future__ import annotations

import argparse
import json


def cmd_transcribe(args: argparse.Namespace) -> None:
    from stepaudio.asr import Transcriber
    from stepaudio.audio import load_audio
    from stepaudio.audio.whisper_mel import SAMPLE_RATE

    # Read every file first: a bad one fails before the model loads.
    audio = [load_audio(path, SAMPLE_RATE)[0] for path in args.audio]
    asr = Transcriber.load(args.model)
    results = []
    for path, samples in zip(args.audio, audio, strict=True):
        transcript = asr.transcribe(samples)
        if args.json:
            results.append(
                {
                    "file": path,
                    "duration": transcript.duration,
                    "text": transcript.text,
                    "segments": [
                        {"start": round(s.start, 2), "end": round(s.end, 2), "text": s.text.strip()}
                        for s in transcript.segments
                    ],
                }
            )
        elif len(args.audio) > 1:
            print(f"{path}: {transcript.text}", flush=True)
        else:
            print(transcript.text)
    if args.json:
        print(json.dumps(results if len(results) > 1 else results[0], indent=2, ensure_ascii=False))


def register(commands: argparse._SubParsersAction) -> None:
    transcribe = commands.add_parser(
        "transcribe",
        help="transcribe English speech (Whisper tiny.en)",
        description="Transcribe audio files (wav/flac/ogg/mp3) with Whisper tiny.en running in torch, "
        "decoding greedily as faster-whisper does; long files go in 30-s windows.",
    )
    transcribe.add_argument("audio", nargs="+", help="input audio files")
    transcribe.add_argument("--json", action="store_true", help="print JSON with timed segments")
    transcribe.add_argument(
        "--model",
        default="mini",
        help="'mini' or a CTranslate2 Whisper folder (model.bin + tokenizer.json) (default: %(default)s)",
    )
    transcribe.set_defaults(run=cmd_transcribe)
