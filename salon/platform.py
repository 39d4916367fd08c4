"""The composition root: start the servers, Ray and the gateway, and wire them together."""

from __future__ import annotations

import asyncio
import json
import logging
import os
import threading
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import ray

from actors import directory
from domain.errors import NotFound
from gateway.auth import Accounts
from gateway.server import Gateway
from infra.memories import SCHEMA_NAME
from infra.memories import VIEW as MEMORIES
from infra.servers import EmbeddedPostgres, EmbeddedValkey
from infra.settings import Settings
from infra.store import EventStore

log = logging.getLogger(__name__)
ADMIN = "admin"
DEMO_ROOM = "lobby"
DEMO_AGENTS = [
    {"name": "ada", "role": "a curious host who loves questions",
     "opening_line": "Hello, I'm Ada. Mention @ada and I'll answer.",
     "script": ["Ada here. You said: \u201c{text}\u201d \u2014 tell me more, {author}?",
                "Interesting, {author}. I'm a scripted demo agent; connect a real model later."]},
    {"name": "bo", "role": "a laconic sceptic",
     "opening_line": "Bo here. Mention @bo if you must.",
     "script": ["Bo: noted, {author}. \u201c{text}\u201d", "Bo: still scripted, still listening."]},
]


@dataclass
class Running:
    """What a started platform exposes."""

    settings: Settings
    port: int
    admin_token: str
    extras: dict[str, Any] = field(default_factory=dict)

    @property
    def ws_url(self) -> str:
        return f"ws://{self.settings.host}:{self.port}/v1/ws"

    @property
    def http_url(self) -> str:
        return f"http://{self.settings.host}:{self.port}/"

    @property
    def login_url(self) -> str:
        return f"{self.http_url}?token={self.admin_token}"


LEGACY_MEMORY_TABLES = ("salon_memories", "salon_memory_facts", "salon_memory_members",
                        "salon_memory_rooms", "salon_memory_streams", "salon_memory_tracking")


class Platform:
    """Everything one installation runs, started and stopped in order."""

    def __init__(self, settings: Settings | None = None) -> None:
        self.settings = settings or Settings()
        self.home = self.settings.home.resolve()
        self.postgres: EmbeddedPostgres | None = None
        self.valkey: EmbeddedValkey | None = None
        self.store: EventStore | None = None
        self.gateway: Gateway | None = None
        self.loop: asyncio.AbstractEventLoop | None = None
        self.thread: threading.Thread | None = None
        self.started_ray = False
        self.running: Running | None = None
        self.projections: Any = None
        self.stop_reminders: Callable[[], None] | None = None

    def start(self) -> Running:
        """Start every part; returns where the gateway listens and the admin token."""
        self.home.mkdir(parents=True, exist_ok=True)
        database_url = self.settings.database_url
        if not database_url:
            self.postgres = EmbeddedPostgres(self.home / "pg")
            database_url = self.postgres.start()
        redis_url = self.settings.redis_url
        if not redis_url:
            self.valkey = EmbeddedValkey(self.home / "valkey")
            redis_url = self.valkey.start()
        settings = self.settings.resolved(database_url, redis_url)
        # Every process of this installation (and any started from it) finds the same key.
        os.environ["SALON_MASTER_KEY_FILE"] = str(settings.master_key_path())
        self.store = EventStore(database_url, settings.snapshot_interval,
                                master_key=settings.master_key_path())
        self._start_ray(settings)
        self._start_memory(settings)
        self._start_projections(settings)
        self._start_reminders(settings)
        accounts = Accounts(self.store, self.settings.token_days)
        token = self._admin_token(accounts)
        self.gateway = Gateway(settings, self.store, accounts)
        port = self._start_gateway(settings)
        self.running = Running(settings, port, token)
        if settings.demo:
            self._open_demo()
        return self.running

    def _start_ray(self, settings: Settings) -> None:
        if ray.is_initialized():
            return
        if settings.ray_address:
            ray.init(address=settings.ray_address, namespace=settings.namespace,
                     log_to_driver=False)
        else:
            # Ray starts workers at nice 15, the same as any background work: rooms and agents
            # (the write path) run at normal priority, and the processes that only build read
            # models (projections, jobs, embedding) lower their own (ProjectionSettings.nice).
            os.environ.setdefault("RAY_worker_niceness", "0")
            ray.init(address="local", namespace=settings.namespace, include_dashboard=False,
                     num_cpus=os.cpu_count() or 2, object_store_memory=256 * 1024 * 1024,
                     log_to_driver=False)
        self.started_ray = True

    def _start_memory(self, settings: Settings) -> None:
        """Create the memory view's tables: agents recall from them from their first turn,
        also when the memory projection does not run (``projection:memories`` fills them)."""
        from projections.memories import Memories
        from projections.views import open_view

        assert settings.database_url
        open_view(Memories, settings.database_url, SCHEMA_NAME).datastore.close()
        if SCHEMA_NAME != "public":
            # The hand-built memory projection of earlier releases kept its tables in public:
            # a read model (rebuilt in SCHEMA_NAME from the log) that would otherwise keep
            # copies of words people redact or erase.
            import psycopg

            with psycopg.connect(settings.database_url, autocommit=True) as conn:
                for table in LEGACY_MEMORY_TABLES:
                    conn.execute(f"DROP TABLE IF EXISTS public.{table}")

    def _start_reminders(self, settings: Settings) -> None:
        """Wake agents whose timers are due, also after a restart or a passivation."""
        from actors.reminders import Reminders

        self.stop_reminders = Reminders(settings).start()

    def _start_projections(self, settings: Settings) -> None:
        """Follow the log into the read models, and work background jobs (digests, memory
        upkeep), each in a Ray actor."""
        from actors.embedder import RemoteEmbedder
        from actors.upkeep import job_source
        from projections import service

        config = service.ProjectionSettings()
        if config.enabled:
            # The memory view embeds with the installation's background embedder actor.
            embedder = RemoteEmbedder(settings, background=True)
            self.projections = service.start(settings, config, sources=[job_source],
                                             options={MEMORIES: {"embedder": embedder}})

    def _admin_token(self, accounts: Accounts) -> str:
        path = self.home / "admin.token"
        if path.exists():
            token = path.read_text().strip()
            try:
                accounts.authenticate(token)
                return token
            except Exception:  # noqa: BLE001 - a stale file (new database): issue afresh
                log.info("admin token in %s is not valid for this database; issuing one", path)
        token = accounts.issue_token(ADMIN, "admin", "salon up")
        path.write_text(token + "\n")
        path.chmod(0o600)
        return token

    def _start_gateway(self, settings: Settings) -> int:
        assert self.gateway is not None
        self.loop = asyncio.new_event_loop()
        self.thread = threading.Thread(target=self.loop.run_forever, name="salon-gateway",
                                       daemon=True)
        self.thread.start()
        future = asyncio.run_coroutine_threadsafe(
            self.gateway.start(settings.host, settings.port), self.loop)
        return int(future.result(timeout=30))

    def _open_demo(self) -> None:
        assert self.running is not None and self.store is not None
        from domain.ids import room_id

        settings = self.running.settings
        if self.store.exists(room_id(DEMO_ROOM)):
            return
        room = directory.room(DEMO_ROOM, settings)
        ray.get(room.create.remote(ADMIN, "Say hello; mention @ada or @bo to get an answer"))
        for definition in DEMO_AGENTS:
            agent = directory.agent(str(definition["name"]), settings)
            try:
                ray.get(agent.info.remote())
            except Exception as error:  # noqa: BLE001 - define it when it does not exist
                if not isinstance(getattr(error, "cause", error), NotFound):
                    raise
                ray.get(agent.define.remote(definition))
            ray.get(room.add_agent.remote(str(definition["name"]), ADMIN, True))

    def write_runfile(self) -> Path:
        """Record where this installation listens, for the CLI."""
        assert self.running is not None
        path = self.home / "run.json"
        path.write_text(json.dumps({"pid": os.getpid(), "url": self.running.http_url,
                                    "ws_url": self.running.ws_url}))
        return path

    def stop(self) -> None:
        """Stop everything this platform started, newest first."""
        if self.gateway is not None and self.loop is not None:
            try:
                asyncio.run_coroutine_threadsafe(self.gateway.stop(), self.loop).result(10)
            except Exception:  # noqa: BLE001 - shutting down regardless
                log.exception("stopping the gateway failed")
            self.loop.call_soon_threadsafe(self.loop.stop)
            if self.thread is not None:
                self.thread.join(timeout=10)
            self.gateway = None
        if self.stop_reminders is not None:
            self.stop_reminders()
            self.stop_reminders = None
        if self.projections is not None:
            try:
                self.projections.stop()
            except Exception:  # noqa: BLE001 - shutting down regardless
                log.exception("stopping the projections failed")
            self.projections = None
        if self.started_ray:
            ray.shutdown()
            self.started_ray = False
        if self.store is not None:
            self.store.close()
            self.store = None
        if self.valkey is not None:
            self.valkey.stop()
            self.valkey = None
        if self.postgres is not None:
            self.postgres.stop()
            self.postgres = None
        (self.home / "run.json").unlink(missing_ok=True)
