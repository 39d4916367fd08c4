"""Running calls: allow list, permissions, validation, timeouts, output caps; never raising."""

from __future__ import annotations

import asyncio
import json
import os
from datetime import UTC, datetime, timedelta
from typing import Any

from pydantic import BaseModel

from domain.errors import Forbidden
from tools import MemoryToolCache, ToolContext, ToolExecutor, ToolRegistry, tool


@tool(timeout=0.05)
async def forever() -> str:
    """Wait for something that never happens."""
    await asyncio.Event().wait()
    return "unreachable"


@tool(max_output_chars=100)
def chatter(size: int) -> str:
    """Say a lot."""
    return "x" * size


@tool
def broken() -> str:
    """Fail the way buggy code does."""
    raise KeyError("oops")


@tool(permissions={"network", "money"})
def spend(amount: int) -> str:
    """Spend money over the network."""
    return f"spent {amount}"


@tool
def lookup(key: str) -> dict[str, Any]:
    """Look a key up."""
    return {"key": key, "found": True}


@tool
def noisy(ctx: ToolContext) -> dict[str, Any]:
    """Print, then say where and when this ran."""
    print("a tool's print() must not corrupt the worker's replies")
    return {"pid": os.getpid(), "now": ctx.clock().isoformat(), "agent": ctx.agent,
            "members": ctx.list_members is None}


@tool(timeout=0.2)
def stuck() -> str:
    """Never return."""
    while True:
        pass


@tool
def quits() -> str:
    """End the process it runs in."""
    os._exit(3)


def executor(*allowed: str, permissions: tuple[str, ...] = (), **kwargs: Any) -> ToolExecutor:
    registry = ToolRegistry([forever, chatter, broken, spend, lookup, noisy, stuck, quits])
    return ToolExecutor(registry, allowed=allowed, permissions=permissions, **kwargs)


async def test_a_tool_outside_the_allow_list_is_refused(ctx: ToolContext) -> None:
    outcome = await executor("chatter", "lookup").execute("broken", {}, ctx)
    assert outcome.status == "refused"
    assert outcome.result == ("tool 'broken' is not on this agent's allow list; "
                              "use one of: chatter, lookup")


async def test_a_tool_needing_a_permission_not_granted_is_refused(ctx: ToolContext) -> None:
    outcome = await executor("spend", permissions=("network",)).execute(
        "spend", {"amount": 3}, ctx)
    assert outcome.status == "refused"
    assert "needs the permission(s) money" in outcome.result
    granted = await executor("spend", permissions=("network", "money")).execute(
        "spend", {"amount": 3}, ctx)
    assert (granted.status, granted.result) == ("ok", "spent 3")


async def test_an_allowed_tool_that_is_not_installed_is_an_error(ctx: ToolContext) -> None:
    outcome = await executor("lookup", "teleport").execute("teleport", {}, ctx)
    assert outcome.status == "error"
    assert "'teleport' is allowed but not installed" in outcome.result


async def test_specs_offer_only_allowed_and_permitted_tools() -> None:
    names = [s["name"] for s in executor("spend", "lookup", "nope").specs()]
    assert names == ["lookup"]


async def test_invalid_arguments_come_back_readable(ctx: ToolContext) -> None:
    outcome = await executor("chatter").execute("chatter", {"size": "big", "loud": 1}, ctx)
    assert outcome.status == "error"
    assert outcome.result == (
        "invalid arguments for chatter: 'size': Input should be a valid integer, unable to "
        "parse string as an integer (got 'big'); 'loud' is not a parameter of this tool. "
        "Expected parameters: size (integer, required). Call it again with corrected arguments.")
    not_object = await executor("chatter").execute("chatter", "size=3", ctx)
    assert not_object.status == "error" and "must be a JSON object, not str" in not_object.result


async def test_a_slow_tool_times_out(ctx: ToolContext) -> None:
    outcome = await executor("forever").execute("forever", {}, ctx)
    assert outcome.status == "timeout"
    assert outcome.result == ("forever did not finish within 0.05 s and was stopped; "
                              "try a smaller request")


async def test_a_sync_tool_runs_in_a_worker_process_with_a_frozen_clock() -> None:
    async def members() -> list[dict[str, Any]]:
        return []

    noon = datetime(2024, 5, 1, 12, 0, tzinfo=UTC)
    ctx = ToolContext(agent="ada", room="lobby", clock=lambda: noon, list_members=members)
    outcome = await executor("noisy").execute("noisy", {}, ctx)
    assert outcome.status == "ok", outcome.result
    ran = json.loads(outcome.result)
    assert ran["pid"] != os.getpid()
    assert ran == {"pid": ran["pid"], "now": "2024-05-01T12:00:00+00:00", "agent": "ada",
                   "members": True}  # async room access does not cross the process


async def test_a_stuck_sync_tool_is_stopped_and_the_next_call_works(ctx: ToolContext) -> None:
    tools = executor("stuck", "lookup")
    outcome = await tools.execute("stuck", {}, ctx)
    after = await tools.execute("lookup", {"key": "k"}, ctx)
    assert outcome.status == "timeout" and "did not finish within 0.2 s" in outcome.result
    assert after.status == "ok"


async def test_a_tool_that_ends_its_process_is_an_error(ctx: ToolContext) -> None:
    tools = executor("quits", "lookup")
    outcome = await tools.execute("quits", {}, ctx)
    after = await tools.execute("lookup", {"key": "k"}, ctx)
    assert outcome.status == "error"
    assert "worker process ended during the call (exit status 3)" in outcome.result
    assert after.status == "ok"


async def test_output_over_the_cap_is_truncated_with_a_note(ctx: ToolContext) -> None:
    short = await executor("chatter").execute("chatter", {"size": 100}, ctx)
    long = await executor("chatter").execute("chatter", {"size": 5000}, ctx)
    assert short.result == "x" * 100
    assert long.status == "ok"
    assert long.result.startswith("x" * 100 + "\n[output truncated: showing the first 100 of "
                                  "5000 characters")
    assert "xxx" not in long.result[100:]


async def test_a_crashing_tool_is_an_error_not_an_exception(ctx: ToolContext) -> None:
    outcome = await executor("broken").execute("broken", {}, ctx)
    assert (outcome.status, outcome.result) == ("error", "broken failed: KeyError: 'oops'")


async def test_results_are_text_and_outcomes_are_json(ctx: ToolContext) -> None:
    ticks = iter([10.0, 10.25])
    outcome = await executor("lookup", timer=lambda: next(ticks)).execute(
        "lookup", {"key": "k"}, ctx)
    assert json.loads(outcome.result) == {"key": "k", "found": True}
    assert json.loads(json.dumps(outcome.model_dump())) == {
        "status": "ok", "result": outcome.result, "duration_ms": 250.0, "cached": False}


class Counted(BaseModel):
    calls: int = 0


async def test_a_cacheable_tool_is_authorized_before_its_cache_is_read(ctx: ToolContext) -> None:
    counter = Counted()

    def only_ada(args: BaseModel, context: ToolContext) -> None:
        if context.agent != "ada":
            raise Forbidden("only ada may look")

    @tool(cacheable_for=timedelta(minutes=5), authorize=only_ada)
    def peek(key: str) -> str:
        """Peek at a key."""
        counter.calls += 1
        return f"{key}={counter.calls}"

    clock = [0.0]
    tools = ToolExecutor(ToolRegistry([peek]), allowed=["peek"],
                         cache=MemoryToolCache(clock=lambda: clock[0]))
    first = await tools.execute("peek", {"key": "a"}, ctx)
    again = await tools.execute("peek", {"key": "a"}, ctx)
    other = await tools.execute("peek", {"key": "b"}, ctx)
    bo = await tools.execute("peek", {"key": "a"}, ToolContext(agent="bo", room="lobby"))
    clock[0] = 301.0
    expired = await tools.execute("peek", {"key": "a"}, ctx)
    assert (first.result, first.cached) == ("a=1", False)
    assert (again.result, again.cached) == ("a=1", True)
    assert other.result == "b=2"
    assert (bo.status, bo.result) == ("refused", "only ada may look")
    assert (expired.result, expired.cached) == ("a=3", False)


async def test_a_failing_cache_costs_a_rerun_not_the_call(ctx: ToolContext) -> None:
    class Down:
        async def get(self, key: str) -> str | None:
            raise ConnectionError("cache down")

        async def set(self, key: str, value: str, ttl: timedelta) -> None:
            raise ConnectionError("cache down")

    @tool(cacheable_for=timedelta(minutes=1))
    def constant() -> str:
        """Say 1."""
        return "1"

    outcome = await ToolExecutor(ToolRegistry([constant]), allowed=["constant"],
                                 cache=Down()).execute("constant", {}, ctx)
    assert (outcome.status, outcome.result) == ("ok", "1")
