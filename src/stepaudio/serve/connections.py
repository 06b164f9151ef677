"""The server's sockets: uvicorn set up with the connection limits of `Limits`.

uvicorn closes a kept-alive connection that goes quiet after a response, but not one that never
finishes its first request: hundreds of stalled sockets would be held for good. The HTTP protocol
here closes a connection that has not sent complete request headers within `header_timeout_seconds`.
"""

from __future__ import annotations

import asyncio


def header_timeout_protocol(seconds: float) -> type[asyncio.Protocol]:
    """uvicorn's HTTP protocol, closing a connection that sends no complete request in `seconds`."""
    from uvicorn.protocols.http.auto import AutoHTTPProtocol

    class HeaderTimeoutProtocol(AutoHTTPProtocol):
        def connection_made(self, transport) -> None:
            super().connection_made(transport)
            self._header_timer = self.loop.call_later(seconds, self._close_if_no_request)

        def connection_lost(self, exc) -> None:
            self._header_timer.cancel()
            super().connection_lost(exc)

        def _close_if_no_request(self) -> None:
            # `cycle` is the request being served, set once its headers are read; an upgraded
            # connection (a WebSocket) has handed the transport to another protocol.
            if self.cycle is None and self.transport.get_protocol() is self and not self.transport.is_closing():
                self.transport.close()

    return HeaderTimeoutProtocol


def server_config(app, host: str, port: int, limits, **options):
    """The uvicorn.Config of `stepaudio serve` (and of the tests' live servers) under `limits`."""
    import uvicorn

    return uvicorn.Config(
        app,
        host=host,
        port=port,
        # the app answers oversized messages itself with an error event; past 4x, the socket closes (1009)
        ws_max_size=4 * limits.max_message_bytes,
        limit_concurrency=limits.max_connections,
        http=header_timeout_protocol(limits.header_timeout_seconds),
        **options,
    )
