"""A small synchronous protocol v1 client for the CLI and scripts."""

from __future__ import annotations

import itertools
import json
import os
from pathlib import Path
from typing import Any

from websockets.exceptions import ConnectionClosed, InvalidURI
from websockets.sync.client import ClientConnection, connect

from domain import errors

CODES: dict[str, type[errors.SalonError]] = {
    cls.code: cls for cls in (errors.Invalid, errors.NotFound, errors.Forbidden, errors.Conflict,
                              errors.RateLimited, errors.Unavailable, errors.Unauthenticated)
}


def find_installation(home: Path) -> tuple[str, str]:
    """(WebSocket URL, admin token) of the Salon running on ``home``, or Unavailable."""
    url = os.environ.get("SALON_URL")
    token = os.environ.get("SALON_TOKEN")
    runfile = home / "run.json"
    if url is None:
        if not runfile.exists():
            raise errors.Unavailable(f"no Salon is running on {home}; start one with `salon up` "
                                     "(or set SALON_URL and SALON_TOKEN)")
        url = str(json.loads(runfile.read_text())["ws_url"])
    if token is None:
        token_file = home / "admin.token"
        if not token_file.exists():
            raise errors.Unauthenticated(f"no token: set SALON_TOKEN (none in {token_file})")
        token = token_file.read_text().strip()
    return url, token


class SalonClient:
    """Connects, says hello, and sends requests one at a time."""

    def __init__(self, url: str, token: str, timeout: float = 30.0) -> None:
        self.timeout = timeout
        try:
            self.ws: ClientConnection = connect(url, open_timeout=timeout, max_size=None)
        except (OSError, InvalidURI) as error:
            raise errors.Unavailable(f"cannot reach Salon at {url}: {error}; "
                                     "is `salon up` running?") from None
        self.ids = itertools.count(1)
        self.request({"type": "hello", "token": token})

    def request(self, frame: dict[str, Any]) -> dict[str, Any]:
        """Send ``frame``; return its result or raise the matching Salon error."""
        frame = {**frame, "id": next(self.ids)}
        try:
            self.ws.send(json.dumps(frame))
            while True:
                reply = json.loads(self.ws.recv(timeout=self.timeout))
                if reply.get("id") == frame["id"] and reply.get("type") in ("ok", "error"):
                    break
        except ConnectionClosed as closed:
            raise errors.Unavailable(f"Salon closed the connection ({closed})") from None
        except TimeoutError:
            raise errors.Unavailable(f"no answer from Salon in {self.timeout:.0f}s") from None
        if reply["type"] == "error":
            raise CODES.get(reply["code"], errors.SalonError)(reply["message"])
        result: dict[str, Any] = reply["result"]
        return result

    def close(self) -> None:
        self.ws.close()

    def __enter__(self) -> SalonClient:
        return self

    def __exit__(self, *_: object) -> None:
        self.close()
