"""A conversation replayed in real time: user recordings streamed like a live microphone, the
assistant's audio played like a speaker, every event on one timeline.

The microphone sends 20 ms chunks on a fixed real-time schedule, silence between turns. A turn
starts `gap_ms` after the previous answer has finished playing, or, with `barge_in_after_ms`, that
long after the previous answer began to play (the user talks over it). The player plays each audio
chunk after the previous one, and stops when the user barges in.

Latency of a turn is measured from the end of the user's speech (the end of the last 32 ms frame
Silero calls speech in the user's recording, at the moment the microphone sent it) to the moment the
first answer audio reaches the player. It includes the end-of-turn silence the VAD waits for
(`end_ms`); `after_turn_end_ms` is measured from the VAD's end-of-turn decision instead. A turn that
cuts into the previous answer also gets `barge_in_stop_ms`: from the start of its speech to the
moment the player went quiet.

A conversation file (JSON): {"gap_ms": 700, "turns": [{"audio": "user_1.flac", "text": "...",
"barge_in_after_ms": null}, ...]}, audio paths relative to the file.
"""

from __future__ import annotations

import asyncio
import functools
import json
import time
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from stepaudio.audio import load_audio, resample
from stepaudio.audio.vad import FRAME_SECONDS, SAMPLE_RATE
from stepaudio.errors import DataError
from stepaudio.realtime.events import (
    AudioDelta,
    Event,
    ResponseCreated,
    ResponseDone,
    SpeechStarted,
    SpeechStopped,
    TranscriptDone,
)
from stepaudio.realtime.session import MILESTONES, RealtimeSession

CHUNK_SECONDS = 0.02
TAIL_MS = 1000  # recording after the last answer ends
ANSWER_TIMEOUT_SECONDS = 60.0  # a turn that gets no answer (noise, a failure) is left after this


@dataclass
class UserTurn:
    audio: np.ndarray  # 16 kHz mono
    text: str
    barge_in_after_ms: int | None = None
    speech: tuple[float, float] = (0.0, 0.0)  # seconds into `audio` where the speech starts and ends


@dataclass
class Conversation:
    turns: list[UserTurn]
    gap_ms: int = 700
    sources: tuple[Path, ...] = ()  # the files it was read from, which no result may overwrite


def load_conversation(path: str | Path) -> Conversation:
    """A conversation JSON file, or a folder holding conversation.json."""
    path = Path(path)
    if path.is_dir():
        path = path / "conversation.json"
    if not path.is_file():
        raise DataError(f"no conversation file at {path} (a JSON file, or a folder with conversation.json)")
    try:
        spec = json.loads(path.read_text(encoding="utf-8"))
        recordings = [path.parent / turn["audio"] for turn in spec["turns"]]
        turns = [
            UserTurn(load_audio(audio, SAMPLE_RATE)[0], turn.get("text", ""), turn.get("barge_in_after_ms"))
            for audio, turn in zip(recordings, spec["turns"], strict=True)
        ]
    except (json.JSONDecodeError, KeyError, TypeError) as error:
        raise DataError(f"{path} is not a conversation file ({error}); see `stepaudio simulate --help`") from None
    if not turns:
        raise DataError(f"{path} has no turns")
    return Conversation(turns, int(spec.get("gap_ms", 700)), (path, *recordings))


@dataclass
class Player:
    """The assistant's speaker: chunks play back to back; a barge-in silences the rest."""

    start: float  # clock time of the recording's start
    rate: int | None = None
    chunks: list[tuple[float, np.ndarray, str]] = field(default_factory=list)  # (seconds into recording, pcm, response)
    ends: float = 0.0  # when the audio queued so far has played out (seconds into the recording)

    def play(self, event: AudioDelta, now: float) -> float:
        self.rate = event.sample_rate
        at = max(now - self.start, self.ends)
        self.chunks.append((at, event.pcm, event.response_id))
        self.ends = at + len(event.pcm) / event.sample_rate
        return at

    def stop(self, now: float) -> None:
        """Cut everything not yet played at `now`."""
        cut = now - self.start
        kept = []
        for at, pcm, response in self.chunks:
            if at < cut:
                kept.append((at, pcm[: int((cut - at) * self.rate)], response))
        self.chunks, self.ends = kept, min(self.ends, cut)

    def track(self, seconds: float, rate: int, response: str | None = None) -> np.ndarray:
        """What was heard, at `rate`, `seconds` long (only `response`'s audio if given)."""
        out = np.zeros(int(seconds * rate) + 1, dtype=np.float32)
        for at, pcm, owner in self.chunks:
            if response is not None and owner != response or not len(pcm):
                continue
            pcm = resample(pcm, self.rate, rate)
            begin = int(at * rate)
            out[begin : begin + len(pcm)] = pcm[: len(out) - begin]
        return out


@dataclass
class Simulation:
    timeline: list[dict]  # every event and user action, with "t" in seconds from the start
    turns: list[dict]  # per user turn: texts, times, latency
    user_track: np.ndarray  # 16 kHz
    player: Player
    seconds: float


async def simulate(session: RealtimeSession, conversation: Conversation, speech_span_of) -> Simulation:
    """Run the conversation against the session in real time. speech_span_of(audio) -> (start, end):
    seconds into the audio where the speech starts and ends (the VAD's view of the recording)."""
    for turn in conversation.turns:
        turn.speech = speech_span_of(turn.audio)
    clock = time.monotonic
    start = clock()
    player = Player(start)
    timeline: list[dict] = []
    turns = [{"user_text": turn.text} for turn in conversation.turns]
    responses: list[dict] = []  # in order of creation: {"id", "turn", "first_audio", "done"}
    current = {"turn": -1, "sent": False}  # the user turn being spoken, and whether all of it was sent

    def mark(kind: str, **fields) -> None:
        timeline.append({"t": round(clock() - start, 4), "type": kind, **fields})

    def response(response_id: str) -> dict | None:
        return next((r for r in responses if r["id"] == response_id), None)

    async def listen_to_session() -> None:
        async for event in session.events():
            now = clock() - start
            record = _describe(event)
            turn = turns[current["turn"]] if current["turn"] >= 0 else {}
            if isinstance(event, AudioDelta):
                record["plays_at"] = round(player.play(event, now + start), 4)
                owner = response(event.response_id)
                if owner is not None and owner["first_audio"] is None:
                    owner["first_audio"] = now
            elif isinstance(event, SpeechStarted) and player.ends > now:
                player.stop(now + start)
                record["player_stopped"] = True
                turn["player_stopped"] = round(now, 4)
            elif isinstance(event, SpeechStopped):
                turn["speech_stopped"] = round(now, 4)
            elif isinstance(event, TranscriptDone):
                turn["transcript"] = event.transcript
            elif isinstance(event, ResponseCreated):
                # a response made before the whole turn was sent answered a false end of turn
                responses.append({"id": event.response_id, "turn": current["turn"] if current["sent"] else None})
                responses[-1].update(first_audio=None, done=None)
            elif isinstance(event, ResponseDone) and (owner := response(event.response_id)) is not None:
                owner.update(done=now, text=event.text, status=event.status)
            timeline.append({"t": round(now, 4), **record})

    listener = asyncio.create_task(listen_to_session())
    chunk = int(CHUNK_SECONDS * SAMPLE_RATE)
    user_track: list[np.ndarray] = []
    sent = 0  # samples sent

    async def send(samples: np.ndarray) -> None:
        nonlocal sent
        for begin in range(0, len(samples), chunk):
            piece = samples[begin : begin + chunk]
            await session.append_audio(piece, SAMPLE_RATE)
            user_track.append(piece)
            sent += len(piece)
            delay = start + sent / SAMPLE_RATE - clock()
            if delay > 0:
                await asyncio.sleep(delay)

    quiet = np.zeros(chunk, dtype=np.float32)

    async def wait_until(ready, timeout: float = ANSWER_TIMEOUT_SECONDS) -> None:
        deadline = clock() + timeout
        while not ready() and clock() < deadline:
            await send(quiet)

    def answer(index: int) -> dict | None:
        return next((r for r in reversed(responses) if r["turn"] == index), None)

    def answer_began(index: int) -> bool:
        reply = answer(index)
        return reply is not None and (reply["first_audio"] is not None or reply["done"] is not None)

    def answer_heard(index: int) -> bool:
        reply = answer(index)
        return reply is not None and reply["done"] is not None and clock() - start >= player.ends

    def silence(ms: int) -> np.ndarray:
        return np.zeros(int(ms / 1000 * SAMPLE_RATE), dtype=np.float32)

    for index, turn in enumerate(conversation.turns):
        if index and turn.barge_in_after_ms is not None:
            await wait_until(functools.partial(answer_began, index - 1))
            await send(silence(turn.barge_in_after_ms))
        elif index:
            await wait_until(functools.partial(answer_heard, index - 1))
            await send(silence(conversation.gap_ms))
        mark("user.turn_started", turn=index + 1, text=turn.text)
        current.update(turn=index, sent=False)
        begin = sent / SAMPLE_RATE
        turns[index].update(speech_start=round(begin + turn.speech[0], 4), speech_end=round(begin + turn.speech[1], 4))
        await send(turn.audio)
        current["sent"] = True
        mark("user.turn_sent", turn=index + 1)
    await wait_until(functools.partial(answer_heard, len(conversation.turns) - 1))
    await send(silence(TAIL_MS))
    await session.close()
    await listener
    seconds = clock() - start
    for index, turn in enumerate(turns):
        reply = answer(index)
        if reply is None:
            continue
        turn.update(response_id=reply["id"], response_text=reply.get("text", ""), status=reply.get("status"))
        if reply["first_audio"] is not None:
            turn["first_audio"] = round(reply["first_audio"], 4)
            turn["latency_ms"] = round((reply["first_audio"] - turn["speech_end"]) * 1000)
            if "speech_stopped" in turn:
                turn["after_turn_end_ms"] = round((reply["first_audio"] - turn["speech_stopped"]) * 1000)
        if "player_stopped" in turn:
            turn["barge_in_stop_ms"] = round((turn["player_stopped"] - turn["speech_start"]) * 1000)
        if "speech_stopped" in turn:  # the latency split: each milestone after the end-of-turn decision
            turn["vad_decision_ms"] = round((turn["speech_stopped"] - turn["speech_end"]) * 1000)
            reached = session.metrics.milestones.get(reply["id"], {})
            turn["after_decision_ms"] = {
                name: round((reached[name] - start - turn["speech_stopped"]) * 1000)
                for name in MILESTONES
                if name in reached
            }
    return Simulation(timeline, turns, np.concatenate(user_track), player, seconds)


def speech_span_by_vad(vad, threshold: float = 0.5):
    """speech_span_of for `simulate`: from the first to the end of the last frame the VAD calls speech."""

    def speech_span(audio: np.ndarray) -> tuple[float, float]:
        speech = np.flatnonzero(vad.probabilities(audio) >= threshold)
        if not len(speech):
            return 0.0, len(audio) / SAMPLE_RATE
        return speech[0] * FRAME_SECONDS, (speech[-1] + 1) * FRAME_SECONDS

    return speech_span


def _describe(event: Event) -> dict:
    record = event.to_dict()
    if isinstance(event, AudioDelta):
        record["pcm"] = round(len(event.pcm) / event.sample_rate, 4)  # seconds
    return record
