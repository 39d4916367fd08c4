"""Running one tool call for one agent: allow list, permissions, validation, cache, limits.

``execute`` never raises for a tool's failure: every refusal, bad argument, timeout or crash
comes back as a ``ToolOutcome`` whose text tells the model what went wrong and what to do.
Only cancellation (the turn being stopped) passes through.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Callable, Iterable
from typing import Any

from pydantic import ValidationError

from domain.errors import Forbidden, NotFound, SalonError
from tools.base import Tool, ToolContext, ToolOutcome, ToolStatus, render_result, truncate
from tools.cache import ToolCache, cache_key
from tools.registry import ToolRegistry

log = logging.getLogger(__name__)

# Refusals and errors carry instructions for the model; a small output cap must not cut them.
MIN_MESSAGE_CHARS = 2_000


class ToolExecutor:
    """One agent's view of the tools: those on its allow list, under its granted permissions."""

    def __init__(self, registry: ToolRegistry, *, allowed: Iterable[str],
                 permissions: Iterable[str] = (), cache: ToolCache | None = None,
                 timer: Callable[[], float] = time.perf_counter) -> None:
        self.registry = registry
        self.allowed = tuple(dict.fromkeys(allowed))
        self.permissions = frozenset(permissions)
        self.cache = cache
        self._timer = timer

    def specs(self) -> list[dict[str, Any]]:
        """Specs of the tools this agent may call (``ToolSpec``-compatible dicts)."""
        return self.registry.specs(self.allowed, self.permissions)

    def usable(self) -> list[str]:
        """Names of the tools this agent may call: allowed, installed and permitted."""
        return [name for name in self.allowed if name in self.registry
                and self.registry.get(name).permissions <= self.permissions]

    async def execute(self, call_name: str, arguments: Any, ctx: ToolContext) -> ToolOutcome:
        """Run one call and report how it went; never raises for the tool's own failures."""
        started = self._timer()
        limit = MIN_MESSAGE_CHARS
        cached = False
        status: ToolStatus
        try:
            tool = self._permitted(call_name)
            limit = tool.max_output_chars
            result, cached = await self._run(tool, arguments, ctx)
            status = "ok"
        except Forbidden as error:
            status, result = "refused", error.message
        except TimeoutError as error:
            status, result = "timeout", str(error) or f"{call_name} did not finish in time"
        except SalonError as error:
            status, result = "error", error.message
        except ValidationError as error:  # a tool validating something of its own
            status, result = "error", f"{call_name} failed: {error}"
        except Exception as error:  # noqa: BLE001 - a tool's bug is the model's error message
            log.exception("tool %s failed", call_name)
            status, result = "error", f"{call_name} failed: {type(error).__name__}: {error}"
        duration_ms = (self._timer() - started) * 1000
        if status != "ok":  # results were capped already (and cached so); cap messages too
            result = truncate(result, max(limit, MIN_MESSAGE_CHARS))
        return ToolOutcome(status=status, result=result,
                           duration_ms=round(duration_ms, 3), cached=cached)

    def _permitted(self, name: str) -> Tool[Any]:
        if name not in self.allowed:
            offered = ", ".join(self.usable()) or "none"
            raise Forbidden(f"tool {name!r} is not on this agent's allow list; "
                            f"use one of: {offered}")
        if name not in self.registry:
            raise NotFound(f"tool {name!r} is allowed but not installed in this Salon; "
                           f"use one of: {', '.join(self.usable()) or 'none'}")
        tool = self.registry.get(name)
        missing = sorted(tool.permissions - self.permissions)
        if missing:
            raise Forbidden(f"tool {name!r} needs the permission(s) {', '.join(missing)}, which "
                            "this agent was not granted; an owner can add them to the agent's "
                            "permissions")
        return tool

    async def _run(self, tool: Tool[Any], arguments: Any, ctx: ToolContext) -> tuple[str, bool]:
        args = tool.parse(arguments)
        tool.authorize(args, ctx)
        key = None
        if tool.cacheable_for is not None and self.cache is not None:
            key = cache_key(tool.name, args.model_dump(mode="json"))
            hit = await self._cache_get(key)
            if hit is not None:
                return hit, True
        try:
            value = await asyncio.wait_for(tool.run(args, ctx), timeout=tool.timeout)
        except TimeoutError as error:
            raise TimeoutError(str(error) or f"{tool.name} did not finish within "
                               f"{tool.timeout:g} s and was stopped; try a smaller "
                               "request") from None
        result = truncate(render_result(value), tool.max_output_chars)
        if key is not None and tool.cacheable_for is not None:
            await self._cache_set(key, result, tool)
        return result, False

    async def _cache_get(self, key: str) -> str | None:
        assert self.cache is not None
        try:
            return await self.cache.get(key)
        except Exception:  # noqa: BLE001 - a cache outage costs a re-run, not the call
            log.warning("tool cache read failed; running the tool", exc_info=True)
            return None

    async def _cache_set(self, key: str, result: str, tool: Tool[Any]) -> None:
        assert self.cache is not None and tool.cacheable_for is not None
        try:
            await self.cache.set(key, result, tool.cacheable_for)
        except Exception:  # noqa: BLE001
            log.warning("tool cache write failed", exc_info=True)

