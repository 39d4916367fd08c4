"""Virtual time: each room of a run keeps a clock that only the runner moves.

A step of a room happens at a virtual moment (seconds since the room's start); whatever the
step sets off — agents answering, chains of mentions — happens at that same moment, and the
runner waits until it has settled before moving the clock on. Nothing waits for wall-clock
time, so an hour of a village day takes as long as its messages take to write.

Agents' timed triggers (``idle_after_seconds``, ``every_seconds``) are decided by the agent
(``domain.turns.timed_triggers``) when the runner calls ``tick(now)``. The runner works out,
in virtual time, when each timer is due (``Timer``), and calls ``tick`` for that agent alone at
that moment with an *agent time*: ``AGENT_EPOCH`` plus the virtual seconds. The epoch lies far
past any wall-clock event time, so "the room has been quiet long enough" holds whenever the
runner ticks, while differences between ticks (what ``every_seconds`` measures) are exactly
the virtual differences. The agent's own wall-clock ticker never fires a schedule in between
(its "now" is earlier than the last agent time); it could only fire an idle trigger if a room
stayed quiet for ``idle_after_seconds`` of real time during a run, which stepping prevents.
"""

from __future__ import annotations

from dataclasses import dataclass

# 2100-01-01T00:00:00Z: later than any event's wall-clock timestamp by far more than any timer.
AGENT_EPOCH = 4_102_444_800.0
# A schedule tick comes this much after the period, so float rounding of the agent times
# (about 1e-6 s at this epoch) can never make an elapsed period look a hair too short.
SCHEDULE_SLACK = 0.01


@dataclass
class VirtualClock:
    """Seconds of simulated time since a room's run began; moves only forward."""

    now: float = 0.0

    def advance(self, to: float) -> None:
        """Move to ``to`` (never back)."""
        self.now = max(self.now, to)

    def agent_time(self) -> float:
        """``now`` on the clock agents compare with: see the module docstring."""
        return AGENT_EPOCH + self.now


@dataclass
class Timer:
    """The runner's account of one agent's timers in one room, mirroring the agent's rules.

    ``idle``: due ``idle_after`` seconds after the room's last event, unless the agent spoke
    last or already woke the room at its current position. ``schedule``: due every ``every``
    seconds from the first tick (which only sets the baseline, as in the agent).
    """

    agent: str
    idle_after: float | None
    every: float | None
    fired_at_position: int = -1
    scheduled_at: float | None = None

    def due(self, last_event_at: float, last_position: int,
            last_author: str | None) -> float | None:
        """When this agent should next be ticked (virtual seconds), or None."""
        moments: list[float] = []
        if self.idle_after is not None and self.fired_at_position < last_position \
                and last_author != self.agent:
            moments.append(last_event_at + self.idle_after)
        if self.every is not None and self.scheduled_at is not None:
            moments.append(self.scheduled_at + self.every + SCHEDULE_SLACK)
        return min(moments) if moments else None

    def ticked(self, now: float, last_position: int, last_author: str | None) -> None:
        """Record a tick at ``now``, deciding as the agent decides."""
        if self.idle_after is not None and self.fired_at_position < last_position \
                and last_author != self.agent:
            self.fired_at_position = last_position
        if self.every is not None and (self.scheduled_at is None or
                                       now - self.scheduled_at >= self.every):
            self.scheduled_at = now
