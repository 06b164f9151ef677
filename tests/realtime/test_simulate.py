"""The real-time replay against fakes: turns answered in order, latency measured, a barge-in heard."""

import asyncio
import json

import numpy as np
import pytest
from realtime_fakes import FakeResponder, ToneSpeaker, fake_engine, silence, speech

from stepaudio.audio import save_audio
from stepaudio.audio.vad import VADParams
from stepaudio.errors import DataError
from stepaudio.realtime.session import RealtimeSession, SessionConfig
from stepaudio.realtime.simulate import Conversation, UserTurn, load_conversation, simulate


def speech_span(audio: np.ndarray) -> tuple[float, float]:
    loud = np.flatnonzero(np.abs(audio) > 0.05)
    return loud[0] / 16_000, (loud[-1] + 1) / 16_000


def test_turns_are_answered_in_order_and_a_barge_in_stops_the_player():
    turn = np.concatenate([silence(0.2), speech(0.5)])
    conversation = Conversation(
        [UserTurn(turn, "first"), UserTurn(turn, "second", barge_in_after_ms=300), UserTurn(turn, "third")], gap_ms=200
    )
    engine = fake_engine(
        responder=FakeResponder(answer="one two three four five six. seven eight nine ten eleven twelve."),
        speaker=ToneSpeaker(seconds_per_word=0.15),
    )

    async def main():
        session = RealtimeSession(engine, SessionConfig(vad=VADParams(start_ms=100, pause_ms=200, end_ms=400)))
        return session, await simulate(session, conversation, speech_span)

    session, result = asyncio.run(asyncio.wait_for(main(), 30))
    first, second, third = result.turns
    assert (first["status"], second["status"], third["status"]) == ("cancelled", "completed", "completed")
    assert all(400 <= turn["latency_ms"] < 1500 for turn in (first, second, third))
    interrupted = [e for e in result.timeline if e["type"] == "response.done" and e["status"] == "cancelled"]
    assert len(interrupted) == 1 and any(e.get("player_stopped") for e in result.timeline)
    assert session.metrics.barge_in_ms and result.player.ends < result.seconds
    assert 200 <= second["barge_in_stop_ms"] < 600  # barge_in_ms of speech, then the player stops
    starts = [e["t"] for e in result.timeline if e["type"] == "user.turn_started"]
    assert starts == sorted(starts) and len(starts) == 3


def test_conversation_files_load_and_bad_ones_say_why(tmp_path):
    save_audio(tmp_path / "a.flac", speech(0.3), 16_000)
    (tmp_path / "conversation.json").write_text(json.dumps({"turns": [{"audio": "a.flac", "text": "hi"}]}))
    conversation = load_conversation(tmp_path)
    assert conversation.turns[0].text == "hi" and len(conversation.turns[0].audio) == 4800
    (tmp_path / "conversation.json").write_text(json.dumps({"talk": []}))
    with pytest.raises(DataError, match="not a conversation file"):
        load_conversation(tmp_path)
    with pytest.raises(DataError, match="no conversation file"):
        load_conversation(tmp_path / "missing.json")
