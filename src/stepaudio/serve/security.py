"""Who may talk to the server: the optional API key, the origins of web pages, the size of a request.

Browsers cannot set headers on a WebSocket, so a page sends its key as the subprotocol
`openai-insecure-api-key.<KEY>`, as OpenAI's own browser clients do. Browsers also let any web
site open a WebSocket to 127.0.0.1 (CORS does not cover WebSockets), so the Origin of a real-time
connection is checked here: only same-origin pages, the `--cors` origins and non-browser clients
(no Origin header) get in.
"""

from __future__ import annotations

import json
import secrets
from urllib.parse import urlsplit

from starlette.datastructures import Headers
from starlette.types import ASGIApp, Message, Receive, Scope, Send

KEY_SUBPROTOCOL = "openai-insecure-api-key."


def bearer_token(headers: Headers) -> str | None:
    scheme, _, token = headers.get("authorization", "").partition(" ")
    return token.strip() if scheme.lower() == "bearer" and token.strip() else None


def subprotocol_key(headers: Headers) -> str | None:
    for protocol in headers.get("sec-websocket-protocol", "").split(","):
        protocol = protocol.strip()
        if protocol.startswith(KEY_SUBPROTOCOL):
            return protocol[len(KEY_SUBPROTOCOL) :]
    return None


def key_matches(expected: str | None, given: str | None) -> bool:
    """True when no key is required, or the one given is it (compared in constant time)."""
    if expected is None:
        return True
    return given is not None and secrets.compare_digest(given.encode(), expected.encode())


def origin_allowed(headers: Headers, allowed: tuple[str, ...]) -> bool:
    origin = headers.get("origin")
    if origin is None or origin in allowed or "*" in allowed:
        return True
    return urlsplit(origin).netloc == headers.get("host")


def error_body(message: str, kind: str, code: str) -> dict:
    """The error object of the OpenAI API, which its clients know how to show."""
    return {"error": {"message": message, "type": kind, "code": code, "param": None}}


class BodyLimit:
    """Answer 413 to a request body larger than `max_bytes`, from its Content-Length before reading
    anything, or as soon as a streamed body passes the limit."""

    def __init__(self, app: ASGIApp, max_bytes: int):
        self.app = app
        self.max_bytes = max_bytes

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        declared = Headers(scope=scope).get("content-length")
        if declared is not None and declared.isdigit() and int(declared) > self.max_bytes:
            await self._too_large(send)
            return
        received = 0
        answered = False  # the 413 went out: whatever the app sends after it is dropped
        started = False

        async def counting_receive() -> Message:
            nonlocal received, answered
            message = await receive()
            if message["type"] == "http.request":
                received += len(message.get("body", b""))
                if received > self.max_bytes:
                    if not (answered or started):
                        answered = True
                        await self._too_large(send)
                    return {"type": "http.disconnect"}
            return message

        async def guarded_send(message: Message) -> None:
            nonlocal started
            started = started or message["type"] == "http.response.start"
            if not answered:
                await send(message)

        try:
            await self.app(scope, counting_receive, guarded_send)
        except Exception:
            if not answered:
                raise

    async def _too_large(self, send: Send) -> None:
        message = f"the request body is over the server's limit of {self.max_bytes} bytes: send less"
        body = json.dumps(error_body(message, "invalid_request_error", "request_too_large")).encode()
        headers = [(b"content-type", b"application/json"), (b"content-length", str(len(body)).encode())]
        await send({"type": "http.response.start", "status": 413, "headers": headers})
        await send({"type": "http.response.body", "body": body})
