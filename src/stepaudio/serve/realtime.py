"""`GET /v1/realtime`: one WebSocket, one `RealtimeSession`, OpenAI Realtime events both ways.

Three tasks per connection: the receiver turns client events into session calls, the sender turns
the session's typed events into server events, the watchdog ends the session at its time limit.
Whichever ends first (client gone, limit reached, session closed) ends the others, and the session
is closed so its model work stops. Every bad input is answered with an `error` event and the
connection keeps going; only the limits (and a failing session) close it.
"""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import logging
import uuid
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from starlette.websockets import WebSocket, WebSocketState

from stepaudio.errors import RequestError, StepAudioError
from stepaudio.serve import protocol
from stepaudio.serve.protocol import AudioFormat, StreamResampler
from stepaudio.serve.security import bearer_token, key_matches, origin_allowed, subprotocol_key
from stepaudio.serve.settings import ServeSettings

log = logging.getLogger("stepaudio.serve")

CLOSE_NORMAL, CLOSE_POLICY, CLOSE_ERROR, CLOSE_TRY_AGAIN = 1000, 1008, 1011, 1013
CLOSE_TIMEOUT_S = 5.0  # how long a closing session may take to stop its work


@dataclass
class RealtimeBackend:
    """Where sessions come from: the default `SessionConfig`, a factory, and the voice names a
    `session.update` may choose from. The real one wraps the shared `ChatEngine`; tests give fakes."""

    new_config: Callable[[], Any]
    open_session: Callable[[Any], Any]
    voices: Callable[[], list[str]]


class SessionSlots:
    """The count of open real-time sessions against `--max-sessions` (one event loop: no lock)."""

    def __init__(self, limit: int):
        self.limit = limit
        self.active = 0

    def acquire(self) -> bool:
        if self.active >= self.limit:
            return False
        self.active += 1
        return True

    def release(self) -> None:
        self.active -= 1


async def serve_realtime(
    websocket: WebSocket, backend: RealtimeBackend, settings: ServeSettings, slots: SessionSlots
) -> None:
    offered = [p.strip() for p in websocket.headers.get("sec-websocket-protocol", "").split(",") if p.strip()]
    # A browser fails the handshake unless one of its subprotocols is echoed; never echo the key.
    chosen = next((p for p in offered if not p.startswith("openai-insecure-api-key.")), None)
    await websocket.accept(subprotocol=chosen)
    refusal = None
    if not origin_allowed(websocket.headers, settings.cors_origins):
        refusal = ("pages on this origin may not connect; start the server with --cors ORIGIN", "origin_not_allowed")
    elif not key_matches(settings.api_key, bearer_token(websocket.headers) or subprotocol_key(websocket.headers)):
        refusal = ("missing or wrong API key: send `Authorization: Bearer KEY`", "invalid_api_key")
    elif not slots.acquire():
        refusal = (f"the server holds its limit of {slots.limit} sessions; try again later", "session_limit")
    if refusal:
        with contextlib.suppress(Exception):  # the client may already be gone
            await websocket.send_json(protocol.error_event(*refusal))
            await websocket.close(CLOSE_TRY_AGAIN if refusal[1] == "session_limit" else CLOSE_POLICY)
        return
    try:
        await RealtimeConnection(websocket, backend, settings).run()
    finally:
        slots.release()


class RealtimeConnection:
    def __init__(self, websocket: WebSocket, backend: RealtimeBackend, settings: ServeSettings):
        self.websocket = websocket
        self.settings = settings
        self.limits = settings.limits
        self.config = backend.new_config()
        self.backend = backend
        self.audio = AudioFormat()
        self.session_id = f"sess_{uuid.uuid4().hex[:20]}"
        self.pending_text: list[str] = []  # typed user messages waiting for response.create
        self._event_ids = itertools.count()
        self._send_lock = asyncio.Lock()
        self._outputs: dict[str, tuple[StreamResampler, str]] = {}  # response id -> (its resampler, item id)

    async def run(self) -> None:
        try:
            session = self.backend.open_session(self.config)
        except StepAudioError as error:
            await self.send(protocol.error_event(str(error), "session_failed", kind="server_error"))
            await self._close(CLOSE_ERROR)
            return
        await self.send({"type": "session.created", "session": self._session_object()})
        tasks = [
            asyncio.create_task(self._receive(session), name="receive"),
            asyncio.create_task(self._forward(session), name="forward"),
            asyncio.create_task(self._expire(), name="expire"),
        ]
        try:
            done, _ = await asyncio.wait(tasks, return_when=asyncio.FIRST_COMPLETED)
            for task in done:
                if task.exception() is not None:
                    log.error(
                        "real-time session %s: %s failed", self.session_id, task.get_name(), exc_info=task.exception()
                    )
        finally:
            for task in tasks:
                task.cancel()
            await asyncio.gather(*tasks, return_exceptions=True)
            with contextlib.suppress(Exception):
                await asyncio.wait_for(session.close(), CLOSE_TIMEOUT_S)
            await self._close(CLOSE_NORMAL)

    # --- client -> session ----------------------------------------------------------------------

    async def _receive(self, session) -> None:
        while True:
            try:
                message = await asyncio.wait_for(self.websocket.receive(), self.limits.idle_timeout_seconds)
            except asyncio.TimeoutError:
                idle = self.limits.idle_timeout_seconds
                await self.send(protocol.error_event(f"no message for {idle:g} s: closing the session", "idle_timeout"))
                return
            if message["type"] == "websocket.disconnect":
                return
            text = message.get("text")
            if text is None:
                await self.send(
                    protocol.error_event("binary messages are not supported: send JSON text events", "binary_message")
                )
                continue
            if len(text) > self.limits.max_message_bytes:
                limit = self.limits.max_message_bytes
                await self.send(
                    protocol.error_event(
                        f"the message is {len(text)} bytes, over the limit of {limit}: "
                        "send audio in smaller appends (100 ms each is plenty)",
                        "message_too_large",
                    )
                )
                continue
            await self._handle(session, text)

    async def _handle(self, session, text: str) -> None:
        event: dict = {}
        try:
            event = protocol.parse_client_event(text)
            handler = self._handlers().get(event["type"])
            if handler is None:
                known = ", ".join(sorted(self._handlers()))
                raise RequestError(
                    f"unknown event type {event['type']!r}; this server handles {known}", "unknown_event"
                )
            await handler(session, event)
        except RequestError as error:
            await self.send(
                protocol.error_event(str(error), error.code, client_event_id=event.get("event_id"), param=error.param)
            )
        except StepAudioError as error:  # bad audio, an unknown voice, ...: the session goes on
            await self.send(protocol.error_event(str(error), "invalid_value", client_event_id=event.get("event_id")))
        except Exception:
            log.exception("real-time event %s failed", event.get("type"))
            await self.send(
                protocol.error_event(
                    f"the server failed on {event.get('type')}",
                    "server_error",
                    kind="server_error",
                    client_event_id=event.get("event_id"),
                )
            )

    def _handlers(self) -> dict[str, Callable]:
        return {
            "session.update": self._session_update,
            "input_audio_buffer.append": self._append,
            "input_audio_buffer.commit": self._commit,
            "input_audio_buffer.clear": self._clear,
            "conversation.item.create": self._item_create,
            "conversation.item.truncate": self._truncate,
            "response.create": self._response_create,
            "response.cancel": self._response_cancel,
        }

    async def _session_update(self, session, event: dict) -> None:
        config, self.audio = protocol.apply_session_update(
            event.get("session"), self.config, self.audio, self.limits.max_text_chars
        )
        if config.voice is not None and config.voice not in (voices := self.backend.voices()):
            raise RequestError(f"unknown voice {config.voice!r}; the voices are: {', '.join(voices)}")
        self.config = config
        session.update(config)
        await self.send({"type": "session.updated", "session": self._session_object()})

    async def _append(self, session, event: dict) -> None:
        samples = protocol.decode_pcm16(event.get("audio"))
        if samples.size:
            await session.append_audio(samples, self.audio.input_rate)

    async def _commit(self, session, event: dict) -> None:
        await session.commit()
        await self.send({"type": "input_audio_buffer.committed"})

    async def _clear(self, session, event: dict) -> None:
        await session.clear()
        await self.send({"type": "input_audio_buffer.cleared"})

    async def _item_create(self, session, event: dict) -> None:
        text = protocol.user_text(event.get("item"), self.limits.max_text_chars)
        self.pending_text.append(text)
        item = {"id": f"item_{uuid.uuid4().hex[:20]}", "type": "message", "role": "user"}
        item["content"] = [{"type": "input_text", "text": text}]
        await self.send({"type": "conversation.item.added", "item": item})

    async def _truncate(self, session, event: dict) -> None:
        item_id, end_ms = event.get("item_id"), event.get("audio_end_ms")
        if not isinstance(item_id, str) or not isinstance(end_ms, int) or isinstance(end_ms, bool) or end_ms < 0:
            raise RequestError("truncate needs `item_id` (string) and `audio_end_ms` (whole ms >= 0)")
        await session.truncate(item_id, end_ms)
        await self.send(
            {"type": "conversation.item.truncated", "item_id": item_id, "content_index": 0, "audio_end_ms": end_ms}
        )

    async def _response_create(self, session, event: dict) -> None:
        text = "\n".join(self.pending_text) or None
        self.pending_text.clear()
        await session.create_response(text)

    async def _response_cancel(self, session, event: dict) -> None:
        await session.cancel_response()

    # --- session -> client ----------------------------------------------------------------------

    async def _forward(self, session) -> None:
        try:
            async for event in session.events():
                if event.type == "response.output_audio.delta":
                    resampler = self._output(event)[0]
                    await self._send_audio(event.response_id, event.item_id, resampler.step(event.pcm))
                    continue
                if event.type == "response.done" and event.response_id in self._outputs:
                    resampler, item_id = self._outputs.pop(event.response_id)
                    await self._send_audio(event.response_id, item_id, resampler.flush())
                await self.send(protocol.server_event(event))
        except Exception:
            log.exception("real-time session %s failed", self.session_id)
            await self.send(
                protocol.error_event("the session failed; reconnect", "session_failed", kind="server_error")
            )

    def _output(self, event) -> tuple[StreamResampler, str]:
        """The resampler of a response's audio, made at its first delta (from the model's rate to the
        rate the client asked for)."""
        if event.response_id not in self._outputs:
            resampler = StreamResampler(event.sample_rate, self.audio.output_rate)
            self._outputs[event.response_id] = (resampler, event.item_id)
        return self._outputs[event.response_id]

    async def _send_audio(self, response_id: str, item_id: str, samples) -> None:
        if len(samples):
            await self.send(
                {
                    "type": "response.output_audio.delta",
                    "response_id": response_id,
                    "item_id": item_id,
                    "output_index": 0,
                    "content_index": 0,
                    "delta": protocol.encode_pcm16(samples),
                }
            )

    async def _expire(self) -> None:
        await asyncio.sleep(self.limits.max_session_seconds)
        limit = self.limits.max_session_seconds
        await self.send(protocol.error_event(f"the session reached its limit of {limit:g} s", "session_expired"))

    async def send(self, event: dict) -> None:
        event = {"event_id": f"event_{next(self._event_ids)}", **event}
        async with self._send_lock:
            if self.websocket.application_state == WebSocketState.CONNECTED:
                with contextlib.suppress(Exception):  # the client may be gone; the receiver notices
                    await self.websocket.send_json(event)

    async def _close(self, code: int) -> None:
        async with self._send_lock:
            if self.websocket.application_state == WebSocketState.CONNECTED:
                with contextlib.suppress(Exception):
                    await self.websocket.close(code)

    def _session_object(self) -> dict:
        return protocol.session_object(self.session_id, self.settings.model, self.config, self.audio)
