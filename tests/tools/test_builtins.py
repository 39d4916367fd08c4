"""The built-in tools: time, room access through the actor's callables, and http_get."""

from __future__ import annotations

import threading
from collections.abc import Iterator
from datetime import datetime
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import pytest

from tools import MemoryToolCache, ToolContext, ToolExecutor, default_registry

EVERYTHING = ["calculator", "current_time", "list_room_members", "send_direct_message",
              "search_knowledge_base", "http_get", "run_python"]


def executor(**kwargs: Any) -> ToolExecutor:
    return ToolExecutor(default_registry(), allowed=EVERYTHING, **kwargs)


async def test_current_time_reads_the_context_clock(ctx: ToolContext) -> None:
    tools = executor()
    utc = await tools.execute("current_time", {}, ctx)
    tokyo = await tools.execute("current_time", {"timezone": "Asia/Tokyo"}, ctx)
    mars = await tools.execute("current_time", {"timezone": "Mars/Olympus"}, ctx)
    naive = await tools.execute("current_time", {}, ToolContext(
        agent="ada", room="lobby", clock=lambda: datetime(2024, 1, 2, 3, 4, 5)))
    assert (utc.status, utc.result) == ("ok", "2024-05-01T12:00:00+00:00")
    assert tokyo.result == "2024-05-01T21:00:00+09:00"
    assert mars.status == "error"
    assert mars.result.startswith("unknown time zone 'Mars/Olympus'; use an IANA name")
    assert naive.result == "2024-01-02T03:04:05+00:00"


async def test_room_tools_call_what_the_actor_provides() -> None:
    sent: list[tuple[str, str]] = []
    searched: list[tuple[str, int]] = []

    async def members() -> list[dict[str, Any]]:
        return [{"name": "ada", "kind": "agent"}, {"name": "bob", "kind": "human"}]

    async def send(to: str, text: str) -> dict[str, Any]:
        sent.append((to, text))
        return {"delivered": True, "to": to}

    async def search(query: str, k: int) -> list[dict[str, Any]]:
        searched.append((query, k))
        return [{"text": "ferns like shade", "score": 0.9}]

    ctx = ToolContext(agent="ada", room="garden", list_members=members,
                      send_direct_message=send, search_knowledge=search)
    tools = executor()
    listed = await tools.execute("list_room_members", {}, ctx)
    dm = await tools.execute("send_direct_message", {"to": "bob", "text": "hi"}, ctx)
    found = await tools.execute("search_knowledge_base", {"query": "ferns"}, ctx)
    too_many = await tools.execute("search_knowledge_base", {"query": "ferns", "k": 50}, ctx)
    assert listed.result == '[{"name":"ada","kind":"agent"},{"name":"bob","kind":"human"}]'
    assert dm.result == '{"delivered":true,"to":"bob"}'
    assert found.result == '[{"text":"ferns like shade","score":0.9}]'
    assert sent == [("bob", "hi")] and searched == [("ferns", 5)]
    assert too_many.status == "error"
    assert "'k': Input should be less than or equal to 20" in too_many.result


@pytest.mark.parametrize(("name", "arguments", "says"), [
    ("list_room_members", {}, "list_room_members is not available in this context"),
    ("send_direct_message", {"to": "bob", "text": "hi"}, "cannot send direct messages here"),
    ("search_knowledge_base", {"query": "x"}, "no knowledge base is configured"),
])
async def test_room_tools_without_room_access_say_so(ctx: ToolContext, name: str,
                                                     arguments: dict[str, Any],
                                                     says: str) -> None:
    outcome = await executor().execute(name, arguments, ctx)
    assert outcome.status == "error" and says in outcome.result


class Site(ThreadingHTTPServer):
    hits: int = 0


class Pages(BaseHTTPRequestHandler):
    server: Site

    def do_GET(self) -> None:  # noqa: N802 - the standard library's name
        self.server.hits += 1
        if self.path == "/away":
            self.send_response(302)
            self.send_header("Location", "http://localhost:1/elsewhere")
            self.end_headers()
            return
        if self.path == "/missing":
            self.send_error(404, "no such page")
            return
        body = (b"<html><head><title>Ferns</title><script>var x = 1;</script></head>"
                b"<body><h1>Growing ferns</h1><p>Keep them  in the shade.</p></body></html>")
        self.send_response(200)
        self.send_header("Content-Type", "text/html; charset=utf-8")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, format: str, *args: Any) -> None:
        pass


@pytest.fixture
def site(monkeypatch: pytest.MonkeyPatch) -> Iterator[Site]:
    for variable in ("http_proxy", "HTTP_PROXY", "https_proxy", "HTTPS_PROXY", "all_proxy",
                     "ALL_PROXY"):
        monkeypatch.delenv(variable, raising=False)
    server = Site(("127.0.0.1", 0), Pages)
    thread = threading.Thread(target=server.serve_forever, args=(0.05,), daemon=True)
    thread.start()
    try:
        yield server
    finally:
        server.shutdown()
        server.server_close()
        thread.join()


def web(*hosts: str) -> ToolContext:
    return ToolContext(agent="ada", room="lobby", allowed_hosts=frozenset(hosts))


def local(site: Site) -> ToolContext:
    """An admin's explicit allowance of the local test site: its port, marked private."""
    return web(f"127.0.0.1:{site.server_port}#private")


async def test_http_get_fetches_text_from_an_allowed_host(site: Site) -> None:
    url = f"http://127.0.0.1:{site.server_port}/ferns"
    tools = executor(permissions=["network"], cache=MemoryToolCache())
    page = await tools.execute("http_get", {"url": url}, local(site))
    again = await tools.execute("http_get", {"url": url}, local(site))
    assert page.status == "ok", page.result
    assert page.result == (f"HTTP 200 text/html from {url}\n\n"
                           "Ferns\n\nGrowing ferns\nKeep them in the shade.")
    assert (again.result, again.cached) == (page.result, True)
    assert site.hits == 1


async def test_http_get_refuses_what_is_not_allowed(site: Site) -> None:
    base = f"http://127.0.0.1:{site.server_port}"
    networked = executor(permissions=["network"])
    other_host = await networked.execute("http_get", {"url": f"{base}/x"}, web("example.org"))
    redirected = await networked.execute("http_get", {"url": f"{base}/away"}, local(site))
    no_permission = await executor().execute("http_get", {"url": f"{base}/x"}, local(site))
    a_file = await networked.execute("http_get", {"url": "file:///etc/passwd"}, local(site))
    missing = await networked.execute("http_get", {"url": f"{base}/missing"}, local(site))
    assert other_host.status == "refused"
    assert other_host.result.startswith("host '127.0.0.1' is not on this agent's list of "
                                        "allowed hosts (example.org)")
    assert redirected.status == "refused" and "host 'localhost' is not" in redirected.result
    assert no_permission.status == "refused"
    assert "needs the permission(s) network" in no_permission.result
    assert a_file.status == "error" and "URL scheme should be 'http' or 'https'" in a_file.result
    assert missing.status == "error" and "answered HTTP 404" in missing.result
    assert site.hits == 2  # the redirect and the 404 reached it; the refusals never did


def test_allowed_hosts_match_names_ports_and_subdomains() -> None:
    from tools.web import host_allowed

    allowed = frozenset({"example.org", "*.wiki.org", "api.test:8443", "[::1]:8080#private"})
    assert host_allowed("https://example.org/a", allowed)
    assert host_allowed("http://EXAMPLE.org:443/", allowed)
    assert not host_allowed("https://example.org:444/", allowed)  # a bare host: 80 and 443
    assert host_allowed("https://en.wiki.org/", allowed)
    assert host_allowed("http://[::1]:8080/", allowed)
    assert not host_allowed("http://[::1]/", allowed)
    assert not host_allowed("https://wiki.org/", allowed)
    assert not host_allowed("https://evilwiki.org/", allowed)
    assert not host_allowed("https://example.org.evil.com/", allowed)
    assert host_allowed("https://api.test:8443/", allowed)
    assert not host_allowed("https://api.test/", allowed)
    assert not host_allowed("https://user@evil.com/?example.org", allowed)
