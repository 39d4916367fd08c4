"""What a ``run_python`` jail costs per run, next to a bare interpreter start.

Run from the repository root: ``python -m bench.sandbox`` (``--help`` for the knobs). No server
is needed. Three lines, each ``--runs`` starts of an empty program, one at a time, after
``--warmup`` starts:

    bare python      ``python -I -B -c pass`` with the interpreter the jail runs
    Sandbox.run      the whole path run_python takes: bwrap (namespaces, mounts, seccomp),
                     the bootstrap and its audit hook, output capture, waiting for pid 1
    Sandbox.run raw  the same without the audit hook

Each line prints p50/p99/max in ms and its p50 and p99 as a ratio of the bare line, then the
overhead per run (p50 difference). A last line runs ``--burst`` programs at once through one
Sandbox and shows how many ran, how many were queued, and how many the bounded queue refused.
"""

from __future__ import annotations

import argparse
import asyncio
import statistics
import subprocess
import time

from domain.errors import RateLimited
from tools.sandbox import Sandbox


def _summary(times: list[float]) -> tuple[float, float, float]:
    ordered = sorted(times)
    p99 = ordered[min(len(ordered) - 1, round(0.99 * (len(ordered) - 1)))]
    return statistics.median(ordered) * 1e3, p99 * 1e3, ordered[-1] * 1e3


def _bare(python: str, runs: int) -> list[float]:
    times = []
    for _ in range(runs):
        started = time.perf_counter()
        subprocess.run([python, "-I", "-B", "-c", "pass"], check=True)
        times.append(time.perf_counter() - started)
    return times


async def _jailed(sandbox: Sandbox, runs: int) -> list[float]:
    times = []
    for _ in range(runs):
        started = time.perf_counter()
        run = await sandbox.run("pass", 10.0)
        times.append(time.perf_counter() - started)
        if run.exit_status != 0:
            raise SystemExit(f"the jail failed: {run.stderr.strip()}")
    return times


async def _burst(count: int) -> str:
    sandbox = Sandbox(audit=False, max_concurrent=2, max_queued=8)
    await sandbox.check()
    started = time.perf_counter()
    results = await asyncio.gather(*(sandbox.run("import time; time.sleep(0.2)", 10.0)
                                     for _ in range(count)), return_exceptions=True)
    took = time.perf_counter() - started
    refused = sum(isinstance(r, RateLimited) for r in results)
    return (f"burst of {count}: {count - refused} ran (2 at a time, up to 8 queued), "
            f"{refused} refused as busy, {took:.2f} s")


async def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=60, help="timed starts per line")
    parser.add_argument("--warmup", type=int, default=5, help="untimed starts per line first")
    parser.add_argument("--burst", type=int, default=14, help="programs started at once")
    args = parser.parse_args()

    hooked, raw = Sandbox(), Sandbox(audit=False)
    python = await hooked.check()
    await raw.check()
    _bare(python, args.warmup)
    await _jailed(hooked, args.warmup)
    await _jailed(raw, args.warmup)
    lines = [("bare python", _bare(python, args.runs)),
             ("Sandbox.run", await _jailed(hooked, args.runs)),
             ("Sandbox.run raw", await _jailed(raw, args.runs))]
    bare_p50, bare_p99, _ = _summary(lines[0][1])
    print(f"interpreter: {python}; {args.runs} runs per line, one at a time")
    print(f"{'line':<18}{'p50 ms':>9}{'p99 ms':>9}{'max ms':>9}{'p50 x':>8}{'p99 x':>8}")
    for name, times in lines:
        p50, p99, top = _summary(times)
        print(f"{name:<18}{p50:>9.1f}{p99:>9.1f}{top:>9.1f}"
              f"{p50 / bare_p50:>8.2f}{p99 / bare_p99:>8.2f}")
    for name, times in lines[1:]:
        print(f"overhead per run ({name}): {_summary(times)[0] - bare_p50:.1f} ms at p50")
    print(await _burst(args.burst))


if __name__ == "__main__":
    asyncio.run(main())
