"""`stepaudio simulate CONVERSATION`: replay a spoken conversation against the real-time pipeline.

The user's recordings stream in like a live microphone (real time, silence between turns, optional
barge-ins); the assistant's audio is recorded as a player would play it. Writes timeline.json (every
event, per-turn latencies, and Whisper tiny.en transcripts of the answers as heard), assistant.wav
and conversation.wav (user left, assistant right).
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

from stepaudio.commands.voice_chat_options import add_engine_args, load_engine, session_config
from stepaudio.errors import OptionError
from stepaudio.outputs import check_output, note_replacing, write_file

RESULTS = ("timeline.json", "assistant.wav", "conversation.wav")


def output_folder(path: str, inputs: tuple[Path, ...]) -> Path:
    """The folder for the results, made now, its result files checked: a file in its place, a folder that
    cannot be written or a result that would overwrite an input fails before the models load."""
    out = Path(path)
    try:
        out.mkdir(parents=True, exist_ok=True)
    except OSError as error:
        raise OptionError(f"cannot make the output folder {out}: {error.strerror}") from error
    note_replacing(*(check_output(out / name, inputs) for name in RESULTS))
    return out


def cmd_simulate(args: argparse.Namespace) -> None:
    import asyncio

    import numpy as np

    from stepaudio.asr import Transcriber
    from stepaudio.audio import save_audio
    from stepaudio.audio.vad import SAMPLE_RATE
    from stepaudio.realtime.session import RealtimeSession
    from stepaudio.realtime.simulate import load_conversation, simulate, speech_span_by_vad

    conversation = load_conversation(args.conversation)
    config = session_config(args)  # bad settings fail before the models load
    out = output_folder(args.output, conversation.sources)
    write = sys.stdout.write
    write("loading models...\n")
    engine = load_engine(args, lambda line: write(line + "\n"))

    async def run():
        session = RealtimeSession(engine, config)
        result = await simulate(session, conversation, speech_span_by_vad(engine.vad))
        return session, result

    session, result = asyncio.run(run())
    transcriber = Transcriber.load("mini")
    for turn in result.turns:
        if "response_id" in turn:
            heard = result.player.track(result.seconds, SAMPLE_RATE, turn["response_id"])
            voiced = np.flatnonzero(np.abs(heard) > 1e-4)
            if len(voiced):
                turn["whisper"] = transcriber.transcribe(heard[voiced[0] : voiced[-1] + 1]).text
    assistant = result.player.track(result.seconds, SAMPLE_RATE)
    user = np.zeros_like(assistant)
    user[: min(len(user), len(result.user_track))] = result.user_track[: len(user)]
    save_audio(out / "assistant.wav", assistant, SAMPLE_RATE)
    save_audio(out / "conversation.wav", np.stack([user, assistant], axis=1), SAMPLE_RATE)
    metrics = session.metrics
    summary = {
        "seconds": round(result.seconds, 2),
        "speculations": metrics.speculations,
        "committed": metrics.committed,
        "compression_ratio": round(session.context.compression_ratio(), 2),
        "barge_in_ms": [round(ms) for ms in metrics.barge_in_ms],
        "listen_after_end_ms": [round(ms) for ms in metrics.listen_after_end_ms],
    }
    report = {"summary": summary, "turns": result.turns, "timeline": result.timeline}
    write_file(out / "timeline.json", (json.dumps(report, indent=1, ensure_ascii=False) + "\n").encode())
    for number, turn in enumerate(result.turns, start=1):
        write(f"turn {number}: {turn.get('transcript', '')!r}\n")
        status, latency = turn.get("status", "none"), turn.get("latency_ms", "-")
        write(f"  answer ({status}, {latency} ms after the speech ended): {turn.get('response_text', '')!r}\n")
        write(f"  heard: {turn.get('whisper', '')!r}\n")
    write(f"{json.dumps(summary)}\nwrote {', '.join(str(out / name) for name in RESULTS)}\n")


def register(commands: argparse._SubParsersAction) -> None:
    simulate = commands.add_parser(
        "simulate",
        help="replay a spoken conversation against the real-time pipeline and record it",
        description=__doc__.split("\n\n", 1)[1],
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    simulate.add_argument("conversation", help="a conversation JSON file, or a folder with conversation.json")
    simulate.add_argument(
        "-o", "--output", default="simulation", help="folder for the recording (default: %(default)s)"
    )
    add_engine_args(simulate)
    simulate.set_defaults(run=cmd_simulate)
