"""Metrics: /metrics parses as Prometheus text and its totals are the sums over the log."""

from __future__ import annotations

import json

import psycopg
import pytest
from prometheus_client.parser import text_string_to_metric_families

from domain.agents import Agent, AgentDefinition
from infra.store import EventStore
from projections import exposition
from projections.metrics import Metrics
from projections.runner import Runner
from projections.views import Reader


def _turns(store: EventStore, name: str) -> None:
    """Two agents, three turns, five model calls (one a fallback) and three tool calls."""
    for agent_name, room, user, calls in ((f"{name}-a", f"{name}-r1", "alice",
                                           [(100, 10, 0.001, 20.0), (200, 20, 0.002, 40.0)]),
                                          (f"{name}-b", f"{name}-r2", "bob",
                                           [(50, 5, 0.0005, 10.0), (60, 6, 0.0006, 90.0),
                                            (70, 7, 0.0007, 30.0)])):
        agent = Agent.define(AgentDefinition(name=agent_name))
        agent.start_turn("t1", room, {"kind": "mention", "position": 3, "by": user})
        for n, (tokens_in, tokens_out, cost, latency) in enumerate(calls):
            agent.record_model_call("t1", "openai" if n else "scripted", f"m{n % 2}", {}, {},
                                    tokens_in, tokens_out, cost, latency,
                                    fallback_from="scripted" if n == 2 else None)
        agent.record_tool_call("t1", "calculator", {}, "4", "ok", 1.0)
        agent.record_tool_call("t1", "http_get", {}, "no", "refused" if n else "ok", 1.0)
        agent.complete_turn("t1", None)
        store.save(agent.collect_events())


def test_metrics_text_parses_and_its_totals_are_the_sums_over_model_called(
        platform, database_url: str, schema: str, name: str) -> None:
    _turns(platform.store, name)
    runner = Runner(Metrics, database_url, schema).start()
    reader = Reader(database_url, schema)
    try:
        runner.wait_for()
        runner.stop()
        text = exposition.render(exposition.agent_families(reader))
        families = {f.name: f for f in text_string_to_metric_families(text)}

        with psycopg.connect(database_url) as conn:
            states = [json.loads(bytes(s)) for (s,) in conn.execute(
                "SELECT state FROM salon_events WHERE topic = %s AND notification_id <= %s",
                ("domain.agents:Agent.ModelCalled", runner.position()))]
        tokens = sum(s["input_tokens"] + s["output_tokens"] for s in states)
        cost = sum(s["cost_usd"] for s in states)
        samples = families["salon_model_tokens"].samples
        assert sum(s.value for s in samples) == tokens
        assert sum(s.value for s in families["salon_model_cost_usd"].samples) == \
            pytest.approx(cost, rel=1e-9)
        assert sum(s.value for s in families["salon_model_calls"].samples) == len(states)

        mine = [s for s in samples if s.labels["agent"] == f"{name}-b"]
        assert {(s.labels["room"], s.labels["user"], s.labels["direction"]) for s in mine} == \
            {(f"{name}-r2", "bob", "input"), (f"{name}-r2", "bob", "output")}
        assert sum(s.value for s in mine if s.labels["direction"] == "input") == 180
        assert sum(s.value for s in families["salon_model_fallbacks"].samples
                   if s.labels["agent"] == f"{name}-b") == 1

        latency = {(s.labels["quantile"]): s.value
                   for s in families["salon_model_latency_ms"].samples
                   if s.labels["by"] == "agent" and s.labels["key"] == f"{name}-b"}
        assert latency == {"0.5": 30.0, "0.95": pytest.approx(84.0)}
        success = [s.value for s in families["salon_tool_success_ratio"].samples
                   if s.labels["by"] == "user" and s.labels["key"] == "bob"]
        assert success == [0.5]
    finally:
        reader.close()
        runner.close()
