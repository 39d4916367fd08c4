"""Metrics from recorded events, timers and names: pure functions, no servers."""

from __future__ import annotations

from typing import Any

from simulations.clock import AGENT_EPOCH, Timer, VirtualClock
from simulations.measures import Lexicon
from simulations.metrics import run_metrics, spread, summarize, transcripts
from simulations.naming import Naming

T0 = "2026-01-01T10:00:00+00:00"


def at(seconds: float) -> str:
    return f"2026-01-01T10:00:{seconds:06.3f}+00:00"


def message(position: int, author: str, kind: str, text: str, t: float) -> dict[str, Any]:
    return {"position": position, "t": t, "author": author, "kind": kind, "text": text,
            "message_id": f"m{position}", "at": at(position)}


def turn(turn_id: str, room: str, position: int | None, events: list[dict[str, Any]],
         message_id: str | None) -> list[dict[str, Any]]:
    started = {"kind": "turn_started", "turn_id": turn_id, "room_id": room, "at": at(1),
               "trigger": {"kind": "mention" if position else "invoke", "position": position}}
    end = {"kind": "turn_completed", "turn_id": turn_id, "message_id": message_id} \
        if message_id else {"kind": "turn_failed", "turn_id": turn_id, "error": "boom"}
    return [started, *({**e, "turn_id": turn_id} for e in events), end]


def model(tokens_in: int, tokens_out: int, cost: float, latency: float) -> dict[str, Any]:
    return {"kind": "model_called", "input_tokens": tokens_in, "output_tokens": tokens_out,
            "cost_usd": cost, "latency_ms": latency}


def test_a_run_is_measured_from_its_events() -> None:
    room = {"room": "hall", "name": "r-1-hall", "stop": "turns", "stop_detail": "",
            "virtual_seconds": 120.0, "steps": 4,
            "transcript": [message(2, "cy", "human", "Shall we agree?", 0.0),
                           message(3, "ada", "agent", "Yes, I agree.", 0.0),
                           message(4, "bo", "agent", "I disagree.", 60.0),
                           message(5, "ada", "agent", "Fair enough.", 120.0)],
            "stamps": {str(p): at(p) for p in range(1, 6)}}
    tool = {"kind": "tool_executed", "tool": "calculator", "status": "ok"}
    agents = {
        "ada": [*turn("t1", "r-1-hall", 2, [model(100, 10, 0.01, 50.0), tool], "m3"),
                *turn("t2", "r-1-hall", None, [model(120, 12, 0.02, 70.0)], "m5"),
                *turn("t3", "elsewhere", 9, [model(5, 5, 9.0, 1.0)], "m9")],
        "bo": [*turn("t4", "r-1-hall", 3, [model(80, 8, 0.0, 30.0)], "m4"),
               *turn("t5", "r-1-hall", 4, [], None)],
    }
    memories = {"ada": [{"kind": "memory_recorded"}, {"kind": "reflection_recorded"},
                        {"kind": "memories_forgotten", "memory_ids": ["x"]}]}
    metrics = run_metrics([room], agents, memories, {"r-1-hall": "hall"},
                          Lexicon.named("agreement"))
    ada, bo = metrics["agents"]["ada"], metrics["agents"]["bo"]
    assert (ada["messages"], bo["messages"]) == (2, 1)
    assert round(ada["share"] + bo["share"], 9) == 1.0
    assert (ada["turns"], ada["input_tokens"], ada["output_tokens"]) == (2, 220, 22)
    assert round(ada["cost_usd"], 6) == 0.03
    assert ada["tools"] == {"calculator": {"ok": 1}} and ada["tool_calls"] == 1
    assert ada["model_latency_ms"]["mean"] == 60.0
    # From the mention at position 2 (second 2) to the reply (second 3): one second.
    assert ada["reply_latency_ms"]["min"] == 1000.0
    assert ada["triggers"] == {"invoke": 1, "mention": 1}
    assert ada["memory"]["growth"] == 1 and metrics["agents"]["bo"]["memory"]["growth"] == 0
    assert (bo["failed_turns"], bo["errors"]) == (1, ["boom"])
    assert ada["score_mean"] == 1.0 and bo["score_mean"] == -1.0
    hall = metrics["rooms"]["hall"]
    assert hall["speakers"] == {"ada": 2, "bo": 1} and hall["human_messages"] == 1
    assert metrics["totals"]["agent_turns"] == 3 and metrics["totals"]["failed_turns"] == 1
    assert transcripts(metrics)["hall"][1] == ("ada", "Yes, I agree.")
    assert metrics["warnings"] == []


def test_two_agents_answering_one_message_are_reported() -> None:
    room = {"room": "hall", "name": "r-hall", "stop": "exhausted", "virtual_seconds": 0,
            "steps": 1, "transcript": [message(2, "cy", "human", "@ada @bo hi", 0.0),
                                       message(3, "ada", "agent", "hi", 0.0),
                                       message(4, "bo", "agent", "hello", 0.0)],
            "stamps": {}}
    agents = {"ada": turn("t1", "r-hall", 2, [], "m3"), "bo": turn("t2", "r-hall", 2, [], "m4")}
    metrics = run_metrics([room], agents, {}, {"r-hall": "hall"}, Lexicon.named("agreement"))
    [warning] = metrics["warnings"]
    assert "position 2 set off 2 agents at once (ada, bo)" in warning


def test_summaries_fold_repetitions() -> None:
    runs = [{"totals": {"agent_turns": n, "human_messages": 0, "failed_turns": 0,
                        "input_tokens": 0, "output_tokens": 0, "cost_usd": 0.0,
                        "tool_calls": 0, "memory_growth": 0, "score_mean": 0.0,
                        "virtual_seconds": 60.0, "reply_latency_ms": 1.0,
                        "stops": {"turns": 1}}} for n in (4, 6)] + [{}]
    summary = summarize(runs)
    assert summary["runs"] == 3 and summary["finished"] == 2
    assert summary["totals"]["agent_turns"]["mean"] == 5.0
    assert summary["stops"] == {"turns": 2}
    assert spread([])["count"] == 0 and spread([2.0])["p95"] == 2.0


def test_timers_mirror_the_agents_rules() -> None:
    idle = Timer("ada", idle_after=600.0, every=None)
    assert idle.due(last_event_at=100.0, last_position=5, last_author="bo") == 700.0
    assert idle.due(100.0, 5, "ada") is None, "it spoke last"
    idle.ticked(700.0, 5, "bo")
    assert idle.due(100.0, 5, "bo") is None, "it woke the room at this position already"
    assert idle.due(800.0, 6, "bo") == 1400.0
    schedule = Timer("bell", idle_after=None, every=3600.0)
    assert schedule.due(0.0, 1, None) is None, "no baseline yet"
    schedule.ticked(0.0, 1, None)
    due = schedule.due(0.0, 1, None)
    assert due is not None and 3600.0 < due < 3600.1
    clock = VirtualClock()
    clock.advance(90.0)
    clock.advance(30.0)
    assert clock.now == 90.0 and clock.agent_time() == AGENT_EPOCH + 90.0


def test_names_are_the_runs_and_read_back_plain() -> None:
    names = Naming("sim-ab12cd-3", ["pro", "con", "moderator"])
    assert names.room("stage") == "sim-ab12cd-3-stage"
    text = "Thank you. @con, then pro; pros and cons, pro-active, Pro?"
    rewritten = names.rewrite(text)
    assert rewritten == ("Thank you. @sim-ab12cd-3-con, then sim-ab12cd-3-pro; pros and cons, "
                         "pro-active, sim-ab12cd-3-Pro?")
    assert names.plain(rewritten) == text
