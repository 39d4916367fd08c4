"""A scenario of any size, built in code: many agents in many rooms taking turns.

Used by the scale test and ``python -m bench.simulate``: ``rooms`` rooms, ``agents`` agents
spread evenly over them, round-robin turns given by the runner every virtual minute, each room
stopping after ``turns`` agent turns. Agents speak from short shuffled scripts that name
nobody, so no message ever sets off two agents at once.
"""

from __future__ import annotations

from typing import Any

from domain.errors import Invalid

QUIET_MEMORY: dict[str, Any] = {"recall": 0, "reflection": False, "facts": False}
LINES = (
    "I think we should start with the facts, {author}.",
    "That is a fair point; let me add one thing.",
    "I disagree with the last idea, but I see why it matters.",
    "We could agree on a small first step.",
    "Good question. My answer is: it depends on the budget.",
    "Let me summarise where we are.",
)


def crowd_document(agents: int = 200, rooms: int = 20, turns: int = 50, seed: int = 1,
                   memory: dict[str, Any] | None = None) -> dict[str, Any]:
    """A scenario document (as ``tomllib`` would give it) for a crowd of scripted agents.

    ``memory``: the agents' long-term memory settings; by default they recall nothing and
    neither reflect nor extract facts, so the crowd measures turn-taking (the memory
    projection still records what each hears).
    """
    if rooms < 1 or agents < rooms:
        raise Invalid(f"a crowd needs at least one agent per room ({agents} agents, {rooms} "
                      "rooms)")
    width = len(str(agents))
    names = [f"a{i:0{width}d}" for i in range(1, agents + 1)]
    seats: dict[str, list[str]] = {f"r{r:0{len(str(rooms))}d}": [] for r in range(1, rooms + 1)}
    for index, name in enumerate(names):
        seats[list(seats)[index % rooms]].append(name)
    return {
        "name": "crowd",
        "description": f"{agents} scripted agents in {rooms} rooms, {turns} turns per room.",
        "seed": seed,
        "defaults": {"provider": "scripted", "model": "scripted-echo", "cooldown_seconds": 0,
                     "context_messages": 20, "script_order": "shuffled", "script": list(LINES),
                     "memory": memory if memory is not None else QUIET_MEMORY},
        "agents": {name: {} for name in names},
        "rooms": {room: {"topic": "a crowd", "agents": members,
                         "policy": {"mode": "round_robin", "max_agent_streak": 50},
                         "turn_seconds": 60}
                  for room, members in seats.items()},
        "stop": {"max_turns": turns},
        "run": {"parallel": 1},
    }
