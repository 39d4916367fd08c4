"""The projections and the job worker of a running Salon, each in a Ray actor of its own.

``start(settings)`` activates one ``ProjectionHost`` actor per projection (``projection:NAME``)
and one ``JobHost`` (``jobs:digests``), which works the digest queue and plans title and
summary jobs from the threads view, and works the queues the composition root hands it (memory
upkeep: ``actors.upkeep``). Ray restarts a host that dies; its runner resumes from its
tracking record. ``stop`` ends them. Status and rebuilds work whether or not they run: status
reads the database, and a rebuild without a host drops the view for the next start to refill.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable, Sequence
from typing import Any

import ray
from pydantic import Field
from pydantic_settings import BaseSettings, SettingsConfigDict

from domain.errors import Unavailable
from infra.jobs import JobQueue, JobSource, Worker
from infra.settings import Settings, below_the_write_path
from infra.store import EventStore
from projections.digests import SUMMARY_EVERY, TITLE_AFTER, DigestJobs, plan
from projections.memories import NAME as MEMORIES
from projections.registry import PROJECTIONS, SCHEMA_PREFIX, projection_class
from projections.runner import Runner, progress
from projections.views import Reader, open_view

log = logging.getLogger(__name__)
DIGESTS = "digests"
SourceFactory = Callable[[Settings], JobSource]


class ProjectionSettings(BaseSettings):
    """How projections and background jobs run, from ``SALON_PROJECTIONS_*`` variables."""

    model_config = SettingsConfigDict(env_prefix="SALON_PROJECTIONS_", extra="ignore")

    enabled: bool = Field(default=True, description="run projections and the job worker on up")
    schema_prefix: str = Field(default=SCHEMA_PREFIX, pattern=r"^[a-z_][a-z0-9_]{0,30}$",
                               description="schemas are PREFIX + projection name")
    batch_size: int = Field(default=500, ge=1, le=10_000)
    jobs_prefix: str = Field(default="salon:jobs", description="Redis key prefix of job queues")
    plan_every_seconds: float = Field(default=5.0, gt=0,
                                      description="how often title and summary jobs are planned")
    title_after: int = Field(default=TITLE_AFTER, ge=1)
    summary_every: int = Field(default=SUMMARY_EVERY, ge=1)
    claim_after: float = Field(default=60.0, gt=0,
                               description="seconds before a dead worker's job is taken over")

    def schema(self, name: str) -> str:
        """The schema of projection ``name``."""
        return f"{self.schema_prefix}{projection_class(name).name}"

    def actor_name(self, kind: str, name: str) -> str:
        """Ray name of a host: ``projection:threads`` (with a non-default prefix in it)."""
        prefix = "" if self.schema_prefix == SCHEMA_PREFIX else self.schema_prefix
        return f"{kind}:{prefix}{name}"


def _database(settings: Settings) -> str:
    if not settings.database_url:
        raise Unavailable("projections need a resolved database URL (start the platform first)")
    return settings.database_url


@ray.remote(max_restarts=-1, max_task_retries=-1, num_cpus=0)
class ProjectionHost:
    """One projection's runner, in its own process."""

    def __init__(self, name: str, settings: Settings, config: ProjectionSettings,
                 options: dict[str, Any] | None = None) -> None:
        below_the_write_path(settings.background_nice)
        self.runner = Runner(projection_class(name), _database(settings), config.schema(name),
                             master_key=settings.master_key_path(),
                             batch_size=config.batch_size, options=options).start()

    def status(self) -> dict[str, Any]:
        """Where the projection stands, and this runner's count and last error."""
        return self.runner.status().as_dict()

    def rebuild(self) -> dict[str, Any]:
        """Drop the view and refill it from position 0 (returns at once; watch the status)."""
        self.runner.rebuild()
        return self.status()

    def stop(self) -> None:
        """Stop following the log and release connections."""
        self.runner.close()


@ray.remote(max_restarts=-1, max_task_retries=-1, num_cpus=0)
class JobHost:
    """Works the digest job queue and plans its jobs from the threads view."""

    def __init__(self, settings: Settings, config: ProjectionSettings,
                 sources: Sequence[SourceFactory] = ()) -> None:
        below_the_write_path(settings.background_nice)
        assert settings.redis_url, "the job host needs a resolved Redis URL"
        database_url = _database(settings)
        self.config = config
        self.store = EventStore(database_url, settings.snapshot_interval, create_tables=False,
                                master_key=settings.master_key_path())
        self.queue = JobQueue(settings.redis_url, DIGESTS, prefix=config.jobs_prefix,
                              claim_after=config.claim_after)
        self.worker = Worker(self.queue, DigestJobs(self.store).handlers).start()
        self.threads = Reader(database_url, config.schema("threads"), max_size=2)
        self._stopping = threading.Event()
        self._planner = threading.Thread(target=self._plan, daemon=True, name="digest-planner")
        self._planner.start()
        # Queues of higher layers (memory upkeep), each with a worker and a planner of its own.
        self.sources = [factory(settings) for factory in sources]
        self.workers = [Worker(s.queue, s.handlers).start() for s in self.sources]
        for source in self.sources:
            if source.plan is not None:
                threading.Thread(target=self._plan_source, args=(source,), daemon=True,
                                 name=f"{source.queue.name}-planner").start()

    def _plan_source(self, source: JobSource) -> None:
        assert source.plan is not None
        while not self._stopping.wait(source.plan_every):
            try:
                source.plan()
            except Exception:  # noqa: BLE001 - e.g. the memory tables are being rebuilt
                log.warning("planning %s jobs failed; trying again later", source.queue.name,
                            exc_info=True)

    def _plan(self) -> None:
        while not self._stopping.wait(self.config.plan_every_seconds):
            try:
                plan(self.threads, self.queue, self.config.title_after,
                     self.config.summary_every)
            except Exception:  # noqa: BLE001 - e.g. the threads view is being rebuilt
                log.warning("planning digests failed; trying again later", exc_info=True)

    def counts(self) -> dict[str, int]:
        """Jobs by status, and dead letters."""
        return self.queue.counts()

    def stop(self) -> None:
        """Stop working and planning."""
        self._stopping.set()
        self.worker.stop()
        for worker in self.workers:
            worker.stop()
        for source in self.sources:
            if source.close is not None:
                source.close()
        self.threads.close()
        self.queue.close()
        self.store.close()


class Projections:
    """The handle the platform keeps: starts, inspects, rebuilds and stops the hosts."""

    def __init__(self, settings: Settings, config: ProjectionSettings | None = None,
                 options: dict[str, dict[str, Any]] | None = None) -> None:
        self.settings = settings
        self.config = config or ProjectionSettings()
        self.hosts: dict[str, Any] = {}
        # What the composition root hands a projection's constructor, by projection: the
        # memory view's embedder (the platform's background embedder actor).
        self.options = dict(options or {})

    def _options(self, kind: str, name: str) -> dict[str, Any]:
        return {"name": self.config.actor_name(kind, name),
                "namespace": self.settings.namespace, "get_if_exists": True}

    def start(self, jobs: bool = True, sources: Sequence[SourceFactory] = ()) -> Projections:
        """Activate every projection's host and (with ``jobs``) the job host, which also works
        the queues ``sources`` make."""
        for name in PROJECTIONS:
            if name == MEMORIES and not self.settings.memory_projection:
                continue  # SALON_MEMORY_PROJECTION=false: agents' memories are not followed
            self.hosts[name] = ProjectionHost.options(  # type: ignore[attr-defined]
                **self._options("projection", name)).remote(name, self.settings, self.config,
                                                            self.options.get(name))
        if jobs:
            self.hosts[DIGESTS] = JobHost.options(  # type: ignore[attr-defined]
                **self._options("jobs", DIGESTS)).remote(self.settings, self.config,
                                                         list(sources))
        return self

    def host(self, name: str) -> Any | None:
        """The running host of projection ``name`` (or the job host), if any."""
        kind = "jobs" if name == DIGESTS else "projection"
        try:
            return ray.get_actor(self.config.actor_name(kind, name),
                                 namespace=self.settings.namespace)
        except ValueError:
            return None

    def status(self, timeout: float = 10.0) -> list[dict[str, Any]]:
        """Each projection: position, head, pending events, running, applied, last error."""
        found = []
        for name, cls in PROJECTIONS.items():
            row = progress(_database(self.settings), cls, self.config.schema(name)).as_dict()
            host = self.host(name)
            if host is None:
                row["running"] = False
            else:
                try:
                    live = ray.get(host.status.remote(), timeout=timeout)
                    row.update(running=live["running"], applied=live["applied"],
                               error=live["error"])
                except Exception as error:  # noqa: BLE001 - report a host that does not answer
                    row.update(running=False, error=f"host does not answer: {error}")
            found.append(row)
        return found

    def rebuild(self, name: str, timeout: float = 60.0) -> dict[str, Any]:
        """Drop projection ``name``'s view and refill it from position 0."""
        cls = projection_class(name)
        host = self.host(cls.name)
        if host is not None:
            result: dict[str, Any] = ray.get(host.rebuild.remote(), timeout=timeout)
            return result
        view = open_view(cls, _database(self.settings), self.config.schema(cls.name))
        view.drop()
        view.datastore.close()
        # Empty tables again at once: readers (an agent's recall) find a view, not an error.
        open_view(cls, _database(self.settings), self.config.schema(cls.name)).datastore.close()
        return progress(_database(self.settings), cls, self.config.schema(cls.name)).as_dict()

    def stop(self) -> None:
        """Stop every host this handle (or an earlier one) started."""
        for name in [*PROJECTIONS, DIGESTS]:
            host = self.hosts.pop(name, None) or self.host(name)
            if host is None:
                continue
            try:
                ray.get(host.stop.remote(), timeout=10)
            except Exception:  # noqa: BLE001 - ending it regardless
                log.warning("host %s did not stop cleanly", name, exc_info=True)
            ray.kill(host, no_restart=True)


def start(settings: Settings, config: ProjectionSettings | None = None,
          sources: Sequence[SourceFactory] = (),
          options: dict[str, dict[str, Any]] | None = None) -> Projections:
    """Start the projections and the job worker for the platform; keep the result to stop.

    ``sources`` are factories (importable functions: Ray passes them by reference) of the
    queues higher layers add, such as memory upkeep (``actors.upkeep.job_source``).
    ``options`` are keyword arguments for projections' constructors, by name (the platform
    gives ``memories`` its ``embedder``; without one it loads the model in its own process).
    """
    return Projections(settings, config, options).start(sources=sources)


def stop(projections: Projections | None) -> None:
    """Stop what ``start`` started (nothing when given None)."""
    if projections is not None:
        projections.stop()
