"""Tool arguments written by an attacker: every one bounded, every call stoppable.

The calculator refuses what would take long before doing it; a synchronous tool that never
returns is killed with its worker process at its timeout while the event loop keeps turning;
``http_get`` refuses loopback and private addresses, ports the allow list does not name and
redirects out of bounds, and stops a server that drips at one deadline for the whole fetch.
"""

from __future__ import annotations

import asyncio
import ipaddress
import os
import socket
import threading
import time
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import pytest

from domain.errors import Forbidden, Invalid
from tools import ToolContext, ToolExecutor, ToolRegistry, default_registry, tool
from tools.calculator import evaluate
from tools.executor import pool
from tools.web import address_refusal, fetch

QUICK = 0.5  # seconds: a refusal that takes longer than this is doing the work it refuses


@pytest.fixture
def ctx() -> ToolContext:
    return ToolContext(agent="ada", room="lobby")


# The calculator ------------------------------------------------------------------------------

@pytest.mark.parametrize(("expression", "says"), [
    ("round(1, -10**8)", "round() to -100000000 digits is out of range"),
    ("round(1.5, 10**8)", "out of range"),
    ("10**10**10", "the exponent 10000000000 is too large"),
    ("9**9**9", "the exponent 387420489 is too large"),
    ("(10**999)**999", "digits"),
    ("factorial(10**6)", "factorial(1000000) would have more than 1000 digits"),
    ("factorial(factorial(449))", "digits"),
    ("-" * 900 + "1", "nested more than 200 levels deep"),
    ("+".join(["1"] * 300), "nested more than 200 levels deep"),
    ("(" * 300 + "1" + ")" * 300, "nested too deeply"),
    ("9" * 1001, "characters long"),
    ("10**999 * 10**999 * 10", "more than 1000 digits"),
])
def test_the_calculator_refuses_huge_work_at_once(expression: str, says: str) -> None:
    started = time.perf_counter()
    with pytest.raises(Invalid) as refused:
        evaluate(expression)
    assert time.perf_counter() - started < QUICK
    assert says in refused.value.message


def test_the_calculator_stops_at_its_cpu_deadline() -> None:
    with pytest.raises(Invalid, match="took too long to evaluate"):
        evaluate("+".join(["factorial(449) * factorial(449) // factorial(448)"] * 18),
                 cpu_seconds=0.0)


async def test_the_freezing_expression_comes_back_as_an_error(ctx: ToolContext) -> None:
    executor = ToolExecutor(default_registry(), allowed=["calculator"])
    started = time.perf_counter()
    outcome = await executor.execute("calculator", {"expression": "round(1, -10**8)"}, ctx)
    after = await executor.execute("calculator", {"expression": "round(1234, -2)"}, ctx)
    assert outcome.status == "error" and "out of range" in outcome.result
    assert (after.status, after.result) == ("ok", "1200")
    assert time.perf_counter() - started < 5  # a cold worker start included


# Synchronous tools run where they can be stopped ---------------------------------------------

@tool(timeout=0.5)
def spin() -> str:
    """Loop forever in Python."""
    while True:
        pass


@tool(timeout=0.5)
def hog() -> str:
    """One big-integer operation: holds the GIL until it is done, minutes from now."""
    return str(10 ** (10 ** 9) % 7)


@tool
def whereami() -> int:
    """The process this runs in."""
    return os.getpid()


async def loop_gaps(stop: asyncio.Event, gaps: list[float]) -> None:
    last = time.perf_counter()
    while not stop.is_set():
        await asyncio.sleep(0.01)
        now = time.perf_counter()
        gaps.append(now - last)
        last = now


def live_pids() -> set[int]:
    return {worker.process.pid for worker in pool()._live}


def busy_pids() -> set[int]:
    return live_pids() - {worker.process.pid for worker in pool()._idle}


@tool(timeout=60)
def spin_long() -> str:
    """Loop forever in Python, with a long timeout."""
    while True:
        pass


@pytest.mark.parametrize("runaway", ["spin", "hog"])
async def test_a_runaway_sync_tool_is_killed_at_its_timeout(ctx: ToolContext,
                                                            runaway: str) -> None:
    executor = ToolExecutor(ToolRegistry([spin, hog, whereami]),
                            allowed=["spin", "hog", "whereami"])
    warm = await executor.execute("whereami", {}, ctx)  # a worker is up before the clock runs
    assert warm.status == "ok" and int(warm.result) != os.getpid()
    before = live_pids()
    stop, gaps = asyncio.Event(), []
    ticker = asyncio.create_task(loop_gaps(stop, gaps))
    started = time.perf_counter()
    outcome = await executor.execute(runaway, {}, ctx)
    elapsed = time.perf_counter() - started
    stop.set()
    await ticker
    assert outcome.status == "timeout"
    assert outcome.result == f"{runaway} did not finish within 0.5 s and was stopped; try a " \
                             "smaller request"
    assert 0.5 <= elapsed < 1.5
    assert max(gaps) < 0.25, f"the event loop stalled for {max(gaps):.3f} s"
    for pid in before - live_pids():  # the runaway's process is gone, not left spinning
        with pytest.raises(ProcessLookupError):
            os.kill(pid, 0)
    assert len(before - live_pids()) == 1
    after = await executor.execute("whereami", {}, ctx)
    assert after.status == "ok" and int(after.result) != os.getpid()


async def test_a_cancelled_call_takes_its_worker_down(ctx: ToolContext) -> None:
    executor = ToolExecutor(ToolRegistry([spin_long, whereami]),
                            allowed=["spin_long", "whereami"])
    await executor.execute("whereami", {}, ctx)
    call = asyncio.create_task(executor.execute("spin_long", {}, ctx))
    deadline = time.monotonic() + 5
    while not busy_pids() and time.monotonic() < deadline:  # wait for the call to start
        await asyncio.sleep(0.01)
    busy = busy_pids()
    assert busy, "the call never started"
    call.cancel()
    with pytest.raises(asyncio.CancelledError):
        await call
    assert not busy & live_pids(), "the cancelled call's worker is still in the pool"
    for pid in busy:
        with pytest.raises(ProcessLookupError):
            os.kill(pid, 0)


# http_get ------------------------------------------------------------------------------------

class Site(ThreadingHTTPServer):
    daemon_threads = True
    block_on_close = False
    hits: int = 0
    redirect_to: str = ""
    stop: threading.Event


class Pages(BaseHTTPRequestHandler):
    server: Site

    def do_GET(self) -> None:  # noqa: N802 - the standard library's name
        self.server.hits += 1
        if self.path == "/hop":
            self.send_response(302)
            self.send_header("Location", self.server.redirect_to)
            self.send_header("Content-Length", "0")
            self.end_headers()
            return
        if self.path == "/loop":
            self.send_response(302)
            self.send_header("Location", "/loop")
            self.send_header("Content-Length", "0")
            self.end_headers()
            return
        if self.path == "/drip":  # a byte a second: every read is quick, the page never ends
            self.send_response(200)
            self.send_header("Content-Type", "text/plain")
            self.send_header("Content-Length", "1000")
            self.end_headers()
            self.wfile.flush()
            while not self.server.stop.is_set():
                try:
                    self.wfile.write(b"x")
                    self.wfile.flush()
                except OSError:
                    return
                self.server.stop.wait(1.0)
            return
        if self.path == "/big":
            body = b"y" * 3_000_000
        else:
            body = f"hello from {self.headers['Host']}".encode()
        self.send_response(200)
        self.send_header("Content-Type", "text/plain")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        try:
            self.wfile.write(body)
        except OSError:
            pass

    def log_message(self, format: str, *args: Any) -> None:
        pass


def serve() -> tuple[Site, threading.Thread]:
    server = Site(("127.0.0.1", 0), Pages)
    server.stop = threading.Event()
    thread = threading.Thread(target=server.serve_forever, args=(0.05,), daemon=True)
    thread.start()
    return server, thread


@pytest.fixture
def site() -> Iterator[Site]:
    server, thread = serve()
    try:
        yield server
    finally:
        server.stop.set()
        server.shutdown()
        server.server_close()
        thread.join()


def web(*hosts: str) -> ToolContext:
    return ToolContext(agent="ada", room="lobby", allowed_hosts=frozenset(hosts))


def http_get() -> ToolExecutor:
    return ToolExecutor(default_registry(), allowed=["http_get"], permissions=["network"])


async def test_loopback_is_refused_unless_an_admin_marked_the_host_private(site: Site) -> None:
    port = site.server_port
    url = f"http://127.0.0.1:{port}/"
    plain = await http_get().execute("http_get", {"url": url}, web(f"127.0.0.1:{port}"))
    by_name = await http_get().execute("http_get", {"url": f"http://localhost:{port}/"},
                                       web(f"localhost:{port}"))
    assert plain.status == "refused"
    assert plain.result.startswith("host '127.0.0.1' resolves to 127.0.0.1, a loopback "
                                   "address, which agents may not fetch")
    assert f"'127.0.0.1:{port}#private'" in plain.result
    assert by_name.status == "refused" and "loopback address" in by_name.result
    assert site.hits == 0
    marked = await http_get().execute("http_get", {"url": url}, web(f"127.0.0.1:{port}#private"))
    assert marked.status == "ok", marked.result
    assert marked.result.endswith(f"hello from 127.0.0.1:{port}")
    assert site.hits == 1


async def test_a_port_the_allow_list_does_not_name_is_refused(site: Site) -> None:
    url = f"http://127.0.0.1:{site.server_port}/"
    bare = await http_get().execute("http_get", {"url": url}, web("127.0.0.1#private"))
    other = await http_get().execute("http_get", {"url": url}, web("127.0.0.1:8080#private"))
    assert bare.status == other.status == "refused"
    assert bare.result.startswith(f"port {site.server_port} of host '127.0.0.1' is not allowed "
                                  "for this agent (allowed: 80, 443)")
    assert "(allowed: 8080)" in other.result
    assert site.hits == 0


async def test_each_redirect_is_checked_again(site: Site) -> None:
    other, thread = serve()
    try:
        port = site.server_port
        allowed = web(f"127.0.0.1:{port}#private")
        url = f"http://127.0.0.1:{port}/hop"
        site.redirect_to = f"http://127.0.0.1:{other.server_port}/"
        to_port = await http_get().execute("http_get", {"url": url}, allowed)
        site.redirect_to = f"http://localhost:{port}/"
        to_host = await http_get().execute("http_get", {"url": url}, allowed)
        site.redirect_to = f"http://127.0.0.1:{other.server_port}/"
        to_loopback = await http_get().execute(
            "http_get", {"url": url},
            web(f"127.0.0.1:{port}#private", f"127.0.0.1:{other.server_port}"))
        looping = await http_get().execute(
            "http_get", {"url": f"http://127.0.0.1:{port}/loop"}, allowed)
        assert to_port.status == "refused"
        assert to_port.result.startswith(f"port {other.server_port} of host '127.0.0.1' is not "
                                         "allowed")
        assert to_host.status == "refused" and "host 'localhost' is not" in to_host.result
        assert to_loopback.status == "refused" and "loopback address" in to_loopback.result
        assert looping.status == "error" and "redirected more than 5 times" in looping.result
        assert other.hits == 0
    finally:
        other.shutdown()
        other.server_close()
        thread.join()


async def test_a_dripping_server_is_cut_at_the_total_deadline(site: Site) -> None:
    allowed = frozenset({f"127.0.0.1:{site.server_port}#private"})
    url = f"http://127.0.0.1:{site.server_port}/drip"
    started = time.perf_counter()
    with pytest.raises(TimeoutError, match=r"took longer than 2 s in all and was stopped"):
        await fetch(url, allowed, timeout=2.0)
    assert 2.0 <= time.perf_counter() - started < 3.0


async def test_http_get_reports_the_deadline_as_a_timeout(site: Site,
                                                          monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr("tools.builtins.HTTP_TIMEOUT", 1.0)
    started = time.perf_counter()
    outcome = await http_get().execute(
        "http_get", {"url": f"http://127.0.0.1:{site.server_port}/drip"},
        web(f"127.0.0.1:{site.server_port}#private"))
    assert outcome.status == "timeout" and "took longer than 1 s in all" in outcome.result
    assert time.perf_counter() - started < 2.0


async def test_a_large_body_is_cut_at_the_size_bound(site: Site) -> None:
    allowed = frozenset({f"127.0.0.1:{site.server_port}#private"})
    page = await fetch(f"http://127.0.0.1:{site.server_port}/big", allowed, timeout=10,
                       max_bytes=10_000)
    assert page.truncated and page.text == "y" * 10_000


async def test_the_name_is_resolved_once_and_the_checked_address_is_used(
        site: Site, monkeypatch: pytest.MonkeyPatch) -> None:
    lookups: list[str] = []
    real = socket.getaddrinfo

    def resolve(host: Any, *args: Any, **kwargs: Any) -> Any:
        lookups.append(host)
        # A rebinding server: loopback the first time, anything else after.
        return real("127.0.0.1" if len(lookups) == 1 else "10.9.9.9", *args, **kwargs)

    monkeypatch.setattr(socket, "getaddrinfo", resolve)
    port = site.server_port
    with pytest.raises(Forbidden, match="resolves to 127.0.0.1, a loopback address"):
        await fetch(f"http://rebind.test:{port}/", frozenset({f"rebind.test:{port}"}), 5.0)
    assert lookups == ["rebind.test"] and site.hits == 0
    lookups.clear()
    page = await fetch(f"http://rebind.test:{port}/",
                       frozenset({f"rebind.test:{port}#private"}), timeout=5.0)
    assert lookups == ["rebind.test"]  # one lookup; the connection went to its answer
    assert page.text == f"hello from rebind.test:{port}"  # and the name went as Host


@pytest.mark.parametrize(("address", "kind"), [
    ("127.0.0.1", "loopback"), ("10.1.2.3", "private"), ("172.16.0.1", "private"),
    ("192.168.1.1", "private"), ("169.254.169.254", "link-local"), ("0.0.0.0", "unspecified"),
    ("224.0.0.1", "multicast"), ("240.0.0.1", "private"), ("255.255.255.255", "private"),
    ("100.64.0.1", "non-public"), ("::1", "loopback"), ("::", "unspecified"),
    ("fe80::1", "link-local"), ("fc00::1", "private"), ("ff02::1", "multicast"),
    ("::ffff:127.0.0.1", "private"), ("::ffff:10.0.0.1", "private"),
    ("64:ff9b::7f00:1", "reserved"), ("2002:7f00:1::", "loopback"),
    ("93.184.215.14", None), ("2606:4700::1111", None), ("::ffff:93.184.215.14", "reserved"),
])
def test_addresses_agents_may_not_reach(address: str, kind: str | None) -> None:
    assert address_refusal(ipaddress.ip_address(address)) == kind
