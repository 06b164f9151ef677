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
    """No Origin (not a browser), the page's own origin, or one of the `--cors` origins."""
    origin = headers.get("origin")
    if origin is None or origin in allowed or "*" in allowed:
        return True
    return urlsplit(origin).netloc == headers.get("host")


def host_allowed(headers: Headers, allowed: tuple[str, ...]) -> bool:
    """The Host header names one of the `--allowed-hosts` (any port). A page on a name its owner
    points at 127.0.0.1 (DNS rebinding) is same-origin with us by its Host, so the Origin check alone
    lets it in; the name it must use is refused here."""
    if "*" in allowed:
        return True
    name = urlsplit("//" + headers.get("host", "")).hostname  # lower case, IPv6 brackets and port gone
    return name is not None and name in {host.lower().strip("[]") for host in allowed}


def error_body(message: str, kind: str, code: str, param: str | None = None) -> dict:
    """The error object of the OpenAI API, which its clients know how to show."""
    return {"error": {"message": message, "type": kind, "code": code, "param": param}}


class RequestGuard:
    """Refuse, before any route runs, a request whose Host is not allowed (HTTP 400; a WebSocket
    handshake gets 403), and an HTTP request from a web page on a foreign origin (403): CORS only
    hides the answer from such a page, the request itself would still be served."""

    def __init__(self, app: ASGIApp, allowed_hosts: tuple[str, ...], cors_origins: tuple[str, ...]):
        self.app = app
        self.allowed_hosts = allowed_hosts
        self.cors_origins = cors_origins

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] not in ("http", "websocket"):
            await self.app(scope, receive, send)
            return
        headers = Headers(scope=scope)
        if not host_allowed(headers, self.allowed_hosts):
            host = headers.get("host", "")[:100]
            message = f"host {host!r} is not served here; start the server with --allowed-hosts NAME to serve it"
            await _refuse(scope, send, 400, message, "host_not_allowed")
        elif scope["type"] == "http" and not origin_allowed(headers, self.cors_origins):
            message = "pages on this origin may not call the API; start the server with --cors ORIGIN"
            await _refuse(scope, send, 403, message, "origin_not_allowed")
        else:
            await self.app(scope, receive, send)


async def _refuse(scope: Scope, send: Send, status: int, message: str, code: str) -> None:
    if scope["type"] == "websocket":  # closing before accepting: the client's handshake gets 403
        await send({"type": "websocket.close", "code": 1008})
        return
    await _send_json(send, status, error_body(message, "invalid_request_error", code))


async def _send_json(send: Send, status: int, body: dict) -> None:
    data = json.dumps(body).encode()
    headers = [(b"content-type", b"application/json"), (b"content-length", str(len(data)).encode())]
    await send({"type": "http.response.start", "status": status, "headers": headers})
    await send({"type": "http.response.body", "body": data})


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
        await _send_json(send, 413, error_body(message, "invalid_request_error", "request_too_large"))
