"""One conversation turn, outside real time: audio (or text) in, the answer's text and speech out.

It runs the same session and stages as a live conversation (listen, respond, speak), with the turn
committed by hand and the audio collected as fast as it is made, so `stepaudio chat IN.wav` answers
exactly as a voice conversation would.
"""

from __future__ import annotations

import asyncio
from dataclasses import dataclass, replace

import numpy as np

from stepaudio.errors import AudioError, StepAudioError
from stepaudio.realtime.events import AudioDelta, Error, ResponseDone, TranscriptDone
from stepaudio.realtime.session import RealtimeSession, SessionConfig


@dataclass(frozen=True)
class Answer:
    transcript: str | None  # what the user said (None for a text turn)
    text: str
    audio: np.ndarray  # float32 mono
    sample_rate: int


async def answer_turn(
    engine,
    audio: np.ndarray | None = None,
    sample_rate: int | None = None,
    text: str | None = None,
    config: SessionConfig | None = None,
) -> Answer:
    """Answer one spoken (`audio`, `sample_rate`) or written (`text`) turn; a failed stage raises."""
    config = replace(config or SessionConfig(), turn_detection=False, output_lead_ms=None)
    session = RealtimeSession(engine, config)
    events = session.events()
    transcript = None
    try:
        if text is None:
            await session.append_audio(audio, sample_rate)
            await session.commit()
            async for heard in events:
                if isinstance(heard, (TranscriptDone, Error)):
                    break
            if isinstance(heard, Error):
                raise StepAudioError(heard.message)
            if not heard.transcript.strip():
                raise AudioError("no words heard in the audio: record someone speaking")
            transcript = heard.transcript
        await session.create_response(text)
        pieces, errors = [], []
        async for event in events:
            if isinstance(event, AudioDelta):
                pieces.append(event.pcm)
            elif isinstance(event, Error):
                errors.append(event.message)
            elif isinstance(event, ResponseDone):
                if errors or event.status != "completed":
                    raise StepAudioError("; ".join(errors) or f"the answer was {event.status}")
                audio_out = np.concatenate(pieces) if pieces else np.zeros(0, np.float32)
                return Answer(transcript, event.text, audio_out, engine.speaker.sample_rate)
    finally:
        await session.close()
    raise StepAudioError("the session ended without an answer")


def answer_turn_sync(engine, **turn) -> Answer:
    return asyncio.run(answer_turn(engine, **turn))
