"""The gateway server: protocol v1 at ``/v1/ws``, the web page at ``/``, health at ``/healthz``,
Prometheus metrics at ``/metrics``, the admin pages (audit, projections, jobs) under ``/admin``,
and the OpenAI-compatible API under ``/v1/`` (``gateway/openai_api.py``, routed to aiohttp on
the same port by ``gateway/front.py``)."""

from __future__ import annotations

import asyncio
import logging
from http import HTTPStatus
from importlib import resources

from websockets.asyncio.server import Server, ServerConnection, serve
from websockets.datastructures import Headers
from websockets.http11 import Request, Response

from gateway.auth import Accounts
from gateway.connection import Connection, Registry
from gateway.feed import RoomFeed
from gateway.front import routed
from gateway.openai_api import OpenAIApi
from gateway.services import Services
from infra.settings import Settings
from infra.store import EventStore
from projections.http import AdminPages

log = logging.getLogger(__name__)
WS_PATH = "/v1/ws"


def page() -> str:
    """The web client."""
    return resources.files("gateway").joinpath("static/index.html").read_text(encoding="utf-8")


class Gateway:
    """Serves WebSocket clients of one Salon installation."""

    def __init__(self, settings: Settings, store: EventStore, accounts: Accounts) -> None:
        assert settings.redis_url, "the gateway needs a resolved Redis URL"
        self.settings = settings
        self.store = store
        self.accounts = accounts
        self.feed = RoomFeed(settings.redis_url)
        self.server: Server | None = None
        self.html = page()
        self.admin = AdminPages(settings, store)
        self.connections = Registry()
        self.services = Services(settings, store, accounts, self.feed, self.connections)
        self.api = OpenAIApi(self.services)

    async def start(self, host: str, port: int) -> int:
        """Start listening; returns the bound port."""
        await self.feed.start(self._control)
        api = await self.api.start()
        self.server = await serve(self._connection, host, port,
                                  process_request=self._process,
                                  create_connection=routed(api),
                                  max_size=self.settings.max_frame_bytes,
                                  compression=None, ping_interval=20, ping_timeout=60)
        return int(self.server.sockets[0].getsockname()[1])

    async def _control(self, kind: str, value: str) -> None:
        if kind == "revoked":  # some gateway revoked this user's tokens: close ours too
            await self.connections.close_user(value)

    async def _process(self, connection: ServerConnection, request: Request) -> Response | None:
        path, _, query = request.path.partition("?")
        if path == "/metrics" or path.startswith("/admin"):
            # The read models are in PostgreSQL: answer from a thread, not the event loop.
            authorization = request.headers.get("Authorization", "")
            bearer = authorization[7:].strip() if authorization.lower().startswith("bearer ") \
                else ""
            answer = await asyncio.to_thread(self.admin.respond, path, query, bearer)
            if answer is not None:
                status, kind, body = answer
                headers = Headers([("Content-Type", kind), ("Content-Length", str(len(body))),
                                   ("Cache-Control", "no-store")])
                return Response(status, HTTPStatus(status).phrase, headers, body)
        return self._http(connection, request)

    def _http(self, connection: ServerConnection, request: Request) -> Response | None:
        path = request.path.split("?", 1)[0]
        if path == WS_PATH:
            return None
        if path in ("/", "/index.html"):
            response = connection.respond(HTTPStatus.OK, self.html)
            del response.headers["Content-Type"]
            response.headers["Content-Type"] = "text/html; charset=utf-8"
            return response
        if path == "/healthz":
            return connection.respond(HTTPStatus.OK, "ok\n")
        return connection.respond(HTTPStatus.NOT_FOUND, f"nothing at {path}; "
                                  f"the WebSocket is at {WS_PATH}\n")

    async def _connection(self, ws: ServerConnection) -> None:
        await Connection(ws, self.services).run()

    async def stop(self) -> None:
        """Close every connection and stop listening."""
        if self.server is not None:
            self.server.close()
            try:
                # Peers that never answer the closing handshake must not hold up a shutdown.
                await asyncio.wait_for(self.server.wait_closed(), timeout=5)
            except TimeoutError:
                log.warning("some WebSocket peers did not close in time; stopping anyway")
        await self.api.stop()
        await self.feed.stop()
        await asyncio.to_thread(self.admin.close)

