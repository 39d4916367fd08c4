"""The admin pages over HTTP and the CLI that reads them: metrics, audit, projections, jobs."""

from __future__ import annotations

import json
import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import psycopg
import pytest
from click.testing import CliRunner
from prometheus_client.parser import text_string_to_metric_families

from domain.agents import Agent, AgentDefinition
from domain.users import User
from projections import cli
from projections.http import AdminPages
from projections.registry import PROJECTIONS
from projections.runner import Runner
from projections.service import ProjectionSettings


class Served:
    """AdminPages behind a real HTTP server, as the gateway serves them."""

    def __init__(self, pages: AdminPages) -> None:
        class Handler(BaseHTTPRequestHandler):
            def do_GET(self) -> None:  # noqa: N802 - the http.server API
                path, _, query = self.path.partition("?")
                answer = pages.respond(path, query) or (404, "text/plain", b"not here")
                self.send_response(answer[0])
                self.send_header("Content-Type", answer[1])
                self.send_header("Content-Length", str(len(answer[2])))
                self.end_headers()
                self.wfile.write(answer[2])

            def log_message(self, *_: object) -> None:
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}"
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()


@pytest.fixture
def pages(platform, database_url: str, schema: str, name: str) -> Iterator[AdminPages]:
    """Admin pages over views of this test's own schemas, every projection caught up."""
    store = platform.store
    agent = Agent.define(AgentDefinition(name=f"{name}-bot"))
    agent.start_turn("t1", name, {"kind": "mention", "position": 2, "by": "alice"})
    agent.record_model_call("t1", "scripted", "echo", {"positions": [2]}, {"text": "hi"},
                            40, 2, 0.25, 12.0)
    agent.complete_turn("t1", None)
    store.save(agent.collect_events())
    config = ProjectionSettings(schema_prefix=f"{schema}_", jobs_prefix=f"test:{name}")
    runners = [Runner(cls, database_url, config.schema(n)).start()
               for n, cls in PROJECTIONS.items()]
    for runner in runners:
        runner.wait_for()
        runner.stop()
    found = AdminPages(platform.running.settings, store, config)
    yield found
    found.close()
    for runner in runners:
        runner.close()


def _member_token(platform, name: str) -> str:
    user = User.register(f"{name}-member")
    token = user.issue_token()
    platform.store.save(user.collect_events())
    return token


def test_metrics_and_admin_pages_answer_with_tokens_checked(
        platform, pages: AdminPages, database_url: str, name: str) -> None:
    status, kind, body = pages.respond("/metrics", f"token={platform.running.admin_token}")
    assert status == 200 and kind.startswith("text/plain; version=0.0.4")
    families = {f.name: f for f in text_string_to_metric_families(body.decode())}
    position = {s.labels["projection"]: s.value
                for s in families["salon_projection_position"].samples}
    with psycopg.connect(database_url) as conn:
        states = [json.loads(bytes(s)) for (s,) in conn.execute(
            "SELECT state FROM salon_events WHERE topic = %s AND notification_id <= %s",
            ("domain.agents:Agent.ModelCalled", position["metrics"]))]
    assert sum(s.value for s in families["salon_model_tokens"].samples) == \
        sum(s["input_tokens"] + s["output_tokens"] for s in states)
    assert sum(s.value for s in families["salon_model_cost_usd"].samples) == \
        pytest.approx(sum(s["cost_usd"] for s in states), rel=1e-9)
    assert {s.labels["projection"] for s in
            families["salon_projection_pending_events"].samples} == set(PROJECTIONS)

    admin = platform.running.admin_token
    assert pages.respond("/nothing-here", "") is None
    assert pages.respond("/admin/audit", "")[2].startswith(b"<!doctype html>")
    assert pages.respond("/admin/audit.json", f"agent={name}-bot")[0] == 401
    assert pages.respond("/admin/audit.json", "token=nobody.secret")[0] == 401
    member = _member_token(platform, name)
    assert pages.respond("/admin/audit.json", f"token={member}")[0] == 403
    assert pages.respond("/admin/audit.json", f"token={admin}&since=yesterday")[0] == 400
    status, _, body = pages.respond("/admin/audit.json", f"token={admin}&agent={name}-bot")
    assert status == 200
    assert [e["action"] for e in json.loads(body)["entries"]] == \
        ["agent_defined", "turn_started", "model_called", "turn_completed"]
    assert json.loads(pages.respond("/admin/audit/verify", f"token={admin}")[2])["ok"]
    status, _, body = pages.respond("/admin/projections/rebuild", f"token={admin}&name=nope")
    assert (status, json.loads(body)["error"]) == (404, "not_found")


def test_the_cli_reads_projections_jobs_and_the_audit_log(
        platform, pages: AdminPages, name: str, tmp_path: Path) -> None:
    served = Served(pages)
    runner = CliRunner()
    env = {"SALON_URL": served.url, "SALON_TOKEN": platform.running.admin_token}
    try:
        result = runner.invoke(cli.projections, ["status"], env=env)
        assert result.exit_code == 0, result.output
        lines = result.output.splitlines()
        assert lines[0].split()[:4] == ["NAME", "POSITION", "HEAD", "PENDING"]
        assert sorted(line.split()[0] for line in lines[1:]) == sorted(PROJECTIONS)

        result = runner.invoke(cli.audit, ["--agent", f"{name}-bot", "--action",
                                           "model_called"], env=env)
        assert result.exit_code == 0, result.output
        assert "model_called" in result.output and "model:scripted/echo" in result.output

        out = tmp_path / "audit.csv"
        result = runner.invoke(cli.audit, ["--agent", f"{name}-bot", "--format", "csv",
                                           "-o", str(out)], env=env)
        assert result.exit_code == 0 and "wrote 4 rows" in result.output, result.output
        assert out.read_text().splitlines()[0].startswith("position,stream_id")
        result = runner.invoke(cli.audit, ["--user", "alice", "--room", name, "--format",
                                           "jsonl"], env=env)
        assert [json.loads(line)["action"] for line in result.output.splitlines()] == \
            ["turn_started", "model_called", "turn_completed"]

        result = runner.invoke(cli.audit, ["verify"], env=env)
        assert result.exit_code == 0 and result.output.startswith("ok: "), result.output

        result = runner.invoke(cli.jobs, [], env=env)
        assert result.exit_code == 0 and "dead_letters: 0" in result.output, result.output

        result = runner.invoke(cli.projections, ["rebuild", "threads"], env=env)
        assert result.exit_code == 0 and "rebuilding threads" in result.output, result.output
        result = runner.invoke(cli.projections, ["rebuild", "nope"], env=env)
        assert result.exit_code == 3 and "no projection 'nope'" in result.output

        bad = {**env, "SALON_TOKEN": "nobody.secret"}
        result = runner.invoke(cli.audit, ["verify"], env=bad)
        assert result.exit_code == 8, result.output
    finally:
        served.close()
