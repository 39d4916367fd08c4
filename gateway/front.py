"""One port, two HTTP servers: websockets for ``/v1/ws`` and the pages, aiohttp for the API.

Why: websockets' ``process_request`` hook answers only GET requests (its HTTP parser refuses a
request with a body) and returns one whole response, so ``POST /v1/chat/completions`` and a
server-sent event stream cannot go through it. Serving everything from aiohttp would rewrite the
WebSocket connection and every page; a proxy in front would add a hop to every frame of the
fan-out (the gateway's hottest path). Instead each accepted connection starts as a
:class:`RoutedConnection` (websockets' own ``create_connection`` hook) that reads the request
head before websockets sees anything: a request for the OpenAI-compatible API (``/v1/…`` other
than ``/v1/ws``) is handed, bytes read so far included, to an aiohttp request handler on the
same transport; anything else goes on to websockets exactly as before. No byte is copied twice
and WebSocket connections run the unchanged code. A kept-alive connection stays with the server
it was first routed to (API clients send only API requests on theirs).
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from typing import Any

from websockets.asyncio.server import ServerConnection

HEAD_LIMIT = 64 * 1024  # a request head longer than this goes to websockets, which refuses it
HEAD_SECONDS = 10.0  # websockets' handshake timeout starts only once a connection is routed
WS_PATH = "/v1/ws"


def routes_to_api(head: bytes) -> bool:
    """Whether the request whose head (request line onward) is ``head`` is for the API."""
    line = head.split(b"\r\n", 1)[0].decode("latin-1")
    parts = line.split(" ")
    if len(parts) != 3:
        return False
    path = parts[1].split("?", 1)[0]
    return path.startswith("/v1/") and path != WS_PATH


def routed(api: Callable[[], asyncio.Protocol]) -> type[ServerConnection]:
    """A ServerConnection class that hands API requests to ``api()`` (an aiohttp handler)."""

    class RoutedConnection(ServerConnection):
        """Holds back websockets until the request head says where the connection goes."""

        def __init__(self, *args: Any, **kwargs: Any) -> None:
            super().__init__(*args, **kwargs)
            self.head = bytearray()
            self.pending: asyncio.Transport | None = None
            self.routed = False
            self.timer: asyncio.TimerHandle | None = None

        def connection_made(self, transport: asyncio.BaseTransport) -> None:
            # Deferred: websockets starts its handler task here, which an API call must not.
            self.pending = transport  # type: ignore[assignment]
            self.timer = self.loop.call_later(HEAD_SECONDS, transport.abort)  # type: ignore[attr-defined]

        def data_received(self, data: bytes) -> None:
            if self.routed:
                super().data_received(data)
                return
            self.head += data
            if b"\r\n\r\n" not in self.head and len(self.head) < HEAD_LIMIT:
                return
            transport, head = self.pending, bytes(self.head)
            assert transport is not None
            self.routed, self.pending, self.head = True, None, bytearray()
            if self.timer is not None:
                self.timer.cancel()
            if routes_to_api(head):
                handler = api()
                transport.set_protocol(handler)
                handler.connection_made(transport)
                handler.data_received(head)
                return
            super().connection_made(transport)
            super().data_received(head)

        def eof_received(self) -> bool | None:
            if not self.routed:
                return None  # the transport closes itself
            return super().eof_received()

        def connection_lost(self, exc: Exception | None) -> None:
            if self.timer is not None:
                self.timer.cancel()
            if self.routed:
                super().connection_lost(exc)

        def pause_writing(self) -> None:
            if self.routed:
                super().pause_writing()

        def resume_writing(self) -> None:
            if self.routed:
                super().resume_writing()

    return RoutedConnection
