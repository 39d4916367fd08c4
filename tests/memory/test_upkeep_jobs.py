"""Memory upkeep as jobs on the real stack: scheduled passes run once per job id and merge and
forget by the agent's rules, a reflection asks for a pass, ``salon agents memory --upkeep``
runs one for owners only, and ``/metrics`` counts them."""

from __future__ import annotations

import re
import urllib.error
import urllib.request
from typing import Any

from click.testing import CliRunner

from actors.upkeep import UpkeepJobs
from domain.memories import memory_stream_id
from infra import upkeep
from infra.jobs import Worker
from infra.memories import MemoryStore
from infra.store import EventStore
from salon.cli import main
from salon.client import SalonClient
from salon.platform import Platform, Running
from tests.projections.conftest import wait_until

RULES = {"consolidate_above": 0.95, "forget_below": 0.5, "reflection": False}
KEY = "The greenhouse key hangs on the hook by the door."
NEAR = "The greenhouse key hangs on the hook by the door"


def _client(salon: Running, token: str | None = None) -> SalonClient:
    return SalonClient(salon.ws_url, token or salon.admin_token)


def _agent_with_memories(client: SalonClient, agent: str, memory: dict[str, Any]) -> dict[str,
                                                                                           str]:
    """An agent with a memory, its near-duplicate, a trivial one and a distinct one."""
    client.request({"type": "create_agent", "definition": {"name": agent, "memory": memory}})
    ids = {}
    for label, content, rating in (("key", KEY, 8), ("near", NEAR, 3),
                                   ("trivial", "someone sneezed", 1),
                                   ("boiler", "The boiler's reset button is red.", 9)):
        ids[label] = client.request({"type": "add_memory", "agent": agent, "content": content,
                                     "importance": rating})["memory_id"]
    return ids


def _stored(memories: MemoryStore, agent: str) -> set[str]:
    return {m.memory_id for m in memories.memories(agent, limit=100)}


def _metrics_text(salon: Running) -> str | None:
    url = f"{salon.http_url}metrics?token={salon.admin_token}"
    try:
        with urllib.request.urlopen(url, timeout=30) as answer:  # noqa: S310 - our gateway
            return str(answer.read().decode())
    except urllib.error.HTTPError as error:
        if error.code == 503:  # the read models are still being built after start-up
            return None
        raise


def _metric(salon: Running, sample: str) -> float:
    text = wait_until(lambda: _metrics_text(salon), "the metrics page to answer")
    found = re.search(rf"^{re.escape(sample)} (\S+)$", text, re.MULTILINE)
    return float(found.group(1)) if found else 0.0


def _kinds(events: EventStore, agent: str) -> list[str]:
    return [type(e).__name__ for e in events.events(memory_stream_id(agent))]


def test_a_scheduled_job_enqueued_twice_runs_once_and_merges_and_forgets_by_the_rules(
        platform: Platform, salon: Running, name: str) -> None:
    settings = salon.settings
    assert settings.redis_url and settings.database_url and platform.store
    agent = f"{name}-keeper"
    memories = MemoryStore(settings.database_url, max_size=1)
    queue = upkeep.open_queue(settings.redis_url, prefix=f"test:{name}")
    runs_before = _metric(salon, 'salon_memory_upkeep_runs_total{trigger="schedule"}')
    with _client(salon) as admin:
        ids = _agent_with_memories(admin, agent, RULES)
    try:
        wait_until(lambda: _stored(memories, agent) == set(ids.values()),
                   "the memory projection to hold the four memories")
        schedule = upkeep.Schedule(queue, memories, 3600)
        start = 1_000_000 * 3600.0
        assert schedule.plan(now=start, only={agent}) == [], "first seen: due a period later"
        assert schedule.plan(now=start + 1800, only={agent}) == []
        [job_id] = schedule.plan(now=start + 3600, only={agent})
        assert job_id == upkeep.scheduled_id(agent, 1_000_001)
        assert upkeep.enqueue(queue, agent, "schedule", job_id) == job_id  # asked twice
        assert schedule.plan(now=start + 3601, only={agent}) == [], "not due again yet"

        worker = Worker(queue, UpkeepJobs(settings, platform.store).handlers)
        wait_until(lambda: worker.work_once(block=0.05) or
                   queue.get(job_id).status == "completed", "the upkeep job to complete")
        assert worker.work_once() == 0, "the second ask added nothing to run"
        job = queue.get(job_id)
        assert (job.completions, job.attempts) == (1, 1)
        assert job.result == {"agent": agent, "merged": 1, "forgotten": 1, "past_retention": 0,
                              "more": False}
        kinds = _kinds(platform.store, agent)
        assert kinds.count("MemoriesMerged") == 1 and kinds.count("MemoriesForgotten") == 1
        wait_until(lambda: _stored(memories, agent) == {ids["key"], ids["boiler"]},
                   "the projection to drop the merged and the forgotten memory")
        assert memories.memory(agent, ids["key"]).importance == 0.8, "the keeper keeps its own"
        assert _metric(salon, 'salon_memory_upkeep_runs_total{trigger="schedule"}') >= \
            runs_before + 1
        assert _metric(salon, 'salon_memory_upkeep_memories_total{action="merged"}') >= 1
    finally:
        queue.close()
        memories.close()


def test_an_upkeep_job_for_an_unknown_agent_fails_with_a_clear_error(
        platform: Platform, salon: Running, name: str) -> None:
    settings = salon.settings
    assert settings.redis_url
    queue = upkeep.open_queue(settings.redis_url, prefix=f"test:{name}", max_attempts=1)
    try:
        job_id = upkeep.enqueue(queue, f"{name}-ghost", "schedule", "ghost")
        worker = Worker(queue, UpkeepJobs(settings, platform.store).handlers)
        wait_until(lambda: worker.work_once(block=0.05) or
                   queue.get(job_id).status == "failed", "the job to fail")
        assert "does not exist" in queue.get(job_id).error
        queue.enqueue(upkeep.KIND, {"agent": "../../etc", "trigger": "schedule"}, "bad")
        wait_until(lambda: worker.work_once(block=0.05) or
                   queue.get("bad").status == "failed", "the malformed job to fail")
        assert "not valid" in queue.get("bad").error
    finally:
        queue.close()


def test_the_cli_runs_upkeep_for_the_owner_and_refuses_others(
        platform: Platform, salon: Running, name: str) -> None:
    settings = salon.settings
    assert settings.database_url
    agent, owner, eve = f"{name}-fern", f"{name}-olga", f"{name}-eve"
    with _client(salon) as admin:
        tokens = {who: admin.request({"type": "create_token", "user": who})["token"]
                  for who in (owner, eve)}
    with _client(salon, tokens[owner]) as mine:
        ids = _agent_with_memories(mine, agent, RULES)
    memories = MemoryStore(settings.database_url, max_size=1)
    runner = CliRunner()

    def cli(token: str, *args: str) -> Any:
        return runner.invoke(main, ["agents", "memory", *args],
                             env={"SALON_URL": salon.ws_url, "SALON_TOKEN": token})

    try:
        wait_until(lambda: _stored(memories, agent) == set(ids.values()),
                   "the memory projection to hold the four memories")
        before = _metric(salon, 'salon_memory_upkeep_runs_total{trigger="manual"}')
        refused = cli(tokens[eve], agent, "--upkeep")
        assert refused.exit_code == 4, refused.output
        assert f"only the owner of agent {agent!r}" in refused.output
        assert "MemoriesMerged" not in _kinds(platform.store, agent)  # type: ignore[arg-type]
        missing = cli(tokens[owner], f"{name}-nobody", "--upkeep")
        assert missing.exit_code == 3 and "does not exist" in missing.output
        both = cli(tokens[owner], agent, "--upkeep", "--delete", ids["key"])
        assert both.exit_code == 2 and "one of" in both.output

        done = cli(tokens[owner], agent, "--upkeep")
        assert done.exit_code == 0, done.output
        assert "merged 1, forgot 1 (decayed) and 0 (past retention)" in done.output
        assert f"merged  {ids['near']} {NEAR!r} into {ids['key']}" in done.output
        assert f"forgot  {ids['trivial']} 'someone sneezed' (decayed" in done.output
        again = cli(tokens[owner], agent, "--upkeep")
        assert again.exit_code == 0 and "merged 0, forgot 0" in again.output, \
            "decisions the projection has yet to apply are not made twice"
        assert _metric(salon, 'salon_memory_upkeep_runs_total{trigger="manual"}') == before + 2
    finally:
        memories.close()


def test_a_reflection_asks_for_an_upkeep_job_that_the_job_host_runs(
        salon: Running, name: str) -> None:
    settings = salon.settings
    assert settings.database_url and settings.redis_url
    agent, room = f"{name}-sage", f"{name}-porch"
    memories = MemoryStore(settings.database_url, max_size=1)
    queue = upkeep.open_queue(settings.redis_url)
    with _client(salon) as admin:
        admin.request({"type": "create_agent", "definition": {
            "name": agent, "script": ["noted"],
            "memory": {"reflection": True, "reflection_threshold": 1, "facts": False}}})
        admin.request({"type": "create_room", "name": room})
        admin.request({"type": "add_agent", "room": room, "agent": agent})
        for text in ("The tomatoes need water every morning.",
                     "The shed roof leaks when it rains hard."):
            admin.request({"type": "say", "room": room, "text": text})
        try:
            wait_until(lambda: memories.count(agent) >= 2,
                       "the agent's memories of what it heard")
            turn = admin.request({"type": "invoke", "room": room, "agent": agent})
            job_id = upkeep.reflection_id(agent, turn["turn_id"])

            def finished() -> str | None:
                try:
                    status = queue.get(job_id).status
                except Exception:  # noqa: BLE001 - NotFound until the turn reflected
                    return None
                return status if status in ("completed", "failed") else None

            assert wait_until(finished, "the upkeep job after the reflection to run",
                              timeout=120) == "completed", queue.get(job_id).error
            job = queue.get(job_id)
            assert job.payload == {"agent": agent, "trigger": "reflection"}
            assert job.result["agent"] == agent and job.completions == 1
        finally:
            queue.close()
            memories.close()
