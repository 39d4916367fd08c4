"""The tools every Salon offers; an agent gets those on its allow list and permitted to it."""

from __future__ import annotations

from datetime import UTC, timedelta
from typing import Annotated, Any
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from pydantic import BaseModel, ConfigDict, Field, HttpUrl

from domain.errors import Invalid, Unavailable
from tools.base import Tool, ToolContext
from tools.calculator import evaluate, format_number
from tools.functions import tool
from tools.registry import ToolRegistry
from tools.sandbox import Sandbox
from tools.web import check_url, fetch

HTTP_TIMEOUT = 15.0


@tool(max_output_chars=2_000, timeout=5.0)
def calculator(expression: Annotated[str, Field(max_length=1_000)]) -> str:
    """Evaluate an arithmetic expression exactly, e.g. "2 ** 10 / (3 + 4)" or "sqrt(2) * pi".

    Supports + - * / // % **, parentheses, the constants pi, e, tau and the functions sqrt,
    sin, cos, tan, asin, acos, atan, atan2, exp, log (optional base), log10, log2, abs, round,
    min, max, floor, ceil, hypot, degrees, radians, factorial. Numbers have at most 1000
    digits and exponents are at most 1000.

    Args:
        expression: the expression to evaluate.
    """
    return format_number(evaluate(expression))


@tool(max_output_chars=200)
def current_time(ctx: ToolContext, timezone: str | None = None) -> str:
    """The current date and time in ISO 8601, in UTC or in a given IANA time zone.

    Args:
        timezone: an IANA time zone name such as "Europe/Paris"; UTC when omitted.
    """
    now = ctx.clock()
    now = now.replace(tzinfo=UTC) if now.tzinfo is None else now
    if timezone is None:
        return now.astimezone(UTC).isoformat()
    try:
        zone = ZoneInfo(timezone)
    except (ZoneInfoNotFoundError, ValueError):
        raise Invalid(f"unknown time zone {timezone!r}; use an IANA name such as "
                      "'Europe/Paris', 'America/New_York' or 'UTC'") from None
    return now.astimezone(zone).isoformat()


@tool
async def list_room_members(ctx: ToolContext) -> list[dict[str, Any]]:
    """List the members of this room: people and agents, with their kind and role."""
    if ctx.list_members is None:
        raise Unavailable("list_room_members is not available in this context; no room access "
                          "was provided to the agent")
    return await ctx.list_members()


@tool
async def send_direct_message(ctx: ToolContext,
                              to: Annotated[str, Field(min_length=1, max_length=64)],
                              text: Annotated[str, Field(min_length=1, max_length=4_000)],
                              ) -> dict[str, Any]:
    """Send a private message to one member of this room.

    Args:
        to: the member's name, as list_room_members shows it.
        text: the message.
    """
    if ctx.send_direct_message is None:
        raise Unavailable("send_direct_message is not available in this context; the agent "
                          "cannot send direct messages here")
    return await ctx.send_direct_message(to, text)


@tool
async def search_knowledge_base(ctx: ToolContext,
                                query: Annotated[str, Field(min_length=1, max_length=1_000)],
                                k: Annotated[int, Field(ge=1, le=20)] = 5,
                                ) -> list[dict[str, Any]]:
    """Search the agent's knowledge base and return the passages closest to a query.

    Args:
        query: what to look for, in a few words or a question.
        k: how many passages to return (1 to 20).
    """
    if ctx.search_knowledge is None:
        raise Unavailable("search_knowledge_base is not available in this context; no "
                          "knowledge base is configured for this agent")
    return await ctx.search_knowledge(query, k)


def _http_get_allowed(args: BaseModel, ctx: ToolContext) -> None:
    # Host and port, before the cache is read; the address is checked at each fetch.
    check_url(str(args.url), ctx.allowed_hosts)  # type: ignore[attr-defined]


@tool(permissions={"network"}, cacheable_for=timedelta(minutes=10), timeout=HTTP_TIMEOUT + 5,
      max_output_chars=20_000, authorize=_http_get_allowed)
async def http_get(ctx: ToolContext, url: HttpUrl) -> str:
    """Fetch a web page from an allowed host and return its text.

    Only hosts and ports on the agent's allow list, only public addresses (unless an admin
    allowed a private host), at most 1 MB and 15 seconds per fetch, redirects included.

    Args:
        url: the http:// or https:// address to fetch; its host must be allowed for the agent.
    """
    page = await fetch(str(url), ctx.allowed_hosts, timeout=HTTP_TIMEOUT)
    return page.render()


class RunPythonArguments(BaseModel):
    model_config = ConfigDict(extra="forbid")

    code: str = Field(min_length=1, max_length=20_000,
                      description="a Python 3 script; print() what you want to see")
    timeout_seconds: float = Field(default=5.0, gt=0, le=30,
                                   description="wall-clock seconds before the run is stopped")


class RunPython(Tool[RunPythonArguments]):
    """Run Python code in a sandbox without network access and return what it printed.

    Only the standard library is available; files can be written in the working directory and
    /tmp only, and vanish after the run. Each run is a fresh jail (``tools.sandbox``); when this
    machine cannot build one, or too many runs are waiting, the call fails as unavailable or
    rate limited instead of running the code unjailed.
    """

    name = "run_python"
    args_model = RunPythonArguments
    permissions = frozenset({"code"})
    timeout = 60.0
    max_output_chars = 10_000

    def __init__(self, sandbox: Sandbox | None = None) -> None:
        self.sandbox = sandbox or Sandbox()

    async def run(self, args: RunPythonArguments, ctx: ToolContext) -> str:
        """Run the script; a failure or a timeout comes back as the tool's error."""
        run = await self.sandbox.run(args.code, timeout=args.timeout_seconds)
        if run.timed_out:
            raise TimeoutError(f"the program ran longer than {args.timeout_seconds:g} s and was "
                               f"stopped; make it faster or raise timeout_seconds (at most 30). "
                               f"Output so far:\n{run.render()}")
        if run.cpu_exhausted:
            raise TimeoutError("the program used up its CPU time and was stopped; make it "
                               f"faster. Output so far:\n{run.render()}")
        if run.exit_status != 0:
            raise Invalid(f"the program failed (exit status {run.exit_status}):\n{run.render()}")
        return run.render()


def builtin_tools(sandbox: Sandbox | None = None) -> list[Tool[Any]]:
    """Every built-in tool; ``run_python`` uses ``sandbox`` (a default one if omitted)."""
    return [calculator, current_time, list_room_members, send_direct_message,
            search_knowledge_base, http_get, RunPython(sandbox)]


def default_registry(sandbox: Sandbox | None = None) -> ToolRegistry:
    """A registry holding the built-in tools."""
    return ToolRegistry(builtin_tools(sandbox))
