"""The real-time WebSocket over the fake session: event mapping, audio rates, typed turns,
barge-in and truncation, and the connection-level limits (key, origin, sessions, idle, length)."""

import numpy as np
import pytest
from fakes import FAKE_ANSWER, FAKE_TRANSCRIPT, serve
from live import RealtimeClient, audio_seconds, closed_with, speak

from conftest import tone
from stepaudio.serve.settings import Limits


def test_a_spoken_turn_maps_every_event():
    with serve() as server, RealtimeClient(server.url) as client:
        created = client.recv()
        assert created["type"] == "session.created" and created["session"]["audio"]["output"]["format"]["rate"] == 24000
        speak(client)
        done = client.until("response.done")
        kinds = [event["type"] for event in client.events]
        expected = [
            "input_audio_buffer.speech_started",
            "input_audio_buffer.speech_stopped",
            "conversation.item.input_audio_transcription.delta",
            "conversation.item.input_audio_transcription.completed",
            "response.created",
            "response.output_text.delta",
            "response.output_audio.delta",
            "response.done",
        ]
        assert [k for k in dict.fromkeys(kinds) if k in expected] == expected  # in order of first appearance
        assert client.of("conversation.item.input_audio_transcription.completed")[0]["transcript"] == FAKE_TRANSCRIPT
        assert "".join(e["delta"] for e in client.of("response.output_text.delta")).strip() == FAKE_ANSWER
        assert done["response"]["status"] == "completed"
        assert audio_seconds(client.events, 24000) == pytest.approx(1.0, abs=0.01)  # 22.05 kHz resampled, none lost
        assert len({e["event_id"] for e in client.events}) == len(client.events)


def test_other_rates_and_voice_via_session_update():
    sessions = []
    with serve(sessions) as server, RealtimeClient(server.url) as client:
        client.recv()
        update = {
            "type": "session.update",
            "session": {
                "instructions": "Be brief.",
                "audio": {
                    "input": {
                        "format": {"type": "audio/pcm", "rate": 48000},
                        "turn_detection": {"silence_duration_ms": 400},
                    },
                    "output": {"format": {"type": "audio/pcm", "rate": 16000}, "voice": "Alice"},
                },
            },
        }
        client.send(update)
        updated = client.until("session.updated")["session"]
        assert updated["voice"] == "Alice" and updated["turn_detection"]["silence_duration_ms"] == 400
        config = sessions[0].config
        assert (config.voice, config.instructions, config.vad.end_ms) == ("Alice", "Be brief.", 400)
        speak(client, rate=48000, loud=0.5, quiet=0.6)
        stopped = client.until("input_audio_buffer.speech_stopped")
        assert 850 <= stopped["audio_end_ms"] <= 1000  # 48 kHz input understood as 48 kHz: 0.5 s + 0.4 s quiet
        client.until("response.done")
        assert audio_seconds(client.events, 16000) == pytest.approx(1.0, abs=0.01)
        client.send({"type": "session.update", "session": {"voice": "Nobody"}})
        assert "unknown voice" in client.until("error")["error"]["message"]
        client.send({"type": "session.update", "session": {"tags": ["快速1"], "audio": {"output": {"speed": 1.25}}}})
        updated = client.until("session.updated")["session"]
        assert updated["tags"] == ["快速1"] and updated["audio"]["output"]["speed"] == updated["speed"] == 1.25
        assert (sessions[0].config.tags, sessions[0].config.speed) == (("快速1",), 1.25)
        client.send({"type": "session.update", "session": {"tags": ["大声"]}})
        assert "unknown style tag" in client.until("error")["error"]["message"]


def test_typed_turn_and_manual_commit():
    with serve() as server, RealtimeClient(server.url) as client:
        client.recv()
        item = {"type": "message", "role": "user", "content": [{"type": "input_text", "text": "Hello?"}]}
        client.send({"type": "conversation.item.create", "item": item})
        assert client.until("conversation.item.added")["item"]["content"][0]["text"] == "Hello?"
        client.send({"type": "response.create"})
        assert client.until("response.done")["response"]["status"] == "completed"
        client.send({"type": "session.update", "session": {"turn_detection": None}})
        assert client.until("session.updated")["session"]["turn_detection"] is None
        client.append(tone(0.3, 24000))
        client.send({"type": "input_audio_buffer.commit"})
        client.until("input_audio_buffer.committed")
        client.until("conversation.item.input_audio_transcription.completed")
        client.until("response.done")
        assert not client.of("input_audio_buffer.speech_started")  # no server VAD now
        client.send({"type": "input_audio_buffer.clear"})
        client.until("input_audio_buffer.cleared")


def test_barge_in_cancels_and_truncate_reaches_the_session():
    sessions = []
    with serve(sessions, answer_seconds=10) as server, RealtimeClient(server.url) as client:
        client.recv()
        speak(client)
        item_id = client.until("response.output_audio.delta")["item_id"]
        client.append(tone(0.3, 24000))  # the user talks over the answer
        assert client.until("response.done")["response"]["status"] == "cancelled"
        assert audio_seconds(client.events, 24000) < 5
        client.send({"type": "conversation.item.truncate", "item_id": item_id, "content_index": 0, "audio_end_ms": 300})
        truncated = client.until("conversation.item.truncated")
        assert truncated["item_id"] == item_id and truncated["audio_end_ms"] == 300
        assert sessions[0].truncated == [(item_id, 300)]
        client.send({"type": "conversation.item.truncate", "item_id": item_id, "audio_end_ms": -1})
        assert client.until("error")["error"]["code"] == "invalid_value"


def test_api_key_on_header_or_subprotocol():
    with serve(api_key="s3cret") as server:
        with RealtimeClient(server.url) as client:
            refused = client.recv()
            assert refused["type"] == "error" and refused["error"]["code"] == "invalid_api_key"
            assert closed_with(client) == 1008
        with RealtimeClient(server.url, additional_headers={"Authorization": "Bearer s3cret"}) as client:
            assert client.recv()["type"] == "session.created"
        with RealtimeClient(server.url, subprotocols=["realtime", "openai-insecure-api-key.s3cret"]) as client:
            assert client.recv()["type"] == "session.created"
            assert client.ws.subprotocol == "realtime"  # the key is never echoed back


def test_pages_of_other_origins_are_refused():
    with serve(cors_origins=("https://app.example",)) as server:
        with RealtimeClient(server.url, origin="https://evil.example") as client:
            assert client.recv()["error"]["code"] == "origin_not_allowed"
            assert closed_with(client) == 1008
        for origin in ("https://app.example", f"http://127.0.0.1:{server.port}"):
            with RealtimeClient(server.url, origin=origin) as client:
                assert client.recv()["type"] == "session.created"


def test_session_limit_is_an_error_and_slots_come_back():
    import httpx

    with serve(limits=Limits(max_sessions=2)) as server:
        first, second = RealtimeClient(server.url), RealtimeClient(server.url)
        assert first.recv()["type"] == second.recv()["type"] == "session.created"
        assert httpx.get(server.url + "/health").json()["sessions"] == 2
        with RealtimeClient(server.url) as third:
            assert third.recv()["error"]["code"] == "session_limit"
            assert closed_with(third) == 1013
        first.close()
        for _ in range(100):
            if httpx.get(server.url + "/health").json()["sessions"] == 1:
                break
        with RealtimeClient(server.url) as fourth:
            assert fourth.recv()["type"] == "session.created"
        second.close()


def test_idle_and_length_limits_close_the_session():
    sessions = []
    with serve(sessions, limits=Limits(idle_timeout_seconds=0.5)) as server, RealtimeClient(server.url) as client:
        client.recv()
        assert client.until("error", timeout=5)["error"]["code"] == "idle_timeout"
        assert closed_with(client) == 1000
    assert sessions[0].closed
    with serve(limits=Limits(max_session_seconds=1.0)) as server, RealtimeClient(server.url) as client:
        client.recv()
        for _ in range(8):  # not idle, just too long
            client.append(np.zeros(2400, np.float32))
            client.ws.ping().wait(1)
        assert client.until("error", timeout=5)["error"]["code"] == "session_expired"
        assert closed_with(client) == 1000
