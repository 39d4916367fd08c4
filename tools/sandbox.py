"""Running untrusted Python for ``run_python``: a fresh process boxed in by the kernel.

Layers, outermost first:
- a new network namespace (``unshare --net``) with only a loopback that is down, so no socket
  reaches anything, not even this machine's 127.0.0.1;
- when Salon runs as root, the program runs as an unprivileged user (``nobody`` by default), so
  the kernel refuses writes outside its own temporary directory (except world-writable places);
- resource limits set in ``preexec_fn``: CPU seconds, address space, file size, processes, open
  files, no core dumps; a wall-clock timeout kills the whole process group;
- ``python -I -B`` (isolated, no bytecode written) in a fresh temporary directory as cwd, with a
  bootstrap that installs an audit hook refusing sockets, process creation, native code loading
  and writes outside that directory (it is defence in depth, not the boundary: the kernel is).
"""

from __future__ import annotations

import asyncio
import math
import os
import resource
import shutil
import signal
import sys
import tempfile
import weakref
from collections.abc import Callable
from dataclasses import dataclass

from domain.errors import Unavailable

NOBODY = 65534

BOOTSTRAP = r'''
import os, sys
root, audit = os.path.realpath(sys.argv[1]), sys.argv[2] == "audit"
os.chdir(root)
if audit:
    def _install(root):
        real, join, getcwd = os.path.realpath, os.path.join, os.getcwd
        writing = os.O_WRONLY | os.O_RDWR | os.O_CREAT | os.O_TRUNC | os.O_APPEND
        targets = {"os.remove": (0,), "os.rename": (0, 1), "os.mkdir": (0,), "os.rmdir": (0,),
                   "os.chmod": (0,), "os.chown": (0,), "os.symlink": (1,), "os.link": (1,),
                   "os.truncate": (0,), "os.utime": (0,), "os.mkfifo": (0,), "os.mknod": (0,),
                   "shutil.rmtree": (0,), "shutil.copyfile": (1,), "shutil.copytree": (1,),
                   "shutil.move": (0, 1), "shutil.chown": (0,)}
        denied = ("subprocess.", "os.system", "os.exec", "os.posix_spawn", "os.spawn",
                  "os.fork", "os.forkpty", "os.kill", "os.killpg", "pty.", "ctypes.",
                  "gc.get_objects", "gc.get_referrers", "gc.get_referents")

        def inside(path):
            if isinstance(path, int):
                return True  # a descriptor already open
            try:
                full = real(join(getcwd(), os.fsdecode(path)))
            except Exception:
                return False
            return full == root or full.startswith(root + os.sep) or full == "/dev/null"

        def hook(event, args):
            if event.startswith("socket."):
                raise PermissionError("run_python has no network access: sockets are refused")
            if event.startswith(denied):
                raise PermissionError(f"run_python refuses {event}: programs may not start "
                                      "processes, send signals or load native code")
            if event == "open":
                path, mode, flags = args
                if not ((isinstance(flags, int) and flags & writing)
                        or (isinstance(mode, str) and any(c in mode for c in "wax+"))):
                    return
                paths = (path,)
            elif event in targets:
                paths = tuple(args[i] for i in targets[event] if i < len(args))
            else:
                return
            for path in paths:
                if path is not None and not inside(path):
                    raise PermissionError(f"run_python may not write to {path!r}: only files "
                                          "in its working directory can be written")

        sys.addaudithook(hook)

    _install(root)
    del _install
with open("main.py", encoding="utf-8") as _source:
    _code = compile(_source.read(), "main.py", "exec")
sys.argv = ["main.py"]
try:
    exec(_code, {"__name__": "__main__", "__builtins__": __builtins__})
except SystemExit:
    raise
except BaseException as _error:
    import traceback
    traceback.print_exception(type(_error), _error, _error.__traceback__.tb_next)
    sys.exit(1)
'''


@dataclass(frozen=True)
class SandboxLimits:
    """What one program may use."""

    cpu_seconds: int = 30  # the most a run may ask for; each run gets its timeout + 1
    memory_bytes: int = 512 * 2**20
    file_bytes: int = 8 * 2**20
    processes: int = 64
    open_files: int = 64
    output_bytes: int = 64_000


@dataclass(frozen=True)
class ProgramRun:
    """How a program ended and what it printed (each stream cut at the output limit)."""

    exit_status: int | None
    stdout: str
    stderr: str
    timed_out: bool
    truncated: bool

    @property
    def cpu_exhausted(self) -> bool:
        """Whether the kernel stopped it for using up its CPU seconds."""
        return self.exit_status in (-signal.SIGXCPU, -signal.SIGKILL) and not self.timed_out

    def render(self) -> str:
        """The output as the model reads it."""
        parts = []
        if self.stdout:
            parts.append(self.stdout.rstrip("\n"))
        if self.stderr:
            parts.append("stderr:\n" + self.stderr.rstrip("\n"))
        if self.truncated:
            parts.append("[output cut at the sandbox's limit]")
        return "\n".join(parts) if parts else "(no output; print() what you want to see)"


class Sandbox:
    """Runs Python code in a throwaway, network-less, resource-limited process."""

    def __init__(self, *, python: str | None = None, limits: SandboxLimits | None = None,
                 run_as: int | None = NOBODY, isolate_network: bool = True, audit: bool = True,
                 max_concurrent: int = 2) -> None:
        self.limits = limits or SandboxLimits()
        self.run_as = run_as if os.geteuid() == 0 else None
        self.isolate_network = isolate_network
        self.audit = audit
        self.max_concurrent = max_concurrent
        self._candidates = [python] if python else list(dict.fromkeys(
            p for p in (getattr(sys, "_base_executable", None), sys.executable,
                        "/usr/bin/python3") if p))
        self._python: str | None = None
        self._slots: weakref.WeakKeyDictionary[asyncio.AbstractEventLoop, asyncio.Semaphore] = \
            weakref.WeakKeyDictionary()

    async def check(self) -> str:
        """Find an interpreter that starts inside the sandbox, or raise ``Unavailable``."""
        if self._python is not None:
            return self._python
        problems = []
        for candidate in self._candidates:
            run = await self._start(candidate, "import sys\nprint(sys.version_info[0])", 10.0)
            if run.exit_status == 0 and run.stdout.strip() == "3":
                self._python = candidate
                return candidate
            problems.append(f"{candidate}: {(run.stderr or run.stdout).strip()[:200]}")
        raise Unavailable("run_python cannot start a sandboxed Python here ("
                          + "; ".join(problems) + "); it needs util-linux `unshare` and an "
                          "interpreter the sandbox user can read: pass Sandbox(python=...)")

    async def run(self, code: str, timeout: float) -> ProgramRun:
        """Run ``code`` as a script with a wall-clock ``timeout`` in seconds."""
        python = await self.check()
        loop = asyncio.get_running_loop()
        slots = self._slots.setdefault(loop, asyncio.Semaphore(self.max_concurrent))
        async with slots:
            return await self._start(python, code, timeout)

    def command(self, python: str, workdir: str) -> list[str]:
        """The command line that starts the bootstrap under the namespaces asked for."""
        wrapper: list[str] = []
        if self.isolate_network:
            wrapper = ["unshare", "--net"]
            if self.run_as is not None:
                wrapper += [f"--setuid={self.run_as}", f"--setgid={self.run_as}"]
            elif os.geteuid() != 0:
                wrapper += ["--user", "--map-current-user"]
            wrapper.append("--")
        return [*wrapper, python, "-I", "-B", "-c", BOOTSTRAP, workdir,
                "audit" if self.audit else "no-audit"]

    async def _start(self, python: str, code: str, timeout: float) -> ProgramRun:
        workdir = tempfile.mkdtemp(prefix="salon-run-")
        process: asyncio.subprocess.Process | None = None
        try:
            with open(os.path.join(workdir, "main.py"), "w", encoding="utf-8") as script:
                script.write(code)
            os.chmod(os.path.join(workdir, "main.py"), 0o644)
            if self.run_as is not None:
                os.chown(workdir, self.run_as, self.run_as)
            try:
                process = await asyncio.create_subprocess_exec(
                    *self.command(python, workdir), cwd=workdir, env=_environment(workdir),
                    stdin=asyncio.subprocess.DEVNULL, stdout=asyncio.subprocess.PIPE,
                    stderr=asyncio.subprocess.PIPE, start_new_session=True,
                    preexec_fn=self._preexec(timeout))
            except OSError as error:
                return ProgramRun(None, "", f"could not start the sandbox: {error}", False, False)
            return await self._collect(process, timeout)
        finally:
            if process is not None and process.returncode is None:
                _kill_group(process.pid)
            shutil.rmtree(workdir, ignore_errors=True)

    async def _collect(self, process: asyncio.subprocess.Process, timeout: float) -> ProgramRun:
        assert process.stdout is not None and process.stderr is not None
        out, err = _Capture(self.limits.output_bytes), _Capture(self.limits.output_bytes)
        readers = {asyncio.create_task(out.pump(process.stdout)),
                   asyncio.create_task(err.pump(process.stderr))}
        waiter = asyncio.create_task(process.wait())
        try:
            done, _ = await asyncio.wait({waiter}, timeout=timeout)
            timed_out = not done
            if timed_out:
                _kill_group(process.pid)
            status = await waiter
            # A grandchild that left the group could hold the pipes open; do not wait for it.
            _, pending = await asyncio.wait(readers, timeout=1.0)
        finally:
            for task in (*readers, waiter):
                task.cancel()
        return ProgramRun(status, out.text(), err.text(), timed_out,
                          out.truncated or err.truncated or bool(pending))

    def _preexec(self, timeout: float) -> Callable[[], None]:
        limits = self.limits
        cpu = max(1, min(limits.cpu_seconds, math.ceil(timeout) + 1))
        wanted = [(resource.RLIMIT_CPU, cpu, cpu + 1),
                  (resource.RLIMIT_AS, limits.memory_bytes, limits.memory_bytes),
                  (resource.RLIMIT_FSIZE, limits.file_bytes, limits.file_bytes),
                  (resource.RLIMIT_NOFILE, limits.open_files, limits.open_files),
                  (resource.RLIMIT_CORE, 0, 0)]
        if self.run_as is not None:
            # The process count is per real user: only bound it for a user of the sandbox's own.
            wanted.append((resource.RLIMIT_NPROC, limits.processes, limits.processes))
        # Compute in the parent: between fork and exec only async-signal-safe work belongs.
        settings = [(kind, _within(kind, soft), _within(kind, hard)) for kind, soft, hard in wanted]
        drop_to = self.run_as if not self.isolate_network else None

        def limit() -> None:
            for kind, soft, hard in settings:
                resource.setrlimit(kind, (soft, hard))
            if drop_to is not None:  # without unshare, drop privileges here instead
                os.setgroups([])
                os.setgid(drop_to)
                os.setuid(drop_to)

        return limit


class _Capture:
    """Reads a stream to its end, keeping the first ``limit`` bytes."""

    def __init__(self, limit: int) -> None:
        self.limit = limit
        self.data = bytearray()
        self.truncated = False

    async def pump(self, stream: asyncio.StreamReader) -> None:
        while chunk := await stream.read(65_536):
            room = self.limit - len(self.data)
            if len(chunk) > room:
                self.truncated = True
            if room > 0:
                self.data += chunk[:room]

    def text(self) -> str:
        return self.data.decode("utf-8", errors="replace")


def _within(kind: int, wanted: int) -> int:
    _, hard = resource.getrlimit(kind)
    return wanted if hard == resource.RLIM_INFINITY else min(wanted, hard)


def _kill_group(pid: int) -> None:
    try:
        os.killpg(pid, signal.SIGKILL)
    except (ProcessLookupError, PermissionError):
        pass


def _environment(workdir: str) -> dict[str, str]:
    return {"PATH": "/usr/bin:/bin", "HOME": workdir, "TMPDIR": workdir, "LANG": "C.UTF-8"}

