"""`stepaudio vad`: the voice-activity events of an audio file, as a live conversation would see them."""

from __future__ import annotations

import argparse
import json


def cmd_vad(args: argparse.Namespace) -> None:
    from stepaudio.audio import load_audio
    from stepaudio.audio.vad import SAMPLE_RATE, SileroVAD, VADParams

    params = VADParams(args.threshold, args.negative_threshold, args.start_ms, args.pause_ms, args.end_ms)
    samples, _ = load_audio(args.audio, SAMPLE_RATE)
    stream = SileroVAD.load(args.model).stream(params)
    events = stream.step(samples) + stream.flush()
    if args.json:
        print(json.dumps([{"event": event.kind.value, "time": round(event.time, 3)} for event in events]))
        return
    for event in events:
        print(f"{event.time:8.3f} s  {event.kind.value}")


def register(commands: argparse._SubParsersAction) -> None:
    parser = commands.add_parser(
        "vad",
        help="speech start / pause / end-of-turn events of an audio file",
        description="Run Silero VAD with hysteresis over an audio file and print its events: speech_started "
        "(speech held for --start-ms), pause (silence for --pause-ms), speech_resumed, end_of_turn (silence for "
        "--end-ms).",
    )
    from stepaudio.audio.vad import VADParams  # light: onnxruntime loads only with the model

    defaults = VADParams()
    parser.add_argument("audio", help="audio file (wav/flac/ogg/mp3)")
    parser.add_argument("--model", default="mini", help="where the Silero VAD comes from (default: %(default)s)")
    parser.add_argument(
        "--threshold",
        type=float,
        default=defaults.threshold,
        help="speech starts at this probability (default: %(default)s)",
    )
    parser.add_argument(
        "--negative-threshold",
        type=float,
        default=defaults.negative_threshold,
        help="speech ends below this (default: %(default)s)",
    )
    for name in ("start_ms", "pause_ms", "end_ms"):
        parser.add_argument(
            f"--{name.replace('_', '-')}",
            type=int,
            default=getattr(defaults, name),
            help="milliseconds (default: %(default)s)",
        )
    parser.add_argument("--json", action="store_true", help="print JSON")
    parser.set_defaults(run=cmd_vad)
