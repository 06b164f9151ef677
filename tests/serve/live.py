"""A live server for clients that need a real socket (websockets, the openai package, a browser),
and a small synchronous real-time client with timeouts, so a test that waits in vain fails
instead of hanging."""

from __future__ import annotations

import base64
import json
import socket
import threading
import time

import numpy as np
import pytest

from conftest import tone


class LiveServer:
    """The app under uvicorn on a free loopback port, in a thread: for clients that need a real
    socket (the openai package, a browser)."""

    def __init__(self, app):
        """The socket limits are the app's settings', as `stepaudio serve` sets them."""
        import uvicorn

        from stepaudio.serve.connections import server_config

        with socket.socket() as probe:
            probe.bind(("127.0.0.1", 0))
            self.port = probe.getsockname()[1]
        limits = app.state.settings.limits
        # log_config=None: uvicorn's records reach the root logger, so tests (caplog) see its errors
        self.server = uvicorn.Server(server_config(app, "127.0.0.1", self.port, limits, log_config=None))
        self.thread = threading.Thread(target=self.server.run, daemon=True)

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def __enter__(self) -> LiveServer:
        self.thread.start()
        deadline = time.monotonic() + 20
        while not self.server.started:
            if time.monotonic() > deadline or not self.thread.is_alive():
                raise RuntimeError("the test server did not start")
            time.sleep(0.05)
        return self

    def __exit__(self, *exc) -> None:
        self.server.should_exit = True
        self.thread.join(timeout=10)


class RealtimeClient:
    def __init__(self, url: str, **options):
        from websockets.sync.client import connect

        self.ws = connect(url.replace("http", "ws", 1) + "/v1/realtime", open_timeout=10, max_size=None, **options)
        self.events: list[dict] = []

    def send(self, event: dict | str | bytes) -> None:
        self.ws.send(json.dumps(event) if isinstance(event, dict) else event)

    def append(self, samples: np.ndarray, chunk: int = 2400) -> None:
        """float32 samples as pcm16 appends of `chunk` samples (100 ms at 24 kHz)."""
        pcm = np.clip(np.round(samples * 32767), -32768, 32767).astype("<i2")
        for start in range(0, len(pcm), chunk):
            audio = base64.b64encode(pcm[start : start + chunk].tobytes()).decode()
            self.send({"type": "input_audio_buffer.append", "audio": audio})

    def recv(self, timeout: float = 10.0) -> dict:
        event = json.loads(self.ws.recv(timeout=timeout))
        self.events.append(event)
        return event

    def until(self, kind: str, timeout: float = 10.0) -> dict:
        """Read events until one of type `kind` (returned); all are kept in `events`."""
        deadline = time.monotonic() + timeout
        while True:
            event = self.recv(max(0.01, deadline - time.monotonic()))
            if event["type"] == kind:
                return event

    def of(self, kind: str) -> list[dict]:
        return [event for event in self.events if event["type"] == kind]

    def close(self) -> None:
        self.ws.close()

    def __enter__(self) -> RealtimeClient:
        return self

    def __exit__(self, *exc) -> None:
        self.close()


def speak(client: RealtimeClient, rate: int = 24000, loud: float = 0.5, quiet: float = 1.0) -> None:
    """A loud tone (the fake session hears it as speech), then quiet, in 100-ms appends."""
    client.append(np.concatenate([tone(loud, rate), np.zeros(int(quiet * rate), np.float32)]), chunk=rate // 10)


def audio_seconds(events: list[dict], rate: int) -> float:
    deltas = [e["delta"] for e in events if e["type"] == "response.output_audio.delta"]
    return sum(len(base64.b64decode(delta)) // 2 for delta in deltas) / rate


def closed_with(client: RealtimeClient) -> int:
    """Read until the server closes the connection; its close code."""
    from websockets.exceptions import ConnectionClosed

    with pytest.raises(ConnectionClosed) as closed:
        while True:
            client.recv(timeout=5)
    return closed.value.rcvd.code
