"""Running one tool call for one agent: allow list, permissions, validation, cache, limits.

``execute`` never raises for a tool's failure: every refusal, bad argument, timeout or crash
comes back as a ``ToolOutcome`` whose text tells the model what went wrong and what to do.
Only cancellation (the turn being stopped) passes through.

Synchronous tool bodies run in worker processes of a ``WorkerPool``: a call that overruns its
timeout, or is cancelled, is stopped by killing its process (a thread could not be stopped),
and the pool starts a replacement. Measured on a 2-CPU Linux VM (Python 3.11): a call through
a warm worker costs about 0.3 ms end to end against about 0.1 ms for ``asyncio.to_thread``;
starting a worker (an interpreter importing ``tools``) takes about 0.2 s, which the executor
spends ahead of the first call (``prepare``) and the pool spends right after a kill.
"""

from __future__ import annotations

import asyncio
import atexit
import concurrent.futures
import importlib
import json
import logging
import os
import pickle
import struct
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterable
from typing import Any

from pydantic import ValidationError

from domain.errors import Forbidden, NotFound, RateLimited, SalonError, Unavailable
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
        for name in self.usable():  # start a worker now rather than during the first call
            prepare = getattr(self.registry.get(name), "prepare", None)
            if prepare is not None:
                try:
                    prepare()
                except OSError:
                    log.warning("could not start a tool worker ahead of time", exc_info=True)

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



# Where synchronous tool bodies run ----------------------------------------------------------

MAX_WORKERS = 4  # processes per agent process, busy or idle; more concurrent calls are refused
MAX_IDLE_WORKERS = 2
WORKER_MEMORY_BYTES = 2 * 1024 ** 3  # address space of one worker (RLIMIT_AS)
MAX_TRANSFER_CHARS = 1_000_000  # a result longer than this is cut in the worker
IN_PROCESS_SLOTS = 4  # calls of tools that cannot run in a worker, at once
_WATCHDOG_GRACE = 5.0  # a worker exits by itself this long after a call's own deadline
_FRAME = struct.Struct("!I")
_BOOT = ("import json, sys; sys.path[:] = json.loads(sys.argv[1]); "
         "from tools.executor import serve_worker; serve_worker(json.loads(sys.argv[2]))")


class Unportable(Exception):
    """A worker process cannot run this call: its arguments do not pickle, or (``lasting``)
    the worker cannot import the function at all."""

    def __init__(self, message: str, lasting: bool = False) -> None:
        super().__init__(message)
        self.lasting = lasting


class _Died(Exception):
    pass


class _Worker:
    """One child interpreter answering calls one at a time over its stdin and stdout."""

    def __init__(self, preload: list[str]) -> None:
        self.process = subprocess.Popen(
            [sys.executable, "-c", _BOOT, json.dumps(sys.path), json.dumps(preload)],
            stdin=subprocess.PIPE, stdout=subprocess.PIPE, close_fds=True)

    def alive(self) -> bool:
        return self.process.poll() is None

    def exchange(self, request: bytes) -> bytes:
        """Send one call and wait for its reply (on a thread); the process ending ends it."""
        stdin, stdout = self.process.stdin, self.process.stdout
        assert stdin is not None and stdout is not None
        try:
            stdin.write(_FRAME.pack(len(request)) + request)
            stdin.flush()
            (size,) = _FRAME.unpack(_read(stdout, _FRAME.size))
            return _read(stdout, size)
        except (OSError, ValueError, _Died):
            self.close()
            raise _Died from None

    def kill(self) -> None:
        if self.alive():
            self.process.kill()
        self.process.wait()

    def close(self) -> None:
        for pipe in (self.process.stdin, self.process.stdout):
            try:
                if pipe is not None:
                    pipe.close()
            except OSError:
                pass


def _read(stream: Any, size: int) -> bytes:
    data = stream.read(size)
    if len(data) != size:
        raise _Died
    return data  # type: ignore[no-any-return]


class WorkerPool:
    """The worker processes of this process: reused while calls end, killed when they do not."""

    def __init__(self, size: int = MAX_WORKERS) -> None:
        self.size = size
        self._pid = os.getpid()
        self._lock = threading.Lock()
        self._idle: list[_Worker] = []
        self._live: set[_Worker] = set()
        self._modules: dict[str, None] = {}

    def preload(self, module: str) -> None:
        """Have workers started from now on import ``module`` before their first call."""
        self._modules[module] = None

    def warm(self) -> None:
        """Start an idle worker if there is none, so the next call does not wait for one."""
        with self._lock:
            self._forget_if_forked()
            if not self._idle and len(self._live) < self.size:
                self._idle.append(self._spawn())

    async def call(self, reference: tuple[str, str], kwargs: dict[str, Any],
                   context_parameter: str | None, ctx: ToolContext | None,
                   timeout: float) -> str:
        """Run ``module.name(**kwargs)`` in a worker; its rendered result, or its error."""
        try:
            request = pickle.dumps((reference, kwargs, context_parameter, ctx, timeout))
        except Exception as error:  # noqa: BLE001 - any pickling failure means "run it here"
            raise Unportable(str(error)) from None
        worker = self._checkout()
        try:
            reply = await asyncio.wait_for(asyncio.to_thread(worker.exchange, request), timeout)
        except _Died:
            self._discard(worker)
            self.warm()
            raise Unavailable(f"the tool's worker process ended during the call (exit status "
                              f"{worker.process.returncode}), perhaps out of memory; the call "
                              "did not complete") from None
        except BaseException:  # timed out or cancelled: stop the call with its process
            self._discard(worker)
            self.warm()
            raise
        self._checkin(worker)
        kind, value = pickle.loads(reply)
        if kind == "ok":
            return value  # type: ignore[no-any-return]
        if kind == "unportable":
            raise Unportable(value, lasting=True)
        raise value

    def shutdown(self) -> None:
        """Kill every worker (at exit)."""
        with self._lock:
            workers, self._idle, self._live = list(self._live), [], set()
        for worker in workers:
            worker.kill()
            worker.close()

    def _spawn(self) -> _Worker:
        worker = _Worker(list(self._modules))
        self._live.add(worker)
        return worker

    def _checkout(self) -> _Worker:
        with self._lock:
            self._forget_if_forked()
            while self._idle:
                worker = self._idle.pop()
                if worker.alive():
                    return worker
                self._live.discard(worker)
                worker.close()
            if len(self._live) >= self.size:
                raise RateLimited(f"{self.size} tool calls are already running for this agent; "
                                  "wait for one to finish and call again")
            return self._spawn()

    def _checkin(self, worker: _Worker) -> None:
        with self._lock:
            if worker in self._live and worker.alive() and len(self._idle) < MAX_IDLE_WORKERS:
                self._idle.append(worker)
                return
        self._discard(worker)

    def _discard(self, worker: _Worker) -> None:
        worker.kill()  # SIGKILL, then reaping: well under a millisecond
        with self._lock:
            self._live.discard(worker)

    def _forget_if_forked(self) -> None:
        if os.getpid() != self._pid:  # a forked child must not share its parent's workers
            self._pid, self._idle, self._live = os.getpid(), [], set()


_pool: WorkerPool | None = None
_pool_lock = threading.Lock()


def pool() -> WorkerPool:
    """This process's worker pool, started on first use."""
    global _pool
    with _pool_lock:
        if _pool is None:
            _pool = WorkerPool()
            atexit.register(_pool.shutdown)
        return _pool


_threads = concurrent.futures.ThreadPoolExecutor(IN_PROCESS_SLOTS,
                                                 thread_name_prefix="salon-tool")
_in_process = threading.BoundedSemaphore(IN_PROCESS_SLOTS)


async def run_in_process(name: str, function: Callable[..., Any], kwargs: dict[str, Any]) -> Any:
    """Run a function that cannot go to a worker on a thread of a small pool of its own.

    Such a call cannot be stopped; a timeout answers on time but the thread runs on. Its slot
    is freed only when the function returns, so runaway calls cannot pile up past the pool.
    """
    if not _in_process.acquire(blocking=False):
        raise RateLimited(f"{name} runs inside the agent's process and {IN_PROCESS_SLOTS} "
                          "earlier calls of such tools are still running; try again later")
    try:
        future = _threads.submit(function, **kwargs)
    except BaseException:
        _in_process.release()
        raise
    future.add_done_callback(lambda _: _in_process.release())
    return await asyncio.wrap_future(future)


def serve_worker(preload: list[str]) -> None:
    """A worker process's loop: read a call, run it, write the reply, until stdin closes."""
    import resource

    try:
        resource.setrlimit(resource.RLIMIT_AS, (WORKER_MEMORY_BYTES, WORKER_MEMORY_BYTES))
    except (ValueError, OSError):
        pass
    replies = os.dup(1)
    os.dup2(2, 1)  # a tool's print() goes to stderr, never into the replies
    for module in preload:
        try:
            importlib.import_module(module)
        except Exception:  # noqa: BLE001 - the call itself will say what is wrong
            pass
    deadline: list[float | None] = [None]
    parent = os.getppid()

    def watch() -> None:  # exit if orphaned, or long past a call's deadline
        while True:
            time.sleep(0.5)
            due = deadline[0]
            if os.getppid() != parent or (due is not None and time.monotonic() > due):
                os._exit(1)

    threading.Thread(target=watch, daemon=True).start()
    stdin = os.fdopen(0, "rb")
    while True:
        header = stdin.read(_FRAME.size)
        if len(header) != _FRAME.size:
            return
        request = stdin.read(_FRAME.unpack(header)[0])
        reply = _answer(request, deadline)
        deadline[0] = None
        payload = _FRAME.pack(len(reply)) + reply
        while payload:
            payload = payload[os.write(replies, payload):]


def _answer(request: bytes, deadline: list[float | None]) -> bytes:
    try:
        (module, qualname), kwargs, parameter, ctx, timeout = pickle.loads(request)
        found: Any = importlib.import_module(module)
        for part in qualname.split("."):
            found = getattr(found, part)
        function = getattr(found, "function", found)
    except Exception as error:  # noqa: BLE001
        return pickle.dumps(("unportable", f"{type(error).__name__}: {error}"))
    deadline[0] = time.monotonic() + timeout + _WATCHDOG_GRACE
    if parameter is not None:
        kwargs[parameter] = ctx
    try:
        text = render_result(function(**kwargs))
        return pickle.dumps(("ok", truncate(text, MAX_TRANSFER_CHARS)))
    except BaseException as error:  # noqa: BLE001 - SystemExit too: it is the tool's error
        try:
            reply = pickle.dumps(("error", error))
            pickle.loads(reply)
            return reply
        except Exception:  # noqa: BLE001 - an error that does not pickle, told as text
            return pickle.dumps(("error", RuntimeError(f"{type(error).__name__}: {error}")))
