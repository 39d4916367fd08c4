"""Many rooms or agents in one process: a Host actor carries the cores mapped to it.

One actor per room or agent costs a process each (about 43 MiB and 0.45 s to start here), which
ten thousand rooms or a simulation of hundreds of agents cannot afford. With
``SALON_ROOM_HOSTS=N`` / ``SALON_AGENT_HOSTS=N`` every name maps to one of N host actors by a
stable hash, so each room and agent still has exactly one writer.

Cores are virtual actors: a host activates one on its first call (from its snapshot and the
events after it) and passivates it when nothing called it for ``SALON_IDLE_SECONDS`` and it has
nothing in flight: the core's stream is snapshotted, the core's tasks end and its memory is
released. The next call activates it again from the log. A timed agent passivated this way
leaves a durable reminder (see reminders.py) that wakes it when its timer is due.
"""

from __future__ import annotations

import asyncio
import logging
import time
import zlib
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

import ray

from infra.bus import RoomBus
from infra.settings import Settings
from infra.store import EventStore

Kind = Literal["room", "agent"]
log = logging.getLogger(__name__)


def host_index(name: str, hosts: int) -> int:
    """The host a room or agent lives on: stable across processes and restarts."""
    return zlib.crc32(name.encode()) % hosts


@dataclass
class _Slot:
    core: Any
    used: float = field(default_factory=time.monotonic)
    busy: int = 0


def _core(kind: Kind, name: str, settings: Settings, store: EventStore, bus: RoomBus) -> Any:
    if kind == "room":
        from actors.rooms import RoomCore

        return RoomCore(name, settings, store, bus)
    from actors.agents import AgentCore

    return AgentCore(name, settings, store, bus)


@ray.remote
class Host:
    """Activates cores on first use, forwards calls to them, passivates the idle ones."""

    def __init__(self, kind: Kind, index: int, settings: Settings) -> None:
        self.kind, self.index, self.settings = kind, index, settings
        self.slots: dict[str, _Slot] = {}
        self.activating: dict[str, asyncio.Future[_Slot]] = {}
        # Cores being passivated: a call for one waits until it is, then activates it anew.
        self.passivating: dict[str, asyncio.Future[None]] = {}
        self.passivated = 0
        assert settings.database_url and settings.redis_url, "hosts need resolved server URLs"
        self.store = EventStore(settings.database_url, settings.snapshot_interval,
                                create_tables=False, master_key=settings.master_key_path())
        self.bus = RoomBus(settings.redis_url)
        self.reaper: asyncio.Task[None] | None = None

    async def _slot(self, name: str) -> _Slot:
        slot = self.slots.get(name)
        if slot is not None:
            return slot
        while name in self.passivating:
            await asyncio.shield(self.passivating[name])
            slot = self.slots.get(name)
            if slot is not None:
                return slot
        pending = self.activating.get(name)
        if pending is not None:
            return await asyncio.shield(pending)
        future: asyncio.Future[_Slot] = asyncio.get_running_loop().create_future()
        self.activating[name] = future
        try:
            # Loading reads the log: in a thread, so the host's other cores go on meanwhile.
            core = await asyncio.to_thread(_core, self.kind, name, self.settings, self.store,
                                           self.bus)
            slot = self.slots[name] = _Slot(core)
            future.set_result(slot)
        except BaseException as error:
            self.slots.pop(name, None)
            future.set_exception(error)
            future.exception()  # retrieved: a failure nobody else awaited is not logged twice
            raise
        finally:
            del self.activating[name]
        self._ensure_reaper()
        return slot

    async def call(self, name: str, method: str, *args: Any, **kwargs: Any) -> Any:
        """Call ``method`` of ``name``'s core, activating it if it is passive."""
        while True:
            slot = await self._slot(name)
            # A waiter resumes after others ran: the slot may have been passivated meanwhile.
            if self.slots.get(name) is slot:
                break
        slot.busy += 1
        try:
            return await getattr(slot.core, method)(*args, **kwargs)
        finally:
            slot.busy -= 1
            slot.used = time.monotonic()

    async def call_active(self, name: str, method: str, *args: Any, **kwargs: Any) -> Any:
        """Like ``call``, but None without activating when ``name`` is passive."""
        if name not in self.slots:
            return None
        return await self.call(name, method, *args, **kwargs)

    async def hosted(self) -> list[str]:
        """Names of the cores active on this host."""
        return sorted(self.slots)

    async def stats(self) -> dict[str, Any]:
        """How many cores are active or going passive, and how many were passivated since the
        host started."""
        return {"kind": self.kind, "index": self.index, "active": len(self.slots),
                "passivating": len(self.passivating), "passivated": self.passivated,
                "pss_bytes": _own_pss()}

    async def passivate(self, name: str | None = None, idle_for: float = 0.0) -> list[str]:
        """Passivate ``name`` (or every core) if idle for ``idle_for`` seconds and quiet."""
        now = time.monotonic()
        names = [name] if name is not None else list(self.slots)
        done = []
        for candidate in names:
            slot = self.slots.get(candidate)
            if slot is None or slot.busy or now - slot.used < idle_for or \
                    not slot.core.quiet():
                continue
            del self.slots[candidate]
            gone = self.passivating[candidate] = asyncio.get_running_loop().create_future()
            try:
                await slot.core.passivate()
            except Exception:  # noqa: BLE001 - the core is gone either way; the log holds all
                log.exception("passivating %s %s failed", self.kind, candidate)
            finally:
                del self.passivating[candidate]
                gone.set_result(None)
            self.passivated += 1
            done.append(candidate)
        return done

    def _ensure_reaper(self) -> None:
        if self.settings.idle_seconds > 0 and (self.reaper is None or self.reaper.done()):
            self.reaper = asyncio.get_running_loop().create_task(self._reap_forever())

    async def _reap_forever(self) -> None:
        idle = self.settings.idle_seconds
        while self.slots:
            await asyncio.sleep(max(idle / 4, 0.05))
            try:
                await self.passivate(idle_for=idle)
            except Exception:  # noqa: BLE001 - the reaper must survive a bad round
                log.exception("the %s host %d could not passivate", self.kind, self.index)


def _own_pss() -> int | None:
    """This process's proportional set size in bytes (None where /proc cannot say)."""
    try:
        lines = Path("/proc/self/smaps_rollup").read_text().splitlines()
    except OSError:
        return None
    for line in lines:
        if line.startswith("Pss:"):
            return int(line.split()[1]) * 1024
    return None


def host(kind: Kind, name: str, settings: Settings, count: int) -> Any:
    """The host actor ``name`` maps to, started if it is not running."""
    from actors.directory import options

    index = host_index(name, count)
    return Host.options(**options(f"{kind}-host", str(index), settings)).remote(
        kind, index, settings)


class Hosted:
    """Looks like an actor handle: ``handle.method.remote(...)`` goes through the host."""

    def __init__(self, host: Any, name: str, activate: bool = True) -> None:
        self.host = host
        self.name = name
        self.activate = activate

    def __getattr__(self, method: str) -> _HostedMethod:
        if method.startswith("_"):
            raise AttributeError(method)
        return _HostedMethod(self, method)


class _HostedMethod:
    def __init__(self, hosted: Hosted, method: str) -> None:
        self.hosted, self.method = hosted, method

    def remote(self, *args: Any, **kwargs: Any) -> Any:
        h = self.hosted
        call = h.host.call if h.activate else h.host.call_active
        return call.remote(h.name, self.method, *args, **kwargs)
