"""Upkeep jobs reach the agents: the handler runs a pass in the agent's actor (the one writer
of its memory stream), the schedule plans them, and a turn asks for one after reflecting.

``job_source(settings)`` is what the composition root hands the job host (``projections.
service``): the ``memory`` queue, its ``upkeep`` handler and the schedule's planner.
"""

from __future__ import annotations

import logging
import threading
import time
from typing import Any

import ray
from ray.exceptions import RayTaskError

from actors import directory
from domain.errors import Invalid, NotFound, SalonError
from domain.ids import agent_id, check_name
from infra import upkeep
from infra.jobs import Job, JobQueue, JobSource
from infra.memories import MemoryStore
from infra.recall import AgentMemory, Upkeep
from infra.settings import Settings
from infra.store import EventStore

log = logging.getLogger(__name__)
PASS_TIMEOUT = 600.0  # seconds a pass may take before its job is retried
PLAN_EVERY = 30.0     # seconds between looks at the schedule (each period is caught within it)


class UpkeepJobs:
    """The handler of ``upkeep`` jobs: one pass in the agent's actor."""

    def __init__(self, settings: Settings, store: EventStore | None = None) -> None:
        assert settings.database_url, "needs a resolved database URL"
        self.settings = settings
        self.store = store or EventStore(settings.database_url, settings.snapshot_interval,
                                         create_tables=False)

    @property
    def handlers(self) -> dict[str, Any]:
        """Handlers by job kind, for ``infra.jobs.Worker``."""
        return {upkeep.KIND: self.run}

    def run(self, job: Job) -> dict[str, Any]:
        """Run the pass ``job`` asks for; its counts are the job's result."""
        agent, trigger = job.payload.get("agent"), job.payload.get("trigger", "schedule")
        if not isinstance(agent, str) or trigger not in upkeep.TRIGGERS:
            raise Invalid(f"an upkeep job names an agent and a trigger, not {job.payload!r}")
        # Checked before activating anything: a made-up name must not start an actor.
        if not self.store.exists(agent_id(check_name(agent, "agent"))):
            raise NotFound(f"agent {agent!r} does not exist; `salon agents list` shows them")
        handle = directory.agent(agent, self.settings)
        try:
            done: dict[str, Any] = ray.get(
                handle.memory_upkeep.remote(None, True, trigger), timeout=PASS_TIMEOUT)
        except RayTaskError as error:
            cause = getattr(error, "cause", None)
            raise cause if isinstance(cause, SalonError) else error from None
        return {k: done[k] for k in ("agent", "merged", "forgotten", "past_retention", "more")}


def job_source(settings: Settings) -> JobSource:
    """The memory queue, its handler and its schedule, for the job host to work."""
    assert settings.redis_url and settings.database_url, "needs resolved server URLs"
    queue = upkeep.open_queue(settings.redis_url)
    memories = MemoryStore(settings.database_url, max_size=1)
    schedule = upkeep.Schedule(queue, memories, settings.memory_upkeep_seconds)

    jobs = UpkeepJobs(settings)

    def close() -> None:
        memories.close()
        queue.close()
        jobs.store.close()

    every = min(PLAN_EVERY, settings.memory_upkeep_seconds) or PLAN_EVERY
    return JobSource(queue, jobs.handlers,
                     schedule.plan if settings.memory_upkeep_seconds > 0 else None, every, close)


_queues: dict[str, JobQueue] = {}
_lock = threading.Lock()
_tallies: dict[str, upkeep.UpkeepTally] = {}


def run_pass(memory: AgentMemory, settings: Settings, trigger: str) -> Upkeep:
    """One upkeep pass, counted in the tally ``/metrics`` shows (blocking)."""
    assert settings.redis_url
    with _lock:
        tally = _tallies.get(settings.redis_url)
        if tally is None:
            tally = _tallies[settings.redis_url] = upkeep.UpkeepTally(settings.redis_url)
    started = time.monotonic()
    try:
        done = memory.upkeep(limit=settings.memory_upkeep_batch)
    except Exception:
        tally.record(trigger, time.monotonic() - started, failed=True)
        raise
    tally.record(trigger, time.monotonic() - started, done.merged, done.forgotten,
                 done.past_retention)
    return done


def after_reflection(settings: Settings, agent: str, turn_id: str) -> str:
    """Ask for an upkeep pass of ``agent`` after its turn ``turn_id`` reflected (blocking)."""
    assert settings.redis_url
    with _lock:
        queue = _queues.get(settings.redis_url)
        if queue is None:
            queue = _queues[settings.redis_url] = upkeep.open_queue(settings.redis_url)
    return upkeep.enqueue(queue, agent, "reflection", upkeep.reflection_id(agent, turn_id))
