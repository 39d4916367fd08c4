"""Metrics of a run, computed from what the event log recorded (and the runner's virtual times).

Per agent: turns and speaking share, turns that failed, response latency (from the message
that set the turn off to the agent's reply, wall clock) and model latency, tokens, cost, tool
calls by tool and outcome, memory growth (the memories it holds at the end by kind, from the
memory tables; else what its memory stream recorded), reflections and retrievals, the
triggers that made it speak and the mean of the scenario's measure over its messages. Per
room: messages, why it stopped, virtual time, and the measure over time. ``summarize`` folds
the runs of one sweep point into means and spreads.

Everything here is a pure function of plain data, so it is tested without servers.
"""

from __future__ import annotations

import math
import statistics
from collections import Counter
from datetime import datetime
from typing import Any

from simulations.measures import Lexicon

SUMMARY_KEYS = ("agent_turns", "human_messages", "failed_turns", "input_tokens",
                "output_tokens", "cost_usd", "tool_calls", "memory_growth", "score_mean",
                "virtual_seconds", "reply_latency_ms")
MEMORY_ADDS = {"memory_recorded": "recorded", "reflection_recorded": "reflections"}
MEMORY_REMOVES = {"memories_forgotten": "forgotten", "memories_merged": "merged"}


def spread(values: list[float]) -> dict[str, float]:
    """count, mean, sd, min, p50, p95 and max of ``values`` (zeros when empty)."""
    if not values:
        return {"count": 0, "mean": 0.0, "sd": 0.0, "min": 0.0, "p50": 0.0, "p95": 0.0,
                "max": 0.0}
    ordered = sorted(values)
    return {"count": len(values), "mean": statistics.fmean(values),
            "sd": statistics.stdev(values) if len(values) > 1 else 0.0,
            "min": ordered[0], "p50": _quantile(ordered, 0.5), "p95": _quantile(ordered, 0.95),
            "max": ordered[-1]}


def _quantile(ordered: list[float], q: float) -> float:
    if len(ordered) == 1:
        return ordered[0]
    position = (len(ordered) - 1) * q
    low, high = math.floor(position), math.ceil(position)
    return ordered[low] + (ordered[high] - ordered[low]) * (position - low)


def _seconds(stamp: Any) -> float | None:
    if not isinstance(stamp, str):
        return None
    try:
        return datetime.fromisoformat(stamp).timestamp()
    except ValueError:
        return None


def run_metrics(rooms: list[dict[str, Any]], agents: dict[str, list[dict[str, Any]]],
                memories: dict[str, list[dict[str, Any]]], room_names: dict[str, str],
                lexicon: Lexicon, held: dict[str, dict[str, int]] | None = None
                ) -> dict[str, Any]:
    """Metrics of one run.

    ``rooms``: the drivers' summaries (transcripts with virtual times, event stamps);
    ``agents`` / ``memories``: each scenario agent's agent-stream and memory-stream events as
    wire bodies; ``room_names``: installation room name -> scenario room name; ``held``: each
    agent's memories by kind at the end of the run, from the memory tables (None: unknown).
    """
    messages_by_id: dict[str, dict[str, Any]] = {}
    for room in rooms:
        score_transcript(room["transcript"], lexicon)
        for message in room["transcript"]:
            messages_by_id[str(message["message_id"])] = {**message, "room": room["room"]}
    stamps = {room["room"]: room.get("stamps", {}) for room in rooms}
    total_agent_messages = sum(1 for m in messages_by_id.values() if m["kind"] == "agent")
    per_agent: dict[str, dict[str, Any]] = {}
    warnings: list[str] = []
    triggered_at: dict[tuple[str, int], list[str]] = {}
    for agent, events in agents.items():
        stats = _agent_metrics(agent, events, memories.get(agent, []), room_names,
                               messages_by_id, stamps, triggered_at,
                               None if held is None else held.get(agent, {}))
        stats["share"] = stats["messages"] / total_agent_messages if total_agent_messages else 0.0
        per_agent[agent] = stats
    for (where, position), speakers in sorted(triggered_at.items()):
        if len(speakers) > 1:
            warnings.append(f"room {where!r}: the event at position {position} set off "
                            f"{len(speakers)} agents at once ({', '.join(sorted(speakers))}); "
                            "their replies raced, so their order may differ between runs")
    per_room = {room["room"]: _room_metrics(room) for room in rooms}
    totals = _totals(per_agent, per_room)
    return {"agents": per_agent, "rooms": per_room, "totals": totals, "warnings": warnings}


def _agent_metrics(agent: str, events: list[dict[str, Any]], memory: list[dict[str, Any]],
                   room_names: dict[str, str], messages: dict[str, dict[str, Any]],
                   stamps: dict[str, dict[str, str]],
                   triggered_at: dict[tuple[str, int], list[str]],
                   held: dict[str, int] | None = None) -> dict[str, Any]:
    turns: dict[str, dict[str, Any]] = {}
    model_latency: list[float] = []
    tokens_in = tokens_out = calls = memory_calls = 0
    cost = 0.0
    tools: dict[str, Counter[str]] = {}
    for body in events:
        kind = body.get("kind")
        turn = turns.get(str(body.get("turn_id")))
        if kind == "turn_started":
            room = room_names.get(str(body.get("room_id")))
            if room is None:
                continue  # a turn in a room outside this run
            turns[str(body["turn_id"])] = {"room": room, "trigger": body.get("trigger") or {},
                                           "at": body.get("at"), "end": None}
        elif turn is None:
            continue
        elif kind == "model_called":
            calls += 1
            context = body.get("context")
            memory_calls += isinstance(context, dict) and context.get("purpose") == "memory"
            tokens_in += int(body.get("input_tokens") or 0)
            tokens_out += int(body.get("output_tokens") or 0)
            cost += float(body.get("cost_usd") or 0.0)
            model_latency.append(float(body.get("latency_ms") or 0.0))
        elif kind == "tool_executed":
            tools.setdefault(str(body.get("tool")), Counter())[str(body.get("status"))] += 1
        elif kind == "turn_completed":
            turn["end"] = "completed"
            turn["message_id"] = body.get("message_id")
        elif kind == "turn_failed":
            turn["end"] = "failed"
            turn["error"] = body.get("error")
    reply_latency: list[float] = []
    triggers: Counter[str] = Counter()
    errors: list[str] = []
    for turn in turns.values():
        trigger = turn["trigger"]
        triggers[str(trigger.get("kind"))] += 1
        if turn["end"] == "failed" and len(errors) < 5:
            errors.append(str(turn.get("error")))
        message = messages.get(str(turn.get("message_id")))
        if message is None:
            continue
        position = trigger.get("position")
        if isinstance(position, int):
            triggered_at.setdefault((turn["room"], position), []).append(agent)
            began = _seconds(stamps.get(turn["room"], {}).get(str(position)))
        else:
            began = _seconds(turn["at"])
        ended = _seconds(message.get("at"))
        if began is not None and ended is not None:
            reply_latency.append(max(0.0, (ended - began) * 1000))
    own = [m for m in messages.values() if m["author"] == agent and m["kind"] == "agent"]
    scores = [float(m["score"]) for m in own]
    growth = Counter({name: 0 for name in (*MEMORY_ADDS.values(), *MEMORY_REMOVES.values(),
                                           "retrievals")})
    for body in memory:
        kind = str(body.get("kind"))
        if kind == "memories_retrieved":
            growth["retrievals"] += 1
        elif kind in MEMORY_ADDS:
            growth[MEMORY_ADDS[kind]] += 1
        elif kind in MEMORY_REMOVES:
            removed = body.get("memory_ids") or body.get("merged_ids") or []
            growth[MEMORY_REMOVES[kind]] += len(removed) if isinstance(removed, list) else 1
    return {
        "messages": len(own),
        "turns": len(turns),
        "completed_turns": sum(1 for t in turns.values() if t["end"] == "completed"),
        "failed_turns": sum(1 for t in turns.values() if t["end"] == "failed"),
        "errors": errors,
        "triggers": dict(sorted(triggers.items())),
        "model_calls": calls,
        "input_tokens": tokens_in,
        "output_tokens": tokens_out,
        "cost_usd": round(cost, 6),
        "model_latency_ms": spread(model_latency),
        "reply_latency_ms": spread(reply_latency),
        "tool_calls": sum(sum(c.values()) for c in tools.values()),
        "tools": {name: dict(counts) for name, counts in sorted(tools.items())},
        "model_calls_for_memory": memory_calls,
        "memory": _memory(growth, held),
        "score_mean": statistics.fmean(scores) if scores else 0.0,
    }


def _memory(growth: Counter[str], held: dict[str, int] | None) -> dict[str, Any]:
    """Memory growth: what the agent holds at the end (from the memory tables), else what its
    memory stream recorded less what it forgot and merged."""
    recorded = growth["recorded"] + growth["reflections"] - growth["forgotten"] - \
        growth["merged"]
    return {**dict(growth), "held": held, "growth": sum(held.values()) if held is not None
            else recorded}


def _room_metrics(room: dict[str, Any]) -> dict[str, Any]:
    transcript = room["transcript"]
    agent_messages = [m for m in transcript if m["kind"] == "agent"]
    speakers = Counter(m["author"] for m in agent_messages)
    return {
        "name": room["name"],
        "stop": room["stop"],
        "stop_detail": room.get("stop_detail", ""),
        "virtual_seconds": room["virtual_seconds"],
        "steps": room["steps"],
        "grants": room.get("grants", 0),
        "messages": len(transcript),
        "agent_turns": len(agent_messages),
        "human_messages": len(transcript) - len(agent_messages),
        "speakers": dict(speakers.most_common()),
        "scores": [[m["t"], m["author"], m["score"]] for m in agent_messages],
        "score_mean": statistics.fmean(m["score"] for m in agent_messages)
        if agent_messages else 0.0,
        "score_final": statistics.fmean(m["score"] for m in agent_messages[-5:])
        if agent_messages else 0.0,
        "transcript": [{k: m[k] for k in ("position", "t", "author", "kind", "text", "score")}
                       for m in transcript],
        "wall_seconds": room.get("wall_seconds", {}),
    }


def _totals(agents: dict[str, dict[str, Any]], rooms: dict[str, dict[str, Any]]
            ) -> dict[str, Any]:
    latencies = [a["reply_latency_ms"]["mean"] for a in agents.values()
                 if a["reply_latency_ms"]["count"]]
    scored = [m for r in rooms.values() for m in r["scores"]]
    return {
        "agent_turns": sum(r["agent_turns"] for r in rooms.values()),
        "human_messages": sum(r["human_messages"] for r in rooms.values()),
        "turns_started": sum(a["turns"] for a in agents.values()),
        "failed_turns": sum(a["failed_turns"] for a in agents.values()),
        "input_tokens": sum(a["input_tokens"] for a in agents.values()),
        "output_tokens": sum(a["output_tokens"] for a in agents.values()),
        "cost_usd": round(sum(a["cost_usd"] for a in agents.values()), 6),
        "tool_calls": sum(a["tool_calls"] for a in agents.values()),
        "memory_growth": sum(a["memory"]["growth"] for a in agents.values()),
        "score_mean": statistics.fmean(s for _, _, s in scored) if scored else 0.0,
        "virtual_seconds": max((r["virtual_seconds"] for r in rooms.values()), default=0.0),
        "reply_latency_ms": statistics.fmean(latencies) if latencies else 0.0,
        "stops": dict(Counter(r["stop"] for r in rooms.values())),
    }


def score_transcript(transcript: list[dict[str, Any]], lexicon: Lexicon) -> None:
    """Add the measure's ``score`` to every message of a transcript (in place)."""
    for message in transcript:
        message["score"] = lexicon.score(message["text"])


def summarize(runs: list[dict[str, Any]]) -> dict[str, Any]:
    """Means and spreads of the runs' totals (one sweep point), and how their rooms stopped."""
    finished = [r for r in runs if r.get("totals")]
    stops: Counter[str] = Counter()
    for run in finished:
        stops.update(run["totals"].get("stops", {}))
    return {"runs": len(runs), "finished": len(finished),
            "totals": {key: spread([float(r["totals"][key]) for r in finished])
                       for key in SUMMARY_KEYS},
            "stops": dict(stops.most_common())}


def transcripts(run: dict[str, Any]) -> dict[str, list[tuple[str, str]]]:
    """(author, text) of every message of every room of a run, in order: what runs compare."""
    return {room: [(m["author"], m["text"]) for m in data["transcript"]]
            for room, data in sorted(run.get("rooms", {}).items())}
