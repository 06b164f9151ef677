"""The server under bad input and rough clients: every problem is an `error` event (or a close with
a clear code), the server logs no failure, and the session, or the next one, goes on working."""

import base64
import logging
import os
import threading
import time

import httpx
import numpy as np
import psutil
import pytest
from fakes import fake_models, serve
from live import LiveServer, RealtimeClient, closed_with, speak

from conftest import tone
from stepaudio.serve.app import create_app
from stepaudio.serve.settings import Limits, ServeSettings


@pytest.fixture
def no_server_errors(caplog):
    caplog.set_level(logging.WARNING)
    yield
    failures = [r for r in caplog.get_records("call") if r.levelno >= logging.ERROR or r.exc_info]
    assert not failures, [r.getMessage() for r in failures]


def b64(data: bytes) -> str:
    return base64.b64encode(data).decode()


BAD_MESSAGES = [
    ("{not json", "invalid_json"),
    ("[" * 9_000, "invalid_json"),  # nested past the recursion limit
    ("[]", "invalid_event"),
    ('"a string"', "invalid_event"),
    ('{"type": 42}', "invalid_event"),
    ({"type": "no.such.event"}, "unknown_event"),
    ({"type": "input_audio_buffer.append"}, "invalid_audio"),
    ({"type": "input_audio_buffer.append", "audio": 12}, "invalid_audio"),
    ({"type": "input_audio_buffer.append", "audio": "@@@@"}, "invalid_audio"),
    ({"type": "input_audio_buffer.append", "audio": b64(b"odd")}, "invalid_audio"),
    ({"type": "session.update", "session": {"input_audio_format": "g711_alaw"}}, "unsupported_format"),
    (
        {"type": "session.update", "session": {"audio": {"input": {"format": {"type": "audio/pcm", "rate": 0}}}}},
        "unsupported_format",
    ),
    ({"type": "session.update", "session": []}, "invalid_value"),
    ({"type": "conversation.item.create", "item": {"role": "user", "content": "x"}}, "invalid_value"),
    ({"type": "conversation.item.truncate"}, "invalid_value"),
    (bytes(range(256)) * 8, "binary_message"),
    ("x" * 20_000, "message_too_large"),
    ({"type": "input_audio_buffer.append", "audio": b64(bytes(16_000))}, "message_too_large"),
]


def test_bad_messages_get_error_events_and_the_session_goes_on(no_server_errors):
    with serve(limits=Limits(max_message_bytes=10_000)) as server, RealtimeClient(server.url) as client:
        client.recv()
        for message, code in BAD_MESSAGES:
            client.send(message)
            error = client.until("error")["error"]
            assert error["code"] == code, (message if len(message) < 100 else message[:100], error)
            assert error["message"]
        client.send({"type": "no.such.event", "event_id": "mine_1"})
        assert client.until("error")["error"]["event_id"] == "mine_1"
        speak(client)
        assert client.until("response.done")["response"]["status"] == "completed"


def test_frames_past_the_socket_limit_close_only_that_connection(no_server_errors):
    models = fake_models()
    app = create_app(models, ServeSettings(model="fake", limits=Limits(max_message_bytes=10_000)))
    with LiveServer(app) as server:  # the socket's limit: 4x the message limit
        with RealtimeClient(server.url) as client:
            client.recv()
            client.send("x" * 100_000)
            assert closed_with(client) == 1009  # message too big
        with RealtimeClient(server.url) as client:
            assert client.recv()["type"] == "session.created"
        assert httpx.get(server.url + "/health").json()["status"] == "ok"


def test_abrupt_disconnect_mid_response_closes_the_session(no_server_errors):
    sessions = []
    with serve(sessions, answer_seconds=10) as server:
        client = RealtimeClient(server.url)
        client.recv()
        speak(client)
        client.until("response.output_audio.delta")
        client.ws.socket.close()  # no close frame: the network went away
        deadline = time.monotonic() + 5
        while not sessions[0].closed and time.monotonic() < deadline:
            time.sleep(0.05)
        assert sessions[0].closed and sessions[0].response.done()
        assert httpx.get(server.url + "/health").json()["sessions"] == 0


def test_cancel_storm(no_server_errors):
    with serve(answer_seconds=2) as server, RealtimeClient(server.url) as client:
        client.recv()
        for i in range(300):
            client.send({"type": "response.create" if i % 3 else "response.cancel"})
        client.send({"type": "session.update", "session": {}})  # a marker: every event before it is handled
        client.until("session.updated", timeout=30)
        while len(client.of("response.done")) < len(client.of("response.created")):
            client.until("response.done", timeout=10)  # the last response runs to its end
        created = [e["response"]["id"] for e in client.of("response.created")]
        finished = [e["response"]["id"] for e in client.of("response.done")]
        assert sorted(created) == sorted(finished) and len(set(created)) == len(created) >= 100
        assert {e["response"]["status"] for e in client.of("response.done")} == {"cancelled", "completed"}
        assert {e["error"]["code"] for e in client.of("error")} <= {"conversation_already_has_active_response"}
        speak(client)
        assert client.until("response.done")["response"]["status"] == "completed"


def run_scripted_sessions(count: int, seconds: float, limits: Limits) -> list[int]:
    """`count` clients that talk turn after turn for `seconds`; returns the turns each completed."""
    turns = [0] * count
    failures = []
    with serve(answer_seconds=0.5, limits=limits) as server:
        process = psutil.Process(os.getpid())

        def talk(index: int) -> None:
            try:
                with RealtimeClient(server.url) as client:
                    client.recv()
                    deadline = time.monotonic() + seconds
                    while time.monotonic() < deadline:
                        speak(client, loud=0.3, quiet=0.9)
                        done = client.until("response.done", timeout=20)
                        assert done["response"]["status"] == "completed"
                        turns[index] += 1
                        client.events.clear()  # the clients share this process: only the server's memory may grow
            except Exception as error:  # reported below, with the session it happened in
                failures.append((index, repr(error)))

        threads = [threading.Thread(target=talk, args=(i,)) for i in range(count)]
        memory_before = process.memory_info().rss
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join(seconds + 60)
        growth = (process.memory_info().rss - memory_before) / 2**20
        assert not failures, failures
        assert httpx.get(server.url + "/health").json()["sessions"] == 0
        assert growth < 200, f"memory grew {growth:.0f} MiB"
    return turns


def test_concurrent_scripted_sessions(no_server_errors):
    turns = run_scripted_sessions(count=8, seconds=3, limits=Limits(max_sessions=8))
    assert min(turns) >= 2


@pytest.mark.slow
def test_twenty_sessions_for_two_minutes(no_server_errors):
    turns = run_scripted_sessions(count=20, seconds=120, limits=Limits(max_sessions=20))
    assert min(turns) >= 40


def test_speech_clients_that_leave_early_and_crowds(no_server_errors):
    with serve() as server:
        with httpx.stream(
            "POST", server.url + "/v1/audio/speech", json={"input": "x" * 2000, "response_format": "pcm"}
        ) as r:
            assert r.status_code == 200
            next(r.iter_bytes())  # then hang up mid-stream

        def request(results: list, index: int) -> None:
            body = {"input": f"Sentence number {index}.", "response_format": "pcm" if index % 2 else "wav"}
            results.append(httpx.post(server.url + "/v1/audio/speech", json=body, timeout=30).status_code)

        results: list[int] = []
        threads = [threading.Thread(target=request, args=(results, i)) for i in range(12)]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join(60)
        assert results == [200] * 12
        audio = np.concatenate([tone(0.5, 24000)])
        with RealtimeClient(server.url) as client:
            client.recv()
            client.append(audio)
            client.until("input_audio_buffer.speech_started")
