"""SDK clients kept per event loop: building one costs tens of milliseconds (TLS setup).

A client's connection pool belongs to the loop it first ran on, so the cache is keyed by the
running loop (and forgets a loop once it is collected). Keys enter the cache key only hashed.
"""

from __future__ import annotations

import asyncio
import hashlib
import weakref
from collections.abc import Callable, Hashable
from typing import Any, TypeVar

T = TypeVar("T")
_cache: weakref.WeakKeyDictionary[asyncio.AbstractEventLoop, dict[Hashable, Any]] = \
    weakref.WeakKeyDictionary()


def fingerprint(secret: str | None) -> str:
    """A stand-in for ``secret`` in cache keys."""
    return hashlib.sha256((secret or "").encode()).hexdigest()[:16]


def cached(key: Hashable, build: Callable[[], T]) -> T:
    """The client for ``key`` on the running loop, built on first use."""
    try:
        loop = asyncio.get_running_loop()
    except RuntimeError:
        return build()
    for stale in [other for other in _cache if other.is_closed()]:
        del _cache[stale]        # a client may hold its loop alive: drop closed loops' clients
    clients = _cache.setdefault(loop, {})
    if key not in clients:
        clients[key] = build()
    client: T = clients[key]
    return client
