"""The server under bad input and rough clients: every problem is an `error` event (or a close with
a clear code), the server logs no failure, and the session, or the next one, goes on working."""

import base64
import logging
import os
import socket
import threading
import time

import httpx
import numpy as np
import psutil
import pytest
from fakes import FakeListener, FakeSpeaker, FakeVoices, fake_models, serve
from live import LiveServer, RealtimeClient, closed_with, speak

from conftest import tone
from stepaudio.serve.app import create_app
from stepaudio.serve.models import Models
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


@pytest.mark.soak
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


# --- a hostile but ordinary client's findings (#32 items 2-6; item 1 and 3: test_native_crash.py) ---


def real_session_server(**settings) -> LiveServer:
    """The server on the real `RealtimeSession` (over the controller tests' fake engine), which is
    what refuses empty commits, unknown items and audio past the turn cap."""
    from realtime.realtime_fakes import fake_engine
    from stepaudio.realtime.session import RealtimeSession, SessionConfig
    from stepaudio.serve.realtime import RealtimeBackend

    limits = settings.pop("limits", Limits())
    engine = fake_engine()
    backend = RealtimeBackend(
        SessionConfig,
        lambda config: RealtimeSession(engine, config, max_turn_seconds=limits.max_turn_seconds),
        FakeVoices().names,
    )
    models = Models("fake", FakeSpeaker(), FakeListener(), None, backend)
    return LiveServer(create_app(models, ServeSettings(model="fake", limits=limits, **settings)))


def test_2_audio_past_the_turn_cap_is_refused_and_the_session_goes_on(no_server_errors):
    with real_session_server(limits=Limits(max_turn_seconds=2)) as server, RealtimeClient(server.url) as client:
        client.recv()
        client.send({"type": "session.update", "session": {"turn_detection": None}})
        client.until("session.updated")
        client.append(tone(3.0, 24000))  # 30 appends of 100 ms: the last 10 are past the cap
        client.send({"type": "input_audio_buffer.commit"})
        client.until("input_audio_buffer.committed")
        refused = client.of("error")
        assert len(refused) == 10 and {e["error"]["code"] for e in refused} == {"input_audio_buffer_full"}
        assert "commit it or clear it" in refused[0]["error"]["message"]
        client.send({"type": "response.create"})
        assert client.until("response.done")["response"]["status"] == "completed"


def test_4_one_chat_request_cannot_hold_the_model_for_long(mini_chat):
    limits = Limits(max_request_seconds=1, max_queued_requests=1)
    app = create_app(fake_models(chat=mini_chat), ServeSettings(model="fake", limits=limits))
    with LiveServer(app) as server:
        chat = server.url + "/v1/chat/completions"
        turns = [{"role": "user" if i % 2 == 0 else "assistant", "content": "hi"} for i in range(2001)]
        refused = httpx.post(chat, json={"messages": turns}).json()["error"]
        assert refused["param"] == "messages" and "over the limit of 256" in refused["message"]
        story = {"messages": [{"role": "user", "content": "Tell me a very long story."}], "max_tokens": 1024}
        results = []

        def ask() -> None:
            results.append(httpx.post(chat, json={**story, "seed": len(results)}, timeout=60))

        threads = [threading.Thread(target=ask) for _ in range(4)]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join(60)
        served = [r.json() for r in results if r.status_code == 200]
        busy = [r for r in results if r.status_code == 503]
        assert len(served) == 2 and len(busy) == 2  # one answering, one waiting; no room for more
        assert busy[0].json()["error"]["code"] == "server_busy" and busy[0].headers["retry-after"]
        for answer in served:  # cut at 1 s: far from its 1024 tokens
            assert answer["choices"][0]["finish_reason"] == "length"
            assert len(mini_chat.tokenizer.encode(answer["choices"][0]["message"]["content"])) < 512


def http_status_line(port: int, request: bytes) -> bytes:
    with socket.create_connection(("127.0.0.1", port), timeout=10) as raw:
        raw.sendall(request)
        return raw.recv(4096).split(b"\r\n")[0]


def test_5_hosts_and_origins_a_rebinding_page_would_use_are_refused(no_server_errors):
    evil = "evil.example"
    with serve() as server:
        port = server.port
        for host in (evil, f"{evil}:{port}", "127.0.0.1.evil.example"):
            refused = httpx.get(server.url + "/health", headers={"Host": host})
            assert refused.status_code == 400 and refused.json()["error"]["code"] == "host_not_allowed"
        speech = httpx.post(server.url + "/v1/audio/speech", json={"input": "hi"}, headers={"Host": evil})
        assert speech.status_code == 400
        handshake = (
            f"GET /v1/realtime HTTP/1.1\r\nHost: {evil}:{port}\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"
            "Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n\r\n"
        )
        assert http_status_line(port, handshake.encode()).startswith(b"HTTP/1.1 403")
        upload = {"file": ("a.wav", wav_file(tone(0.5, 16000), 16000), "audio/wav")}
        foreign = httpx.post(
            server.url + "/v1/audio/transcriptions", files=upload, headers={"Origin": "http://" + evil}
        )
        assert foreign.status_code == 403 and foreign.json()["error"]["code"] == "origin_not_allowed"
        own = httpx.post(server.url + "/v1/audio/transcriptions", files=upload, headers={"Origin": server.url})
        assert own.status_code == 200
        for host in ("localhost", f"localhost:{port}", f"[::1]:{port}", "LOCALHOST"):
            assert httpx.get(server.url + "/health", headers={"Host": host}).status_code == 200
    with serve(allowed_hosts=("voice.lan",)) as server:
        assert httpx.get(server.url + "/health", headers={"Host": "voice.lan:80"}).status_code == 200
        assert httpx.get(server.url + "/health").status_code == 400  # 127.0.0.1 was not named


def wav_file(samples: np.ndarray, rate: int) -> bytes:
    import io

    import soundfile

    out = io.BytesIO()
    soundfile.write(out, samples, rate, format="WAV")
    return out.getvalue()


def assert_refused(response: httpx.Response, param: str | None, words: str) -> None:
    assert response.status_code == 400, response.text
    error = response.json()["error"]
    assert error["type"] == "invalid_request_error" and error["param"] == param and words in error["message"], error
    assert "0x" not in error["message"]


def test_6_http_values_are_checked_with_their_field(no_server_errors):
    with serve() as server:
        speech, chat = server.url + "/v1/audio/speech", server.url + "/v1/chat/completions"
        hello = [{"role": "user", "content": "hi"}]
        assert_refused(httpx.post(chat, json={"messages": hello, "seed": 2**70}), "seed", "less than")
        assert_refused(httpx.post(chat, json={"messages": hello, "max_tokens": 10**6}), "max_tokens", "limit of 2048")
        raw = {"content-type": "application/json"}
        assert_refused(httpx.post(speech, content=b'{"input": "a\\u0000b"}', headers=raw), "input", "U+0000")
        assert_refused(httpx.post(speech, content=b'{"input": "a\\ud800b"}', headers=raw), "input", "lone surrogate")
        assert_refused(httpx.post(speech, json={"input": "...!!!???"}), "input", "nothing to speak")
        assert_refused(httpx.post(speech, json={"input": "hi", "tags": ["快速1"] * 10_000}), "tags", "at most")
        garbage = {"file": ("a.wav", b"RIFF" + bytes(range(256)) * 4, "audio/wav")}
        corrupt = httpx.post(server.url + "/v1/audio/transcriptions", files=garbage).json()["error"]
        assert "corrupt" in corrupt["message"] and "0x" not in corrupt["message"]
        assert httpx.post(speech, json={"input": "Hello there."}).status_code == 200


def test_6_realtime_values_are_checked_one_event_each(no_server_errors):
    with real_session_server() as server, RealtimeClient(server.url) as client:
        client.recv()
        absurd = [
            ('{"type": "session.update", "session": {"turn_detection": {"silence_duration_ms": Infinity}}}', None),
            ({"turn_detection": {"silence_duration_ms": 1e12}}, "turn_detection.silence_duration_ms"),
            ({"turn_detection": {"start_ms": 1e15}}, "turn_detection.start_ms"),
            ({"tags": ["快速1"] * 10_000}, None),
            ({"audio": {"output": {"format": {"type": "audio/pcm", "rate": 384_000}}}}, "audio.output.format.rate"),
            ({"instructions": "be\x00brief"}, "instructions"),
        ]
        for update, param in absurd:
            client.send(update if isinstance(update, str) else {"type": "session.update", "session": update})
            error = client.until("error")["error"]
            assert error["type"] == "invalid_request_error" and error["param"] == param, (update, error)
        client.send(
            '{"type": "conversation.item.create", "item": {"type": "message", "role": "user", '
            '"content": [{"type": "input_text", "text": "hi \\udc00"}]}}'
        )
        assert "lone surrogate" in client.until("error")["error"]["message"]
        client.send({"type": "session.update", "session": {"turn_detection": None}})
        client.until("session.updated")
        client.send({"type": "input_audio_buffer.commit"})
        client.send({"type": "conversation.item.truncate", "item_id": "item_nope", "audio_end_ms": 10})
        client.send({"type": "session.update", "session": {}})  # a marker: every event before it is answered
        client.until("session.updated")
        answered = [e["type"] for e in client.events[-3:]]
        codes = [e["error"]["code"] for e in client.of("error")[-2:]]
        assert answered == ["error", "error", "session.updated"], answered
        assert codes == ["input_audio_buffer_commit_empty", "item_not_found"]
        client.send(
            {
                "type": "conversation.item.create",
                "item": {"type": "message", "role": "user", "content": [{"type": "input_text", "text": "hi"}]},
            }
        )
        client.send({"type": "response.create"})
        assert client.until("response.done")["response"]["status"] == "completed"


def test_6_stalled_and_surplus_connections_are_closed(no_server_errors):
    limits = Limits(header_timeout_seconds=0.5, max_connections=8)
    with serve(limits=limits) as server:
        stalled = [socket.create_connection(("127.0.0.1", server.port), timeout=5) for _ in range(6)]
        stalled[0].sendall(b"GET /health HTTP/1.1\r\nHost: localhost\r\n")  # headers never finished
        assert httpx.get(server.url + "/health").status_code == 200  # the server still answers meanwhile
        extra = [socket.create_connection(("127.0.0.1", server.port), timeout=5) for _ in range(4)]
        busy = httpx.get(server.url + "/health")
        assert busy.status_code == 503  # 6 + 4 + 1 open: past max_connections
        for connection in stalled + extra:  # each closed by the server (recv: b"") within the timeout
            assert connection.recv(1024) == b""
            connection.close()
        assert httpx.get(server.url + "/health").status_code == 200
