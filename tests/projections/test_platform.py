"""The running Salon: projections and the job worker started with it, /metrics and the admin
pages served by its gateway, the `salon` CLI reading them, quotas checked on a person's post."""

from __future__ import annotations

import json
import urllib.request
from collections.abc import Iterator
from typing import Any

import psycopg
import pytest
from click.testing import CliRunner
from prometheus_client.parser import text_string_to_metric_families

from domain.agents import Agent, AgentDefinition
from domain.errors import NotFound
from domain.rooms import Room
from infra.jobs import JobQueue
from projections import quotas
from projections.digests import plan
from projections.quotas import Limits
from projections.registry import PROJECTIONS
from projections.service import DIGESTS, ProjectionSettings
from projections.views import Reader
from salon.cli import main
from salon.platform import Platform, Running
from tests.clients import Client
from tests.projections.conftest import wait_until


def _get(url: str) -> tuple[int, str, bytes]:
    with urllib.request.urlopen(url, timeout=30) as answer:  # noqa: S310 - our own gateway
        return answer.status, answer.headers["Content-Type"], answer.read()


@pytest.fixture
def cli(salon: Running) -> Iterator[Any]:
    """``salon ARGS…`` as a user types it, against the session's running Salon."""
    runner = CliRunner()
    env = {"SALON_URL": salon.http_url, "SALON_TOKEN": salon.admin_token}

    def run(*args: str) -> Any:
        return runner.invoke(main, list(args), env=env)

    yield run


def _caught_up(cli: Any, target: int) -> list[dict[str, str]] | str:
    """The rows of `salon projections status` once every projection runs and has applied the
    log up to ``target`` (later events, other tests' or the job worker's, may be pending)."""
    result = cli("projections", "status")
    assert result.exit_code == 0, result.output
    header, *lines = result.output.splitlines()
    rows = [dict(zip(header.lower().split(), line.split(), strict=False)) for line in lines]
    done = [r for r in rows if r.get("state") == "running"
            and (r["pending"] == "0" or int(r["position"]) >= target)]
    if len(done) == len(rows) == len(PROJECTIONS):
        return rows
    print(result.output)  # shown when the wait fails: where each projection stands
    return ""


def _status(queue: JobQueue, job_id: str) -> str | None:
    try:
        return queue.get(job_id).status
    except NotFound:
        return None


def _head(database_url: str) -> int:
    with psycopg.connect(database_url) as conn:
        row = conn.execute("SELECT max(notification_id) FROM salon_events").fetchone()
    return int(row[0] or 0) if row else 0


def test_the_running_salon_serves_metrics_audit_threads_and_jobs(
        platform: Platform, salon: Running, cli: Any, name: str) -> None:
    store = platform.store
    assert store is not None
    bot = f"{name}-bot"
    agent = Agent.define(AgentDefinition(name=bot), owner_id="alice")
    agent.start_turn("t1", name, {"kind": "mention", "position": 2, "by": "alice"})
    agent.record_model_call("t1", "scripted", "echo", {"positions": [2]}, {"text": "hi"},
                            321, 12, 0.125, 15.0)
    agent.complete_turn("t1", None)
    store.save(agent.collect_events())
    room = Room.create(name, "alice")
    for text in ("How deep should tomato pots be?", "At least thirty centimetres.",
                 "Thanks, deep pots it is."):
        room.post("alice", text)
    store.save(room.collect_events())

    assert salon.settings.database_url
    target = _head(salon.settings.database_url)
    wait_until(lambda: _caught_up(cli, target), "every projection of the platform to catch up",
               timeout=120)

    status, kind, body = _get(f"{salon.http_url}metrics?token={salon.admin_token}")
    assert status == 200 and kind.startswith("text/plain; version=0.0.4")
    families = {f.name: f for f in text_string_to_metric_families(body.decode())}
    position = {s.labels["projection"]: int(s.value)
                for s in families["salon_projection_position"].samples}["metrics"]
    with psycopg.connect(platform.running.settings.database_url) as conn:  # type: ignore[union-attr]
        states = [json.loads(bytes(s)) for (s,) in conn.execute(
            "SELECT state FROM salon_events WHERE topic = %s AND notification_id <= %s",
            ("domain.agents:Agent.ModelCalled", position))]
    assert sum(s.value for s in families["salon_model_tokens"].samples) == \
        sum(s["input_tokens"] + s["output_tokens"] for s in states)
    assert sum(s.value for s in families["salon_model_cost_usd"].samples) == \
        pytest.approx(sum(s["cost_usd"] for s in states), rel=1e-9)
    mine = [s for s in families["salon_model_tokens"].samples if s.labels["agent"] == bot]
    assert {(s.labels["room"], s.labels["user"], s.labels["model"]) for s in mine} == \
        {(name, "alice", "echo")}

    assert _get(f"{salon.http_url}admin/audit")[2].startswith(b"<!doctype html>")
    assert b"/admin/audit" in _get(salon.http_url)[2]  # the chat page links admins to it
    result = cli("audit", "--agent", bot, "--action", "model_called")
    assert result.exit_code == 0 and "model:scripted/echo" in result.output, result.output
    def all_eight() -> list[str] | None:
        result = cli("audit", "--room", name, "export", "--format", "jsonl")
        assert result.exit_code == 0, result.output
        actions = [json.loads(line)["action"] for line in result.output.splitlines()]
        return actions if len(actions) >= 8 else None

    # Every entry first, then their order (a loaded machine may show the audit a moment late).
    actions = wait_until(all_eight, "the room's eight audit entries", timeout=60)
    assert actions == ["turn_started", "model_called", "turn_completed", "room_created",
                       "member_joined", "message_posted", "message_posted", "message_posted"]
    result = cli("audit", "verify")
    assert result.exit_code == 0 and result.output.startswith("ok: "), result.output

    # The job worker started with the platform makes the title; the threads view shows it.
    settings = salon.settings
    config = ProjectionSettings()
    assert settings.database_url and settings.redis_url
    reader = Reader(settings.database_url, config.schema("threads"))
    queue = JobQueue(settings.redis_url, DIGESTS, prefix=config.jobs_prefix)
    try:
        # The platform's worker plans every few seconds and may have been first: either way
        # the one title job of this room completes.
        plan(reader, queue, rooms=[name])
        wait_until(lambda: _status(queue, f"title:{name}") == "completed", "the title job")
    finally:
        queue.close()
        reader.close()
    wait_until(lambda: "How deep should tomato pots be?" in cli("threads", "show", name).output,
               "the generated title in the threads view")
    result = cli("threads", "search", "tomato pots", "--room", name)
    assert result.exit_code == 0 and "How deep should tomato pots be?" in result.output
    result = cli("threads", "archive", name)
    assert result.exit_code == 0 and result.output.strip() == f"archived {name}"
    wait_until(lambda: name in cli("threads", "list", "--archived").output,
               "the archived thread among archived ones")
    assert name not in cli("threads", "list", "--limit", "10000").output
    result = cli("jobs")
    assert result.exit_code == 0 and "completed:" in result.output, result.output
    assert cli("projections", "rebuild", "nope").exit_code == 3


async def test_a_persons_post_past_a_quota_gets_a_clear_error(
        platform: Platform, salon: Running, name: str) -> None:
    assert salon.settings.database_url
    guard = quotas.guard(salon.settings.database_url)
    limits = guard.quotas.limits
    client = await Client.open(salon.ws_url, salon.admin_token)
    try:
        await client.ok({"type": "create_room", "name": name})
        await client.ok({"type": "say", "room": name, "text": "x" * 40})
        reader = Reader(salon.settings.database_url, ProjectionSettings().schema("threads"))
        try:
            wait_until(lambda: reader.rows("SELECT 1 FROM {s}.messages m JOIN {s}.threads t "
                                           "USING (room_id) WHERE t.name = %s", (name,)),
                       "the threads view to see the first message", timeout=120)
        finally:
            reader.close()
        guard.quotas.limits = Limits(thread_messages=1)
        full = await client.request({"type": "say", "room": name, "text": "one more"})
        assert (full["type"], full["code"]) == ("error", "conflict"), full
        assert f"room {name!r} is full: it holds 1 messages" in full["message"]
        guard.quotas.limits = Limits(thread_messages=None, user_bytes=10**9,
                                     user_messages=None, thread_bytes=50)
        big = await client.request({"type": "say", "room": name, "text": "y" * 11})
        assert (big["type"], big["code"]) == ("error", "conflict"), big
        assert "past its limit of 50" in big["message"]
        guard.quotas.limits = limits
        await client.ok({"type": "say", "room": name, "text": "fits again"})
    finally:
        guard.quotas.limits = limits
        await client.close()
