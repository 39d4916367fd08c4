"""Memory upkeep as background jobs: their queue, their ids, their schedule, their tally.

Upkeep (consolidation, forgetting, retention: ``AgentMemory.upkeep``) runs as ``upkeep`` jobs
on the job queue ``memory`` (``infra.jobs``), worked by the job host ``salon up`` starts. A
job's id names the agent and why it runs, so asking twice enqueues once and it runs once:

- ``upkeep:AGENT:slot:N`` from the schedule: every agent holding long-term memories is due
  once per ``SALON_MEMORY_UPKEEP_SECONDS`` (N counts those periods since the epoch); an agent
  the schedule sees for the first time is due one period later, so a restart does not wake
  every agent at once;
- ``upkeep:AGENT:reflection:TURN`` after a turn whose reflection recorded insights.

``UpkeepTally`` keeps the counters ``/metrics`` shows (passes, failures, memories merged and
forgotten, seconds spent) in one Valkey hash, written by whichever process ran the pass.
"""

from __future__ import annotations

import time
from collections.abc import Collection
from typing import Any

import redis

from domain.errors import Invalid
from domain.ids import check_name
from infra.jobs import JobQueue
from infra.memories import MemoryStore

QUEUE = "memory"
KIND = "upkeep"
PREFIX = "salon:jobs"           # the job queues' key prefix (as ProjectionSettings' default)
TALLY = "salon:upkeep:tally"
TRIGGERS = ("schedule", "reflection", "manual")
PLAN_PAGE = 1_000               # agents listed per query while planning
MAX_PLANNED = 100_000           # agents one planning round looks at, at most


def open_queue(redis_url: str, prefix: str = PREFIX, **options: Any) -> JobQueue:
    """The memory job queue."""
    return JobQueue(redis_url, QUEUE, prefix=prefix, **options)


def scheduled_id(agent: str, slot: int) -> str:
    """The id of agent ``agent``'s scheduled upkeep in period ``slot``."""
    return f"{KIND}:{check_name(agent, 'agent')}:slot:{int(slot)}"


def reflection_id(agent: str, turn_id: str) -> str:
    """The id of the upkeep that follows the reflection of turn ``turn_id``."""
    return f"{KIND}:{check_name(agent, 'agent')}:reflection:{turn_id}"


def enqueue(queue: JobQueue, agent: str, trigger: str, job_id: str) -> str:
    """Ask for an upkeep pass of ``agent``; a job of ``job_id`` is added once."""
    if trigger not in TRIGGERS:
        raise Invalid(f"an upkeep trigger is one of {', '.join(TRIGGERS)}, not {trigger!r}")
    return queue.enqueue(KIND, {"agent": check_name(agent, "agent"), "trigger": trigger},
                         job_id=job_id)


class Schedule:
    """Enqueues each agent's scheduled upkeep when its period comes round."""

    def __init__(self, queue: JobQueue, memories: MemoryStore, every_seconds: float) -> None:
        self.queue = queue
        self.memories = memories
        self.every = every_seconds
        # agent -> when it was last due (or first seen): survives restarts of the planner.
        self.seen = f"{queue.stream}:upkeep-due"

    def plan(self, now: float | None = None, only: Collection[str] | None = None
             ) -> list[str]:
        """Enqueue the upkeep of every agent (or of those in ``only``) due at ``now``; the
        ids of the jobs asked for."""
        if self.every <= 0:
            return []
        moment = time.time() if now is None else now
        slot = int(moment // self.every)
        asked: list[str] = []
        after, looked = "", 0
        while looked < MAX_PLANNED:
            page = self.memories.agents(after, PLAN_PAGE)
            if not page:
                break
            looked += len(page)
            after = page[-1]
            agents = [a for a in page if only is None or a in only]
            if not agents:
                continue
            last = self.queue.redis.hmget(self.seen, agents)
            due: dict[str, float] = {}
            for agent, when in zip(agents, last, strict=True):
                if when is None:
                    due[agent] = moment  # first seen: its first pass is one period away
                elif moment - float(when) >= self.every:
                    due[agent] = moment
                    asked.append(enqueue(self.queue, agent, "schedule",
                                         scheduled_id(agent, slot)))
            if due:
                self.queue.redis.hset(self.seen, mapping=due)
        return asked


class UpkeepTally:
    """Counters of upkeep passes, shared by every process through Valkey."""

    def __init__(self, redis_url: str, key: str = TALLY) -> None:
        self.redis = redis.Redis.from_url(redis_url, decode_responses=True)
        self.key = key

    def record(self, trigger: str, seconds: float, merged: int = 0, forgotten: int = 0,
               past_retention: int = 0, failed: bool = False) -> None:
        """Count one pass (or one failed pass) of ``trigger``."""
        with self.redis.pipeline(transaction=True) as pipe:
            pipe.hincrby(self.key, f"failures:{trigger}" if failed else f"runs:{trigger}", 1)
            pipe.hincrbyfloat(self.key, f"seconds:{trigger}", seconds)
            pipe.hincrby(self.key, "memories:merged", merged)
            pipe.hincrby(self.key, "memories:forgotten", forgotten)
            pipe.hincrby(self.key, "memories:past_retention", past_retention)
            pipe.execute()

    def read(self) -> dict[str, float]:
        """Every counter by name (``runs:schedule``, ``memories:merged``, …); 0 when unset."""
        found = {k: float(v) for k, v in self.redis.hgetall(self.key).items()}
        names = [f"{what}:{t}" for what in ("runs", "failures", "seconds") for t in TRIGGERS]
        names += ["memories:merged", "memories:forgotten", "memories:past_retention"]
        return {name: found.get(name, 0.0) for name in names}

    def close(self) -> None:
        """Release the connection pool."""
        self.redis.close()
