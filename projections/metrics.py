"""Metrics: what agents cost and how they perform, per agent, room, user and model, per day.

One row per model call (tokens, cost, latency) and per tool call (status, duration), keyed by
the event's log position, with the day (UTC) of the event and the room and user of the turn
it belongs to (from ``TurnStarted``: the room, and ``trigger.by``, the user who caused it).
Totals and percentiles are computed when read; ``projections.exposition`` renders them in
Prometheus' text format.
"""

from __future__ import annotations

from datetime import UTC
from functools import singledispatchmethod
from typing import Any

from domain.agents import Agent
from projections.views import Projection, Queries, Tx, View

NOBODY = ""  # the user of turns no person caused (schedules, idleness)

INSERT_CALL = """
INSERT INTO {s}.model_calls (position, day, agent, room, user_name, provider, model,
                             input_tokens, output_tokens, cost_usd, latency_ms, fallback)
SELECT %(position)s, %(day)s, coalesce(a.name, ''), coalesce(t.room, ''),
       coalesce(t.user_name, ''), %(provider)s, %(model)s, %(input)s, %(output)s, %(cost)s,
       %(latency)s, %(fallback)s
FROM (SELECT 1) AS one
LEFT JOIN {s}.agents AS a ON a.agent_id = %(agent)s
LEFT JOIN {s}.turns AS t ON t.agent_id = %(agent)s AND t.turn_id = %(turn)s"""
INSERT_TOOL = """
INSERT INTO {s}.tool_calls (position, day, agent, room, user_name, tool, status, duration_ms)
SELECT %(position)s, %(day)s, coalesce(a.name, ''), coalesce(t.room, ''),
       coalesce(t.user_name, ''), %(tool)s, %(status)s, %(duration)s
FROM (SELECT 1) AS one
LEFT JOIN {s}.agents AS a ON a.agent_id = %(agent)s
LEFT JOIN {s}.turns AS t ON t.agent_id = %(agent)s AND t.turn_id = %(turn)s"""


INSERT_GUARD = """
INSERT INTO {s}.guard_verdicts (position, day, agent, room, user_name, direction, source,
                                check_name, action)
SELECT %(position)s, %(day)s, coalesce(a.name, ''), %(room)s, coalesce(t.user_name, ''),
       %(direction)s, %(source)s, %(check)s, %(action)s
FROM (SELECT 1) AS one
LEFT JOIN {s}.agents AS a ON a.agent_id = %(agent)s
LEFT JOIN {s}.turns AS t ON t.agent_id = %(agent)s AND t.turn_id = %(turn)s"""


class MetricsView(View):
    """Tables of the metrics read model."""

    ddl = (
        "CREATE TABLE IF NOT EXISTS {s}.agents (agent_id uuid PRIMARY KEY, name text NOT NULL)",
        """CREATE TABLE IF NOT EXISTS {s}.turns (
            agent_id uuid NOT NULL, turn_id text NOT NULL, room text NOT NULL,
            user_name text NOT NULL, PRIMARY KEY (agent_id, turn_id))""",
        """CREATE TABLE IF NOT EXISTS {s}.model_calls (
            position bigint PRIMARY KEY,
            day date NOT NULL,
            agent text NOT NULL,
            room text NOT NULL,
            user_name text NOT NULL,
            provider text NOT NULL,
            model text NOT NULL,
            input_tokens bigint NOT NULL,
            output_tokens bigint NOT NULL,
            cost_usd double precision NOT NULL,
            latency_ms double precision NOT NULL,
            fallback boolean NOT NULL)""",
        "CREATE INDEX IF NOT EXISTS model_calls_day ON {s}.model_calls (day)",
        """CREATE TABLE IF NOT EXISTS {s}.tool_calls (
            position bigint PRIMARY KEY,
            day date NOT NULL,
            agent text NOT NULL,
            room text NOT NULL,
            user_name text NOT NULL,
            tool text NOT NULL,
            status text NOT NULL,
            duration_ms double precision NOT NULL)""",
        "CREATE INDEX IF NOT EXISTS tool_calls_day ON {s}.tool_calls (day)",
        """CREATE TABLE IF NOT EXISTS {s}.guard_verdicts (
            position bigint PRIMARY KEY,
            day date NOT NULL,
            agent text NOT NULL,
            room text NOT NULL,
            user_name text NOT NULL,
            direction text NOT NULL,
            source text NOT NULL,
            check_name text NOT NULL,
            action text NOT NULL)""",
    )


class Metrics(Projection[MetricsView]):
    """Model and tool calls of every agent, ready to be summed by day and dimension."""

    name = "metrics"
    view_class = MetricsView

    @singledispatchmethod
    def apply(self, event: object, tx: Tx) -> None:
        """Events this view ignores."""

    @apply.register
    def _(self, event: Agent.AgentDefined, tx: Tx) -> None:
        tx.execute("INSERT INTO {s}.agents VALUES (%s, %s) ON CONFLICT DO NOTHING",
                   (event.originator_id, str(event.definition["name"])))

    @apply.register
    def _(self, event: Agent.TurnStarted, tx: Tx) -> None:
        trigger = event.trigger if isinstance(event.trigger, dict) else {}
        tx.execute("INSERT INTO {s}.turns VALUES (%s, %s, %s, %s) ON CONFLICT DO NOTHING",
                   (event.originator_id, event.turn_id, str(event.room_id),
                    str(trigger.get("by") or NOBODY)))

    @apply.register
    def _(self, event: Agent.ModelCalled, tx: Tx) -> None:
        tx.execute(INSERT_CALL, {
            "position": tx.position, "day": event.timestamp.astimezone(UTC).date(),
            "agent": event.originator_id, "turn": event.turn_id, "provider": event.provider,
            "model": event.model, "input": int(event.input_tokens),
            "output": int(event.output_tokens), "cost": float(event.cost_usd),
            "latency": float(event.latency_ms), "fallback": event.fallback_from is not None})

    @apply.register
    def _(self, event: Agent.ToolExecuted, tx: Tx) -> None:
        tx.execute(INSERT_TOOL, {
            "position": tx.position, "day": event.timestamp.astimezone(UTC).date(),
            "agent": event.originator_id, "turn": event.turn_id, "tool": event.tool,
            "status": event.status, "duration": float(event.duration_ms)})

    @apply.register
    def _(self, event: Agent.GuardrailFlagged, tx: Tx) -> None:
        tx.execute(INSERT_GUARD, {
            "position": tx.position, "day": event.timestamp.astimezone(UTC).date(),
            "agent": event.originator_id, "turn": event.turn_id, "room": str(event.room_id),
            "direction": event.direction, "source": event.source, "check": event.check,
            "action": event.action})

    @apply.register
    def _(self, event: Agent.TurnCompleted, tx: Tx) -> None:
        # Model and tool calls only happen in open turns: a closed turn is never looked up.
        tx.execute("DELETE FROM {s}.turns WHERE agent_id = %s AND turn_id = %s",
                   (event.originator_id, event.turn_id))

    @apply.register
    def _(self, event: Agent.TurnFailed, tx: Tx) -> None:
        tx.execute("DELETE FROM {s}.turns WHERE agent_id = %s AND turn_id = %s",
                   (event.originator_id, event.turn_id))


# -- queries ---------------------------------------------------------------------------------

DIMENSIONS = ("agent", "room", "user_name", "model")


def usage(reader: Queries, since: str | None = None) -> list[dict[str, Any]]:
    """Calls, tokens and cost per day, agent, room, user, provider and model."""
    where, params = _since(since)
    return reader.rows(
        "SELECT day::text AS day, agent, room, user_name, provider, model, count(*) AS calls, "
        "sum(input_tokens) AS input_tokens, sum(output_tokens) AS output_tokens, "
        "sum(cost_usd) AS cost_usd, sum(CASE WHEN fallback THEN 1 ELSE 0 END) AS fallbacks "
        f"FROM {{s}}.model_calls {where} "
        "GROUP BY day, agent, room, user_name, provider, model "
        "ORDER BY day, agent, room, user_name, provider, model", params)


def latency(reader: Queries, dimension: str, since: str | None = None) -> list[dict[str, Any]]:
    """Latency p50 and p95 (ms) of model calls per day and one of agent, room, user, model."""
    if dimension not in DIMENSIONS:
        raise ValueError(f"dimension is one of {DIMENSIONS}")
    where, params = _since(since)
    return reader.rows(
        f"SELECT day::text AS day, {dimension} AS key, count(*) AS calls, "
        "percentile_cont(0.5) WITHIN GROUP (ORDER BY latency_ms) AS p50, "
        "percentile_cont(0.95) WITHIN GROUP (ORDER BY latency_ms) AS p95 "
        f"FROM {{s}}.model_calls {where} GROUP BY day, {dimension} ORDER BY day, key", params)


def tools(reader: Queries, since: str | None = None) -> list[dict[str, Any]]:
    """Tool calls per day, agent, room, user, tool and status."""
    where, params = _since(since)
    return reader.rows(
        "SELECT day::text AS day, agent, room, user_name, tool, status, count(*) AS calls "
        f"FROM {{s}}.tool_calls {where} GROUP BY day, agent, room, user_name, tool, status "
        "ORDER BY day, agent, room, user_name, tool, status", params)


def tool_success(reader: Queries, dimension: str, since: str | None = None
                 ) -> list[dict[str, Any]]:
    """Share of tool calls that succeeded (status ``ok``) per day and one dimension."""
    if dimension not in DIMENSIONS[:3]:
        raise ValueError(f"dimension is one of {DIMENSIONS[:3]}")
    where, params = _since(since)
    return reader.rows(
        f"SELECT day::text AS day, {dimension} AS key, count(*) AS calls, "
        "avg(CASE WHEN status = 'ok' THEN 1.0 ELSE 0.0 END) AS ratio "
        f"FROM {{s}}.tool_calls {where} GROUP BY day, {dimension} ORDER BY day, key", params)


def guard_verdicts(reader: Queries, since: str | None = None) -> list[dict[str, Any]]:
    """Guardrail verdicts per day, agent, room, user, direction, source, check and action."""
    where, params = _since(since)
    return reader.rows(
        "SELECT day::text AS day, agent, room, user_name, direction, source, check_name, "
        f"action, count(*) AS verdicts FROM {{s}}.guard_verdicts {where} "
        "GROUP BY day, agent, room, user_name, direction, source, check_name, action "
        "ORDER BY day, agent, room, user_name, direction, source, check_name, action", params)


def _since(since: str | None) -> tuple[str, list[Any]]:
    return ("WHERE day >= %s::date", [since]) if since else ("", [])
