"""`salon up` as a user runs it: a subprocess on a temporary home and port, then the CLI."""

from __future__ import annotations

import os
import queue
import signal
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.clients import Client

START_DEADLINE = 120.0


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


class Up:
    """A running `salon up` whose output is read line by line."""

    def __init__(self, home: Path, port: int) -> None:
        self.env = {**os.environ, "SALON_HOME": str(home), "SALON_PORT": str(port),
                    "PYTHONUNBUFFERED": "1"}
        self.lines: queue.Queue[str] = queue.Queue()
        self.seen: list[str] = []
        self.process = subprocess.Popen([sys.executable, "-m", "salon.cli", "up"], env=self.env,
                                        stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                                        text=True)
        threading.Thread(target=self._read, daemon=True).start()

    def _read(self) -> None:
        assert self.process.stdout is not None
        for line in self.process.stdout:
            self.lines.put(line.rstrip("\n"))

    def wait_for(self, prefix: str, deadline: float = START_DEADLINE) -> str:
        end = time.monotonic() + deadline
        while time.monotonic() < end:
            try:
                line = self.lines.get(timeout=0.5)
            except queue.Empty:
                if self.process.poll() is not None and self.lines.empty():
                    break
                continue
            self.seen.append(line)
            if line.startswith(prefix):
                return line
        raise AssertionError(f"no line starting {prefix!r}; output was:\n" + "\n".join(self.seen))

    def cli(self, *args: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run([sys.executable, "-m", "salon.cli", *args], env=self.env,
                              capture_output=True, text=True, timeout=120)

    def stop(self) -> int:
        self.process.send_signal(signal.SIGTERM)
        code = self.process.wait(timeout=120)
        self.wait_for("Salon stopped", deadline=5)
        return code


@pytest.fixture
def home(tmp_path: Path) -> Iterator[Path]:
    yield tmp_path / "home"


async def test_salon_up_chats_stops_on_sigterm_and_keeps_history(home: Path) -> None:
    port = free_port()
    up = Up(home, port)
    try:
        login = up.wait_for("log in as admin: ")
        assert f"http://127.0.0.1:{port}/?token=admin." in login
        token = (home / "admin.token").read_text().strip()
        assert login.endswith(token)

        second = up.cli("up")
        assert second.returncode == 1 and "already running" in second.stderr

        client = await Client.open(f"ws://127.0.0.1:{port}/v1/ws", token)
        await client.ok({"type": "join", "room": "lobby", "since": 0})
        await client.wait_for(lambda c: {"ada", "bo"} <= {m["author_id"]
                                                          for m in c.messages("lobby")},
                              "the demo agents' opening lines")
        said = await client.ok({"type": "say", "room": "lobby", "text": "hello @ada"})
        await client.wait_for(lambda c: any(e["position"] > said["position"]
                                            and e["event"].get("author_id") == "ada"
                                            for e in c.events), "ada's answer")
        transcript = [(m["author_id"], m["text"]) for m in client.messages("lobby")]
        await client.close()

        assert up.cli("rooms", "create", "garden", "--topic", "plants").returncode == 0
        created = up.cli("agents", "create", "fern", "--room", "garden",
                         "--script", "fern says {text}")
        assert created.returncode == 0, created.stderr
        assert "garden" in up.cli("rooms", "list").stdout
        assert "fern" in up.cli("agents", "list").stdout
        said = up.cli("say", "garden", "hi @fern")
        assert said.returncode == 0 and "at position" in said.stdout, said.stderr
        shown = up.cli("agents", "show", "fern")
        assert shown.returncode == 0 and "--- system prompt ---" in shown.stdout
        remembered = up.cli("agents", "memory", "fern", "--add", "the fig needs water on Fridays",
                            "--importance", "8")
        assert remembered.returncode == 0 and remembered.stdout.startswith("remembered ")
        memory_id = remembered.stdout.split()[1]
        for _ in range(100):  # the memory projection follows the log
            scored = up.cli("agents", "memory", "fern", "--query", "when to water the fig")
            if memory_id in scored.stdout:
                break
            time.sleep(0.2)
        assert "RELEVANCE" in scored.stdout and memory_id in scored.stdout, scored.stdout
        bad = up.cli("agents", "memory", "fern", "--add", "x", "--delete", "y")
        assert bad.returncode == 2 and "give one of --add, --delete" in bad.stderr
        notes = home / "notes.txt"
        notes.write_text("Figs like a sunny wall and little water once established.\n")
        added = up.cli("knowledge", "add", "garden-notes", str(notes))
        assert added.returncode == 0 and "added 'notes.txt' to garden-notes" in added.stdout, \
            added.stderr
        found = up.cli("knowledge", "search", "garden-notes", "where should a fig grow?")
        assert found.returncode == 0 and "sunny wall" in found.stdout, found.stdout
        models = up.cli("models", "list", "--provider", "anthropic")
        assert models.returncode == 0 and "claude" in models.stdout, models.stderr
        assert up.cli("agents", "pause", "fern").stdout.strip() == "fern is paused"
        assert up.cli("agents", "resume", "fern").stdout.strip() == "fern is active"
        policy = up.cli("rooms", "policy", "garden", "--mode", "round_robin")
        assert policy.returncode == 0, policy.stderr
        halted = up.cli("agents", "stop", "--all", "--reason", "drill")
        assert halted.returncode == 0 and "stopped 3 agents" in halted.stdout, halted.stdout
        minted = up.cli("token", "create", "bob")
        assert minted.returncode == 0 and minted.stdout.startswith("bob.")
        missing = up.cli("say", "nowhere", "hi")
        assert missing.returncode == 3 and "does not exist" in missing.stderr

        assert up.stop() == 0
        assert not (home / "run.json").exists()
        after = up.cli("rooms", "list")
        assert after.returncode == 7 and "no Salon is running" in after.stderr

        up = Up(home, port)
        up.wait_for("log in as admin: ")
        client = await Client.open(f"ws://127.0.0.1:{port}/v1/ws", token)
        history = await client.ok({"type": "history", "room": "lobby", "limit": 500})
        again = [(e["event"]["author_id"], e["event"]["text"]) for e in history["events"]
                 if e["event"]["kind"] == "message_posted"]
        assert again == transcript
        garden = await client.ok({"type": "history", "room": "garden"})
        assert any(e["event"].get("text") == "fern says hi @fern" for e in garden["events"])
        fern = await client.ok({"type": "show_agent", "agent": "fern"})
        assert fern["status"] == "stopped", "the emergency stop did not survive a restart"
        await client.close()
    finally:
        if up.process.poll() is None:
            up.stop()
