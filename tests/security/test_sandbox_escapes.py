"""Escapes from ``run_python``'s jail, each checked from outside: the host file absent, the
listener silent, no process left.

Most escapes run with the audit hook off (``raw``), so the kernel's part is shown to hold on
its own; where the hook is the point (``_posixsubprocess``, ``dir_fd``) it is tried on too.
The processes a program starts carry a ``comm`` name of the test's making (``prctl``), which the
test looks for in the host's ``/proc`` after the run.
"""

from __future__ import annotations

import asyncio
import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest

from domain.errors import RateLimited, Unavailable
from tools import Sandbox, SandboxLimits
from tools.sandbox import ProgramRun

LIMITS = SandboxLimits()
NAME_PROCESS = ("import ctypes\n"
                "ctypes.CDLL(None).prctl(15, {token!r}.encode(), 0, 0, 0)  # PR_SET_NAME\n")


@pytest.fixture(scope="module")
def raw() -> Sandbox:
    """The jail alone, without the audit hook."""
    return Sandbox(audit=False)


@pytest.fixture(scope="module")
def hooked() -> Sandbox:
    """The jail with the audit hook, as run_python uses it."""
    return Sandbox()


@pytest.fixture
def token() -> str:
    return "sx" + uuid.uuid4().hex[:12]  # fits the 15 characters of a comm name


def processes_named(token: str) -> list[int]:
    """Host processes whose comm is ``token``."""
    found = []
    for entry in os.listdir("/proc"):
        if entry.isdigit():
            try:
                with open(f"/proc/{entry}/comm") as comm:
                    if comm.read().strip() == token:
                        found.append(int(entry))
            except OSError:
                pass
    return found


def ok(run: ProgramRun) -> str:
    assert run.exit_status == 0 and not run.timed_out, run
    return run.stdout


# -- what the issue found ----------------------------------------------------------------------

async def test_posixsubprocess_fork_exec_is_refused_by_the_hook(hooked: Sandbox) -> None:
    run = await hooked.run("import _posixsubprocess\n_posixsubprocess.fork_exec(['/bin/sh'])",
                           5)
    again = await hooked.run("import sys\ndel sys.modules['_posixsubprocess']\n"
                             "import _posixsubprocess", 5)
    assert run.exit_status == 1 and "run_python refuses to start processes" in run.stderr
    assert again.exit_status == 1 and "refuses to import _posixsubprocess" in again.stderr


async def test_a_process_started_anyway_stays_in_the_jail(raw: Sandbox, tmp_path: Path) -> None:
    target = tmp_path / "from-child"
    code = f"""import subprocess, sys
try:
    subprocess.run(['/bin/sh', '-c', 'id'])
except FileNotFoundError:
    print('no shell')
r = subprocess.run([sys.executable, '-c', "open({str(target)!r}, 'w')"], capture_output=True,
                   text=True)
print(r.returncode, r.stderr.splitlines()[-1])
"""
    run = await raw.run(code, 5)
    assert ok(run).splitlines() == [
        "no shell", f"1 FileNotFoundError: [Errno 2] No such file or directory: '{target}'"]
    assert not target.exists()


async def test_a_setsid_sleeper_does_not_outlive_the_run(raw: Sandbox, token: str,
                                                         tmp_path: Path) -> None:
    late = tmp_path / "late"
    code = NAME_PROCESS.format(token=token) + (
        "import os, time\n"
        "if os.fork() == 0:\n"
        "    os.setsid()\n"
        "    time.sleep(4)\n"
        f"    open({str(late)!r}, 'w').write('late')\n"
        "    os._exit(0)\n"
        "print('left one behind')\n")
    run = await raw.run(code, 5)
    assert ok(run) == "left one behind\n"
    assert processes_named(token) == []  # the kernel killed the pid namespace already
    deadline = time.monotonic() + 4.5
    while time.monotonic() < deadline:  # the escape is time-based: wait out its 4 s once
        assert not late.exists()
        await asyncio.sleep(0.25)
    assert not late.exists() and processes_named(token) == []


async def test_a_timed_out_run_leaves_no_process(raw: Sandbox, token: str) -> None:
    code = NAME_PROCESS.format(token=token) + (
        "import os, time\nfor _ in range(3):\n    if os.fork() == 0:\n        os.setsid()\n"
        "        break\nprint('waiting', flush=True)\nwhile True: time.sleep(1)\n")
    run = await raw.run(code, 2.0)  # long enough to start under load
    assert run.timed_out and "waiting" in run.stdout
    assert processes_named(token) == []


@pytest.mark.parametrize("hook", [True, False], ids=["hooked", "raw"])
async def test_dir_fd_does_not_write_outside(hook: bool, raw: Sandbox, hooked: Sandbox) -> None:
    name = f"salon-escape-{uuid.uuid4().hex}"
    code = ("import os\n"
            "fd = os.open('/tmp', os.O_RDONLY)\n"
            f"os.close(os.open({name!r}, os.O_CREAT | os.O_WRONLY, dir_fd=fd))\n"
            "usr = os.open('/usr/lib', os.O_RDONLY)\n"
            f"os.open({name!r}, os.O_CREAT | os.O_WRONLY, dir_fd=usr)\n")
    run = await (hooked if hook else raw).run(code, 5)
    assert run.exit_status == 1
    says = "may not write to" if hook else "Read-only file system"
    assert says in run.stderr
    assert not os.path.exists(f"/tmp/{name}") and not os.path.exists(f"/usr/lib/{name}")


async def test_the_hook_still_lets_dir_fd_work_inside(hooked: Sandbox) -> None:
    run = await hooked.run("import os, shutil\nos.makedirs('a/b/c')\nopen('a/b/c/f', 'w')\n"
                           "shutil.rmtree('a')\nfd = os.open('.', os.O_RDONLY)\n"
                           "os.close(os.open('g', os.O_CREAT | os.O_WRONLY, dir_fd=fd))\n"
                           "print(sorted(os.listdir('.')))", 5)
    assert ok(run) == "['g', 'main.py']\n"


async def test_concurrent_runs_see_neither_files_nor_processes_of_each_other(
        raw: Sandbox) -> None:
    first = ("import time\nopen('secret', 'w').write('mine')\nopen('/tmp/secret', 'w')\n"
             "time.sleep(1.5)\nprint(open('main.py').read().count('secret'))")
    second = ("import os, time\ntime.sleep(0.3)\nalive = []\nfor pid in range(1, 400):\n"
              "    try:\n        os.kill(pid, 0)\n        alive.append(pid)\n"
              "    except ProcessLookupError:\n        pass\n"
              "print(sorted(os.listdir('.')), os.listdir('/tmp'))\nprint(alive)")
    a, b = await asyncio.gather(raw.run(first, 5), raw.run(second, 5))
    assert ok(a) == "3\n"  # its main.py is its own, untouched
    assert ok(b) == "['main.py'] []\n[1, 2]\n"  # bwrap's pid 1 and itself


async def test_no_secret_of_the_server_is_visible(raw: Sandbox, tmp_path: Path,
                                                  monkeypatch: pytest.MonkeyPatch) -> None:
    home = tmp_path / "salon-home"
    home.mkdir()
    (home / "admin.token").write_text("s3cr3t-admin-token")
    monkeypatch.setenv("SALON_HOME", str(home))
    monkeypatch.setenv("SALON_DATABASE_URL", "postgresql://salon:hunter2@/salon")
    code = ("import os\nprint(sorted(os.environ))\n"
            f"for p in [{str(home / 'admin.token')!r}, '/etc/shadow', '/proc/1/environ',"
            " '/proc/self/environ', '/root/.bash_history']:\n"
            "    try:\n        print(open(p).read())\n"
            "    except OSError as e:\n        print(type(e).__name__)\n")
    out = ok(await raw.run(code, 5))
    assert out.splitlines()[0] == "['HOME', 'LANG', 'PATH', 'PWD', 'TMPDIR']"
    assert out.splitlines()[1:] == ["FileNotFoundError"] * 5
    assert "s3cr3t" not in out and "hunter2" not in out


# -- the network ------------------------------------------------------------------------------

@pytest.fixture
def tcp_listener() -> Iterator[socket.socket]:
    server = socket.create_server(("127.0.0.1", 0))
    server.setblocking(False)
    try:
        yield server
    finally:
        server.close()


@pytest.fixture
def unix_listeners(tmp_path: Path) -> Iterator[tuple[str, str, list[socket.socket]]]:
    path, abstract = str(tmp_path / "salon.sock"), f"\0salon-test-{uuid.uuid4().hex}"
    servers = []
    for address in (path, abstract):
        server = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        server.bind(address)
        server.listen()
        server.setblocking(False)
        servers.append(server)
    try:
        yield path, abstract, servers
    finally:
        for server in servers:
            server.close()


def silent(server: socket.socket) -> bool:
    try:
        server.accept()[0].close()
    except BlockingIOError:
        return True
    return False


async def test_the_hosts_loopback_is_out_of_reach(raw: Sandbox,
                                                  tcp_listener: socket.socket) -> None:
    port = tcp_listener.getsockname()[1]
    run = await raw.run("import socket\n"
                        f"socket.create_connection(('127.0.0.1', {port}), 2)", 5)
    assert run.exit_status == 1 and "ConnectionRefusedError" in run.stderr
    assert silent(tcp_listener)


async def test_unix_sockets_of_the_host_are_out_of_reach(
        raw: Sandbox, unix_listeners: tuple[str, str, list[socket.socket]]) -> None:
    path, abstract, servers = unix_listeners
    code = ("import socket\n"
            f"for address in [{path!r}, {abstract!r}]:\n"
            "    s = socket.socket(socket.AF_UNIX)\n"
            "    try:\n        s.connect(address)\n        print('connected')\n"
            "    except OSError as e:\n        print(type(e).__name__)\n")
    assert ok(await raw.run(code, 5)) == "FileNotFoundError\nConnectionRefusedError\n"
    assert all(silent(server) for server in servers)


async def test_raw_and_packet_sockets_are_refused(raw: Sandbox) -> None:
    code = ("import socket\n"
            "for family, kind in [(socket.AF_INET, socket.SOCK_RAW),"
            " (socket.AF_PACKET, socket.SOCK_RAW), (socket.AF_NETLINK, socket.SOCK_DGRAM)]:\n"
            "    try:\n        socket.socket(family, kind)\n        print('opened')\n"
            "    except OSError as e:\n        print(e.errno)\n")
    assert ok(await raw.run(code, 5)) == "1\n1\n97\n"  # EPERM, EPERM, EAFNOSUPPORT


# -- the kernel's other doors -----------------------------------------------------------------

async def test_ctypes_syscalls_are_refused_by_seccomp(raw: Sandbox) -> None:
    code = ("import ctypes\nlibc = ctypes.CDLL(None, use_errno=True)\n"
            "for name, number, args in [('unshare', 272, (0x10000000,)), ('ptrace', 101,"
            " (16, 1, 0, 0)), ('mount', 165, (0, 0, 0, 0, 0)), ('bpf', 321, (0, 0, 0)),"
            " ('keyctl', 250, (0, 0)), ('setns', 308, (0, 0)), ('init_module', 175,"
            " (0, 0, 0))]:\n"
            "    print(name, libc.syscall(number, *args), ctypes.get_errno())\n")
    lines = ok(await raw.run(code, 5)).splitlines()
    assert lines == [f"{name} -1 1" for name in
                     ("unshare", "ptrace", "mount", "bpf", "keyctl", "setns", "init_module")]


async def test_a_fork_bomb_is_bounded_and_leaves_nothing(raw: Sandbox, token: str) -> None:
    code = NAME_PROCESS.format(token=token) + (
        "import os, time\nforked = 0\n"
        "try:\n    while True:\n        if os.fork() == 0:\n            time.sleep(30)\n"
        "            os._exit(0)\n        forked += 1\n"
        "except OSError as e:\n    print(forked, e.errno)\n")
    started = time.monotonic()
    run = await raw.run(code, 10)
    forked, error = ok(run).split()
    assert int(forked) < LIMITS.processes and error == "11"  # EAGAIN
    assert time.monotonic() - started < 5
    assert processes_named(token) == []


async def test_signals_reach_nothing_outside(raw: Sandbox) -> None:
    helper = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(30)"])
    try:
        code = ("import os, signal\n"
                f"for pid in [os.getppid(), {os.getpid()}, {helper.pid}, -1]:\n"
                "    try:\n        os.kill(pid, signal.SIGKILL)\n        print(pid, 'sent')\n"
                "    except OSError as e:\n        print(pid, type(e).__name__)\n")
        run = await raw.run(code, 5)
        assert helper.poll() is None, run
        assert f"{helper.pid} ProcessLookupError" in run.stdout or run.exit_status == -9
    finally:
        helper.send_signal(signal.SIGKILL)
        helper.wait()


async def test_writing_a_gibibyte_across_many_files_stops_at_the_run_limit(
        raw: Sandbox) -> None:
    code = ("import os\nwritten = 0\nchunk = b'x' * 2**20\n"
            "try:\n    for i in range(1024):\n"
            "        target = f'/tmp/f{i}' if i % 2 else f'f{i}'\n"
            "        with open(target, 'wb') as f:\n            f.write(chunk)\n"
            "        written += len(chunk)\n"
            "except OSError as e:\n    print(written, e.errno)\n")
    written, error = ok(await raw.run(code, 10)).split()
    assert int(written) <= LIMITS.disk_bytes and error == "28"  # ENOSPC


async def test_filling_tmp_stops_at_the_run_limit(raw: Sandbox) -> None:
    code = ("written = 0\ntry:\n    with open('/tmp/fill', 'wb') as f:\n"
            "        while True:\n            written += f.write(b'x' * 65536)\n"
            "            f.flush()\n"
            "except OSError as e:\n    print(written, e.errno)\n")
    written, error = ok(await raw.run(code, 10)).split()
    assert int(written) <= LIMITS.disk_bytes and error in ("27", "28")  # EFBIG / ENOSPC


async def test_no_device_but_null_and_urandom(raw: Sandbox) -> None:
    code = ("import os\nprint(sorted(os.listdir('/dev')), sorted(os.listdir('/')))\n"
            "print(len(open('/dev/urandom', 'rb').read(8)))")
    assert ok(await raw.run(code, 5)) == (
        "['null', 'urandom'] ['bin', 'dev', 'lib', 'lib64', 'sandbox', 'tmp', 'usr']\n8\n")


# -- what users need --------------------------------------------------------------------------

async def test_the_standard_library_arithmetic_and_files_work(hooked: Sandbox) -> None:
    code = ("import json, re, math, decimal, fractions, statistics, datetime, collections,"
            " itertools, hashlib, sqlite3, tempfile, csv, random\n"
            "print(2 ** 100, fractions.Fraction(1, 3) + 1, statistics.mean([1, 2, 3, 4]))\n"
            "open('data.json', 'w').write(json.dumps({'a': [1, 2]}))\n"
            "print(json.load(open('data.json')))\n"
            "with tempfile.NamedTemporaryFile('w') as t:\n    print(t.name.startswith('/tmp/'))\n"
            "db = sqlite3.connect('x.db'); db.execute('create table t (v)')\n"
            "print(hashlib.sha256(b'salon').hexdigest()[:8])")
    assert ok(await hooked.run(code, 10)).splitlines() == [
        "1267650600228229401496703205376 4/3 2.5", "{'a': [1, 2]}", "True", "1a26b7de"]


async def test_output_up_to_the_cap_and_a_clear_timeout(hooked: Sandbox) -> None:
    full = await hooked.run(f"print('y' * {LIMITS.output_bytes - 1})", 5)
    over = await hooked.run(f"print('y' * {LIMITS.output_bytes})", 5)
    slow = await hooked.run("print('started', flush=True)\nwhile True: pass", 2.0)
    assert len(full.stdout) == LIMITS.output_bytes and not full.truncated
    assert len(over.stdout) == LIMITS.output_bytes and over.truncated
    assert slow.timed_out and slow.stdout == "started\n"


async def test_runs_beyond_the_queue_are_refused(raw: Sandbox) -> None:
    busy = Sandbox(audit=False, max_concurrent=1, max_queued=1)
    await busy.check()
    results = await asyncio.gather(*(busy.run("import time; time.sleep(0.5)", 5)
                                     for _ in range(3)), return_exceptions=True)
    assert [type(r) for r in results] == [ProgramRun, ProgramRun, RateLimited]
    assert "run_python is busy" in str(results[2])


async def test_without_a_working_jail_it_is_unavailable_not_unjailed(tmp_path: Path) -> None:
    with pytest.raises(Unavailable, match="cannot start its jail"):
        await Sandbox(bwrap=str(tmp_path / "no-bwrap")).check()
    # A kernel without user namespaces: run the check where creating one is disabled.
    bwrap = Sandbox()
    await bwrap.check()
    assert bwrap._bwrap is not None
    script = ("import asyncio\nfrom tools.sandbox import Sandbox\n"
              "try:\n    asyncio.run(Sandbox().check())\n    print('ran')\n"
              "except Exception as e:\n    print(type(e).__name__, e)\n")
    child = await asyncio.create_subprocess_exec(
        bwrap._bwrap, "--unshare-user", "--disable-userns", "--bind", "/", "/",
        "--dev", "/dev", "--proc", "/proc", "--", sys.executable, "-c", script,
        cwd=str(Path(__file__).parents[2]), stdout=asyncio.subprocess.PIPE)
    out, _ = await asyncio.wait_for(child.communicate(), 30)
    assert out.decode().startswith("Unavailable run_python cannot start its jail"), out


@pytest.mark.skipif(os.geteuid() != 0, reason="switching to another user needs root")
def test_the_escapes_hold_for_a_salon_that_is_not_root() -> None:
    """As an ordinary user: the jail starts, a fork bomb is bounded, the user's files stay out."""
    tmp_path = Path(tempfile.mkdtemp(prefix="salon-nonroot-"))  # pytest's is root's only
    script = tmp_path / "nonroot.py"
    script.write_text(
        "import asyncio, os, sys\nfrom tools.sandbox import Sandbox\n"
        "async def main():\n    s = Sandbox(audit=False)\n    await s.check()\n"
        "    bomb = await s.run('import os\\nn = 0\\ntry:\\n    while True:\\n'\n"
        "        '        if os.fork() == 0:\\n            import time; time.sleep(9)\\n'\n"
        "        '        n += 1\\nexcept OSError as e:\\n    print(n, e.errno)', 10)\n"
        "    peek = await s.run(f'print(open({sys.argv[1]!r}).read())', 5)\n"
        "    print(os.getuid(), bomb.stdout.strip(), 'FileNotFoundError' in peek.stderr)\n"
        "asyncio.run(main())\n")
    secret = tmp_path / "admin.token"
    secret.write_text("s3cr3t")
    os.chmod(secret, 0o600)
    for path in (tmp_path, script, secret):
        os.chown(path, 65534, 65534)
    # The venv's interpreter lives under /root; nobody runs the system's 3.11 with its packages.
    python = "/usr/bin/python3.11"
    if not os.access(python, os.X_OK) or sys.version_info[:2] != (3, 11):
        pytest.skip("needs the system's python3.11 to match the venv's")
    site = [p for p in sys.path if p.endswith("site-packages")]
    root = str(Path(__file__).parents[2])
    env = {"PATH": "/usr/bin:/bin", "PYTHONPATH": ":".join([root, *site])}
    try:
        done = subprocess.run(["setpriv", "--reuid=65534", "--regid=65534", "--clear-groups",
                               python, str(script), str(secret)], env=env, cwd="/",
                              capture_output=True, text=True, timeout=40)
    finally:
        shutil.rmtree(tmp_path, ignore_errors=True)
    assert done.returncode == 0, done.stderr
    uid, forked, error, hidden = done.stdout.split()
    assert uid == "65534" and int(forked) < LIMITS.processes and error == "11"
    assert hidden == "True"
