"""run_python: no network, no writes outside its directory, killed at its timeout.

Each boundary is tested twice where it can be: through the tool (audit hook and jail
together), and with the audit hook off, so the kernel's part (network namespace, a root of its
own) is shown to hold on its own. ``tests/security/test_sandbox_escapes.py`` tries the escapes.
"""

from __future__ import annotations

import os
import socket
from collections.abc import Iterator
from pathlib import Path

import pytest

from tools import RunPython, Sandbox, ToolContext, ToolExecutor, ToolOutcome, ToolRegistry


@pytest.fixture
def listener() -> Iterator[socket.socket]:
    """A TCP server on this machine's loopback that nothing should reach."""
    server = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    server.bind(("127.0.0.1", 0))
    server.listen()
    server.setblocking(False)
    try:
        yield server
    finally:
        server.close()


def nobody_connected(server: socket.socket) -> bool:
    try:
        server.accept()[0].close()
    except BlockingIOError:
        return True
    return False


async def run(sandbox: Sandbox, ctx: ToolContext, code: str, **arguments: object) -> ToolOutcome:
    executor = ToolExecutor(ToolRegistry([RunPython(sandbox)]), allowed=["run_python"],
                            permissions=["code"])
    return await executor.execute("run_python", {"code": code, **arguments}, ctx)


async def test_it_runs_code_and_returns_what_it_printed(sandbox: Sandbox,
                                                        ctx: ToolContext) -> None:
    outcome = await run(sandbox, ctx, "import math\nprint(math.factorial(20))\n"
                                      "open('notes.txt', 'w').write('kept')\n"
                                      "print(open('notes.txt').read())")
    assert (outcome.status, outcome.result) == ("ok", "2432902008176640000\nkept")


async def test_it_cannot_open_a_network_socket(sandbox: Sandbox, ctx: ToolContext,
                                               listener: socket.socket) -> None:
    port = listener.getsockname()[1]
    outcome = await run(sandbox, ctx, "import socket\n"
                                      f"socket.create_connection(('127.0.0.1', {port}), 2)\n"
                                      "print('connected')")
    assert outcome.status == "error"
    assert "PermissionError: run_python has no network access" in outcome.result
    assert "connected" not in outcome.result.splitlines()
    assert nobody_connected(listener)


async def test_the_network_namespace_blocks_sockets_even_without_the_hook(
        ctx: ToolContext, listener: socket.socket) -> None:
    port = listener.getsockname()[1]
    outcome = await run(Sandbox(audit=False), ctx, "import socket\n"
                        f"socket.create_connection(('127.0.0.1', {port}), 2)")
    assert outcome.status == "error"
    # the jail's own loopback: nothing listens there, and this machine's is out of reach
    assert "ConnectionRefusedError" in outcome.result or "unreachable" in outcome.result
    assert nobody_connected(listener)


async def test_it_cannot_write_outside_its_directory(sandbox: Sandbox, ctx: ToolContext,
                                                     tmp_path: Path) -> None:
    # The host's /tmp is not in the jail (its /tmp is its own), so use a directory it shows.
    outcome = await run(sandbox, ctx, "open('/usr/lib/escaped.txt', 'w').write('out')")
    moved = await run(sandbox, ctx, "import os\nos.mkdir('/usr/made')")
    host = await run(sandbox, ctx, f"open({str(tmp_path / 'escaped.txt')!r}, 'w').write('out')")
    assert outcome.status == "error"
    assert "run_python may not write to '/usr/lib/escaped.txt'" in outcome.result
    assert moved.status == "error" and "may not write to" in moved.result
    assert host.status == "error"
    assert list(tmp_path.iterdir()) == []
    assert not os.path.exists("/usr/lib/escaped.txt") and not os.path.exists("/usr/made")


async def test_the_jail_blocks_writes_even_without_the_hook(ctx: ToolContext,
                                                            tmp_path: Path) -> None:
    target = tmp_path / "escaped.txt"
    outcome = await run(Sandbox(audit=False), ctx, f"open({str(target)!r}, 'w').write('out')")
    usr = await run(Sandbox(audit=False), ctx, "open('/usr/lib/escaped.txt', 'w')")
    assert outcome.status == "error" and "No such file or directory" in outcome.result
    assert usr.status == "error" and "Read-only file system" in usr.result
    assert not target.exists() and not os.path.exists("/usr/lib/escaped.txt")


async def test_a_busy_loop_is_killed_at_its_timeout(sandbox: Sandbox, ctx: ToolContext) -> None:
    outcome = await run(sandbox, ctx, "print('started', flush=True)\nwhile True: pass",
                        timeout_seconds=0.5)
    assert outcome.status == "timeout"
    assert outcome.result.startswith("the program ran longer than 0.5 s and was stopped")
    assert outcome.result.endswith("Output so far:\nstarted")


@pytest.mark.parametrize(("code", "says"), [
    ("import subprocess\nsubprocess.run(['id'])", "run_python refuses subprocess.Popen"),
    ("import os\nos.system('id')", "run_python refuses os.system"),
    ("import ctypes", "run_python refuses ctypes.dlopen"),
    ("data = bytearray(2 * 1024 ** 3)", "MemoryError"),
    ("print(1 +)", "SyntaxError"),
    ("raise SystemExit(3)", "exit status 3"),
])
async def test_refusals_and_failures_come_back_as_tool_errors(sandbox: Sandbox, ctx: ToolContext,
                                                              code: str, says: str) -> None:
    outcome = await run(sandbox, ctx, code)
    assert outcome.status == "error"
    assert outcome.result.startswith("the program failed (exit status")
    assert says in outcome.result


async def test_output_is_capped(sandbox: Sandbox, ctx: ToolContext) -> None:
    outcome = await run(sandbox, ctx, "print('y' * 1_000_000)")
    assert outcome.status == "ok"
    assert len(outcome.result) < 11_000
    assert "[output truncated: showing the first 10000 of" in outcome.result


async def test_it_needs_the_code_permission(sandbox: Sandbox, ctx: ToolContext) -> None:
    executor = ToolExecutor(ToolRegistry([RunPython(sandbox)]), allowed=["run_python"])
    outcome = await executor.execute("run_python", {"code": "print(1)"}, ctx)
    assert outcome.status == "refused" and "needs the permission(s) code" in outcome.result
