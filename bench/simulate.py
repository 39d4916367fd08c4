"""How fast and how big a simulation of many agents is: agent turns per second, peak memory.

Run from the repository root: ``python -m bench.simulate`` (``--help`` for the sizes). By
default 200 scripted agents in 20 rooms take 50 round-robin turns per room (1,000 agent
turns), their agents sharing 4 host processes (``SALON_AGENT_HOSTS``), recording what they
hear in long-term memory but recalling nothing (``--memory``: the default memory settings).
It starts a full Platform (embedded PostgreSQL, Valkey, a local Ray, the gateway, the
projections) under a temp dir and stops it all at the end, also on errors and Ctrl-C.

What it prints:

- ``define`` / ``setup`` / ``play`` / ``collect``: wall seconds of each phase of the run
  (agents defined; rooms opened and agents seated; the turns; metrics read from the log);
- ``agent turns/s``: agent turns (messages posted by agents) per second of the ``play``
  phase, and over the whole run;
- ``peak memory``: the highest sum of PSS (proportional set size: shared pages split between
  the processes sharing them) over this process and all its descendants — the Ray workers,
  room and agent-host actors, the embedded servers it started — plus PostgreSQL's processes
  (found from its ``postmaster.pid``: the server daemonises, so it is not a descendant),
  sampled every two seconds; which memory settings the agents used is printed beside it;
  and the highest rise of the machine's used memory (``MemTotal - MemAvailable``) over what
  was used before the platform started, which also counts processes outside the tree.

On a shared 2-core machine figures move by tens of percent between runs: run twice before
believing a difference.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import tempfile
import threading
import time
from pathlib import Path

from bench import per_second, quiet
from infra.settings import Settings
from salon.platform import Platform
from simulations.crowds import crowd_document
from simulations.progress import TextProgress
from simulations.runner import run_scenario
from simulations.scenarios import scenario_from_document

SAMPLE_SECONDS = 2.0  # reading smaps_rollup of ~100 processes costs the kernel; not too often
MIB = 1024 * 1024


def _children() -> dict[int, list[int]]:
    found: dict[int, list[int]] = {}
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            fields = (entry / "stat").read_text().rsplit(")", 1)[1].split()
        except OSError:
            continue
        found.setdefault(int(fields[1]), []).append(int(entry.name))
    return found


def tree_pss(root: int) -> int:
    """Bytes of PSS of ``root`` and every process below it."""
    children = _children()
    total, todo = 0, [root]
    while todo:
        pid = todo.pop()
        todo.extend(children.get(pid, []))
        try:
            for line in Path(f"/proc/{pid}/smaps_rollup").read_text().splitlines():
                if line.startswith("Pss:"):
                    total += int(line.split()[1]) * 1024
                    break
        except OSError:
            continue
    return total


def system_used() -> int:
    """Bytes the machine uses: MemTotal - MemAvailable."""
    values = {}
    for line in Path("/proc/meminfo").read_text().splitlines():
        key, _, rest = line.partition(":")
        values[key] = int(rest.split()[0]) * 1024
    return values["MemTotal"] - values["MemAvailable"]


def postmaster(pgdata: Path) -> int | None:
    """The PostgreSQL server's pid from its data directory (it runs outside our tree)."""
    try:
        return int((pgdata / "postmaster.pid").read_text().splitlines()[0])
    except (OSError, ValueError, IndexError):
        return None


class PeakMemory:
    """Samples the process tree, PostgreSQL's processes and the machine until stopped."""

    def __init__(self, pgdata: Path) -> None:
        self.baseline = system_used()
        self.pgdata = pgdata
        self.peak_tree = 0
        self.peak_postgres = 0
        self.peak_system = 0
        self.done = threading.Event()
        self.thread = threading.Thread(target=self._sample, name="bench-memory", daemon=True)

    def _sample(self) -> None:
        while not self.done.is_set():
            server = postmaster(self.pgdata)
            # PostgreSQL's processes are not our descendants (its server daemonises).
            postgres = tree_pss(server) if server is not None else 0
            self.peak_postgres = max(self.peak_postgres, postgres)
            self.peak_tree = max(self.peak_tree, tree_pss(os.getpid()) + postgres)
            self.peak_system = max(self.peak_system, system_used() - self.baseline)
            self.done.wait(SAMPLE_SECONDS)

    def __enter__(self) -> PeakMemory:
        self.thread.start()
        return self

    def __exit__(self, *_: object) -> None:
        self.done.set()
        self.thread.join()


def main() -> None:
    parser = argparse.ArgumentParser(description="Agent turns per second and peak memory of "
                                                 "a simulation of many scripted agents.")
    parser.add_argument("--agents", type=int, default=200)
    parser.add_argument("--rooms", type=int, default=20)
    parser.add_argument("--turns", type=int, default=50, help="agent turns per room")
    parser.add_argument("--hosts", type=int, default=4,
                        help="agent host processes (0: one process per agent)")
    parser.add_argument("--room-hosts", type=int, default=4,
                        help="room host processes (0: one process per room)")
    parser.add_argument("--memory", action="store_true",
                        help="agents recall, reflect and extract facts (the default memory "
                             "settings); without it they only record what they hear")
    args = parser.parse_args()
    quiet()
    scenario = scenario_from_document(crowd_document(args.agents, args.rooms, args.turns,
                                                     memory={} if args.memory else None))
    with tempfile.TemporaryDirectory(prefix="salon-bench-simulate-") as tmp, \
            PeakMemory(Path(tmp) / "pg") as memory:
        # Explicit Nones: SALON_* variables in the environment must not point at real servers.
        platform = Platform(Settings(home=Path(tmp), port=0, demo=False, database_url=None,
                                     redis_url=None, ray_address=None))
        try:
            running = platform.start()
            assert platform.store is not None
            settings = running.settings.model_copy(update={"agent_hosts": args.hosts,
                                                           "room_hosts": args.room_hosts})
            started = time.monotonic()
            simulation = asyncio.run(run_scenario(
                settings, platform.store, scenario, out=Path(tmp) / "simulations",
                progress=TextProgress("simulate"), report=False))
            seconds = time.monotonic() - started
        finally:
            platform.stop()
    [run] = simulation.manifest["runs"]
    wall = run["wall_seconds"]
    turns = sum(o["agent_turns"] for o in run["outcomes"].values())
    print(f"{args.agents} agents in {args.rooms} rooms, {args.turns} turns per room, "
          f"{args.hosts} agent hosts, {args.room_hosts} room hosts, "
          f"{'full' if args.memory else 'recording-only'} memory: "
          f"{run['status']}" +
          (f" ({run['error']})" if run["error"] else ""))
    print("phases (s):       " + "  ".join(f"{k} {v:.1f}" for k, v in wall.items()))
    print(f"agent turns:      {turns}")
    print(f"agent turns/s:    {per_second(turns, wall.get('play', 0.0)):.1f} while playing, "
          f"{per_second(turns, seconds):.1f} over the whole run")
    print(f"peak memory:      {memory.peak_tree / MIB:,.0f} MiB PSS of this process, its "
          f"descendants and PostgreSQL's processes ({memory.peak_postgres / MIB:,.0f} MiB of "
          f"it); the machine's used memory rose by at most {memory.peak_system / MIB:,.0f} MiB")
    used = "the default memory settings (recall, reflection, facts)" if args.memory else \
        "agents record what they hear in long-term memory and recall nothing"
    print(f"memory settings:  {used}; "
          f"memory projection {'on' if running.settings.memory_projection else 'off'}; "
          f"{args.hosts} agent hosts")
    if run["status"] != "finished":
        raise SystemExit(1)


if __name__ == "__main__":
    main()
