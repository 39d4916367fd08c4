"""The memory projection, as a run waits for it and measures what agents hold in memory.

The memory projection (``projection:memories``) follows the event log into the memory tables
a little behind it, and agents recall and reflect from those tables. Left alone, what an
agent recalls would depend on how far behind the projection happened to be: a run would not
repeat. So before each step of a room whose agents have long-term memory, the runner waits until the
projection has taken in the whole log (``caught_up``): every turn then recalls from memories
of everything before its step. At the end of a run it counts each agent's memories by kind
(``holdings``): everything a run's (fresh) agent holds, it gained during the run.

Where the projection does not run (``SALON_MEMORY_PROJECTION=false``) there is nothing to wait
for and ``holdings`` says so; the metrics then count what the memory streams recorded.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Sequence

import psycopg

from infra.memories import MEMORIES as MEMORY_TABLE
from infra.store import EventStore
from projections.memories import SCHEMA, Memories
from projections.views import APPLICATION

POLL = 0.02
POLL_MAX = 0.1
# The platform's memory view (``projection:memories``, ``projections/memories.py``).
MEMORIES = f"{SCHEMA}.{MEMORY_TABLE}"
TRACKING = f"{SCHEMA}.{Memories.name}_tracking"


class MemoryTables:
    """Reads the log's head, the memory projection's position and the memory tables."""

    def __init__(self, database_url: str, store: EventStore) -> None:
        self.database_url = database_url
        self.events = store.table

    def _one(self, sql: str, args: Sequence[object] = ()) -> int | None:
        with psycopg.connect(self.database_url, autocommit=True) as conn:
            try:
                row = conn.execute(sql, args).fetchone()
            except (psycopg.errors.UndefinedTable, psycopg.errors.InvalidSchemaName):
                return None
        return None if row is None or row[0] is None else int(row[0])

    def head(self) -> int:
        """The notification id of the newest event in the log."""
        return self._one(f"SELECT max(notification_id) FROM {self.events}") or 0

    def position(self, up_to: int | None = None) -> int | None:
        """How far the projection has taken in the log (None: there are no memory tables).

        With ``up_to``: ``up_to`` itself once no event the projection reads is left
        between its tracking record and ``up_to`` (it records only the events it reads)."""
        at = self._one(f"SELECT notification_id FROM {TRACKING} WHERE application_name = %s",
                       (APPLICATION,))
        if at is None or up_to is None or at >= up_to:
            return at
        left = self._one(f"SELECT 1 FROM {self.events} WHERE notification_id > %s AND "
                         "notification_id <= %s AND topic = ANY(%s) LIMIT 1",
                         (at, up_to, list(Memories.topics)))
        return up_to if left is None else at

    async def caught_up(self, wait: float) -> bool:
        """Wait until the projection took in the log as it is now; False if it stopped
        advancing for ``wait`` seconds (or there is no projection).

        The projection runs below the write path's CPU priority, so under a busy run it falls
        behind and catches up afterwards: a wait that is still making progress goes on.
        """
        head = await asyncio.to_thread(self.head)
        deadline = time.monotonic() + wait
        delay = POLL
        last: int | None = None
        while True:
            position = await asyncio.to_thread(self.position, head)
            if position is not None and position >= head:
                return True
            if position is not None and (last is None or position > last):
                last = position
                deadline = time.monotonic() + wait
            if time.monotonic() > deadline:
                return False
            await asyncio.sleep(delay)
            delay = min(delay * 2, POLL_MAX)

    def holdings(self, agents: Sequence[str]) -> dict[str, dict[str, int]]:
        """Each agent's memories by kind (call once the projection caught up)."""
        with psycopg.connect(self.database_url, autocommit=True) as conn:
            rows = conn.execute(f"SELECT agent_id, kind, count(*) FROM {MEMORIES} "
                                "WHERE agent_id = ANY(%s) GROUP BY agent_id, kind",
                                (list(agents),)).fetchall()
        found: dict[str, dict[str, int]] = {agent: {} for agent in agents}
        for agent, kind, count in rows:
            found[str(agent)][str(kind)] = int(count)
        return found
