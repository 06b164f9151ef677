"""`stepaudio talk`: a live voice conversation through the microphone and speaker, with a live transcript.

Needs an audio device and the `talk` extra (`pip install 'stepaudio[talk]'`: sounddevice, PortAudio).
Speak; the assistant answers when you stop, and stops when you talk over it. Ctrl-C leaves.
"""

from __future__ import annotations

import argparse
import sys

from stepaudio.commands.voice_chat_options import add_engine_args, load_engine, session_config
from stepaudio.errors import StepAudioError

MIC_RATE = 16_000
MIC_BLOCK = 320  # 20 ms


def open_audio():
    """The sounddevice module, once a default input and output device are known to exist."""
    try:
        import sounddevice
    except (ImportError, OSError) as error:  # OSError: PortAudio itself is missing
        raise StepAudioError(f"no audio I/O here ({error}): pip install 'stepaudio[talk]'") from None
    try:
        sounddevice.check_input_settings(samplerate=MIC_RATE, channels=1)
        sounddevice.check_output_settings(channels=1)
    except Exception as error:
        raise StepAudioError(
            f"no usable microphone and speaker ({error}); try `stepaudio simulate` with recorded turns"
        ) from None
    return sounddevice


def cmd_talk(args: argparse.Namespace) -> None:
    import asyncio

    config = session_config(args)  # bad settings fail before the audio device or the models load
    sounddevice = open_audio()
    write = sys.stdout.write
    write("loading models...\n")
    engine = load_engine(args, lambda line: write(line + "\n"))
    asyncio.run(converse(sounddevice, engine, config, write))


async def converse(sounddevice, engine, config, write) -> None:
    import asyncio
    import queue

    import numpy as np

    from stepaudio.realtime.events import AudioDelta, ResponseDone, SpeechStarted, TextDelta, TranscriptDone
    from stepaudio.realtime.session import RealtimeSession

    loop = asyncio.get_running_loop()
    mic: asyncio.Queue = asyncio.Queue()
    speaker: queue.Queue = queue.Queue()  # float32 chunks at the TTS rate, drained by PortAudio's thread
    pending = np.zeros(0, dtype=np.float32)

    def record(block, frames, when, status) -> None:
        loop.call_soon_threadsafe(mic.put_nowait, block[:, 0].copy())

    def play(out, frames, when, status) -> None:
        nonlocal pending
        while len(pending) < frames and not speaker.empty():
            pending = np.concatenate([pending, speaker.get_nowait()])
        out[:, 0] = 0
        out[: min(frames, len(pending)), 0] = pending[:frames]
        pending = pending[frames:]

    session = RealtimeSession(engine, config)

    async def show() -> None:
        nonlocal pending
        async for event in session.events():
            if isinstance(event, SpeechStarted):  # the user talks: silence the speaker now
                while not speaker.empty():
                    speaker.get_nowait()
                pending = pending[:0]
            elif isinstance(event, TranscriptDone):
                write(f"\nyou> {event.transcript}\nassistant> ")
            elif isinstance(event, TextDelta):
                write(event.delta)
            elif isinstance(event, AudioDelta):
                speaker.put(event.pcm)
            elif isinstance(event, ResponseDone) and event.status != "completed":
                write(f" [{event.status}]")
            sys.stdout.flush()

    shower = asyncio.create_task(show())
    rate = engine.speaker.sample_rate
    write("listening (Ctrl-C to leave)\n")
    with (
        sounddevice.InputStream(samplerate=MIC_RATE, channels=1, blocksize=MIC_BLOCK, dtype="float32", callback=record),
        sounddevice.OutputStream(samplerate=rate, channels=1, dtype="float32", callback=play),
    ):
        try:
            while True:
                await session.append_audio(await mic.get(), MIC_RATE)
        finally:
            await session.close()
            await shower


def register(commands: argparse._SubParsersAction) -> None:
    talk = commands.add_parser(
        "talk",
        help="a live voice conversation through the microphone and speaker",
        description=__doc__.split("\n\n", 1)[1],
    )
    add_engine_args(talk)
    talk.set_defaults(run=cmd_talk)
