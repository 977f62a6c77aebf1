"""Shared pieces of the provisioning layer: the Server protocol, errors, ports, probes.

The probes speak just enough of each wire protocol (RESP, the Postgres startup packet)
to tell "accepting real connections" from "a port is open": Docker's userland proxy
accepts TCP before the server inside listens, and Postgres answers "starting up"
before it serves queries, so a bare TCP connect would report ready too early.
"""

from __future__ import annotations

import atexit
import contextlib
import logging
import os
import signal
import socket
import struct
import subprocess
import threading
import time
from collections.abc import Callable, Iterator, Sequence
from typing import Protocol, runtime_checkable
from urllib.parse import urlsplit, urlunsplit

log = logging.getLogger("sessionspec.provision")

KINDS = ("redis", "postgres", "redis-cluster")
LOOPBACK = "127.0.0.1"

# Postgres runs far from UTC and from any client (UTC+14) so app-clock/db-clock bugs show.
PG_TIMEZONE = "Pacific/Kiritimati"
PG_USER = "sessionspec"
PG_DB = "sessionspec"
# Speed over crash safety (throwaway data), a server time zone far from the client's,
# room for 1000-task concurrency tests through pools. jit=off: our local image has no LLVM.
PG_SETTINGS: dict[str, str] = {
    "fsync": "off",
    "synchronous_commit": "off",
    "full_page_writes": "off",
    "timezone": PG_TIMEZONE,
    "log_timezone": PG_TIMEZONE,
    "max_connections": "250",
    "jit": "off",
}
# Durable enough for FL-3: a stop is a clean SHUTDOWN, which fsyncs the AOF.
REDIS_ARGS: tuple[str, ...] = ("--save", "", "--appendonly", "yes", "--appendfsync", "everysec")


class ProvisionError(Exception):
    """No method could provide the server; the message has one line per method tried."""

    def __init__(self, message: str, attempts: Sequence[tuple[str, str]] = ()) -> None:
        self.attempts: list[tuple[str, str]] = list(attempts)
        lines = [message] + [f"  - {name}: {why}" for name, why in self.attempts]
        super().__init__("\n".join(lines))


class MethodUnavailable(Exception):
    """A method cannot be used here (missing engine, image, binary); try the next one."""


@runtime_checkable
class Server(Protocol):
    """A backend server for the suite; see provision() for what each field means."""

    kind: str
    url: str
    method: str
    controllable: bool
    persistent: bool

    def stop(self) -> None: ...

    def start(self) -> None: ...

    def close(self) -> None: ...


# ---------------------------------------------------------------- cleanup registry
_live: dict[int, Callable[[], None]] = {}
_live_lock = threading.Lock()


def register_cleanup(obj: object, close: Callable[[], None]) -> None:
    """Remember a live server so atexit (also reached after Ctrl-C) tears it down."""
    with _live_lock:
        _live[id(obj)] = close


def unregister_cleanup(obj: object) -> None:
    with _live_lock:
        _live.pop(id(obj), None)


def _close_all() -> None:
    with _live_lock:
        closers = list(_live.values())
        _live.clear()
    for close in closers:
        try:
            close()
        except Exception:
            log.exception("sessionspec: cleanup of a provisioned server failed")


atexit.register(_close_all)


# ---------------------------------------------------------------- ports and waiting
def free_ports(count: int, host: str = LOOPBACK) -> list[int]:
    """Distinct ports free right now on host (bind-to-0, all held until all are chosen)."""
    socks: list[socket.socket] = []
    try:
        for _ in range(count):
            s = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
            s.bind((host, 0))
            socks.append(s)
        return [s.getsockname()[1] for s in socks]
    finally:
        for s in socks:
            s.close()


def free_port(host: str = LOOPBACK) -> int:
    """A port free right now on host; the caller binds it soon after."""
    return free_ports(1, host)[0]


def wait_until(
    check: Callable[[], bool],
    *,
    timeout: float,
    what: str,
    interval: float = 0.02,
    alive: Callable[[], str | None] | None = None,
) -> None:
    """Poll check() until it is true; TimeoutError naming `what` after timeout seconds.

    alive() may return a reason the wait is hopeless (the process died), which ends the
    wait at once instead of at the deadline.
    """
    deadline = time.monotonic() + timeout
    last_error = ""
    while True:
        try:
            if check():
                return
        except OSError as exc:
            last_error = f" (last error: {exc})"
        if alive is not None:
            dead = alive()
            if dead:
                raise TimeoutError(f"{what}: {dead}")
        if time.monotonic() >= deadline:
            raise TimeoutError(f"{what}: not ready after {timeout:.0f} s{last_error}")
        time.sleep(interval)
        interval = min(interval * 1.5, 0.2)


def _recv_exact(sock: socket.socket, n: int) -> bytes:
    buf = b""
    while len(buf) < n:
        chunk = sock.recv(n - len(buf))
        if not chunk:
            raise ConnectionResetError("connection closed by peer")
        buf += chunk
    return buf


def resp_command(host: str, port: int, *args: str, timeout: float = 1.0) -> bytes:
    """Send one RESP command and return the raw reply (no redis-py needed here)."""
    payload = f"*{len(args)}\r\n".encode()
    for arg in args:
        raw = arg.encode()
        payload += b"$%d\r\n%s\r\n" % (len(raw), raw)
    with socket.create_connection((host, port), timeout=timeout) as sock:
        sock.sendall(payload)
        data = b""
        while True:
            chunk = sock.recv(65536)
            if not chunk:
                if data:
                    return data
                raise ConnectionResetError("connection closed by peer")
            data += chunk
            if data[:1] in (b"+", b"-", b":") and data.endswith(b"\r\n"):
                return data
            if data[:1] == b"$" and b"\r\n" in data:
                head, _, rest = data.partition(b"\r\n")
                size = int(head[1:])
                if size < 0 or len(rest) >= size + 2:
                    return data


def redis_ready(host: str, port: int) -> bool:
    """True when Redis answers PING with PONG (not LOADING, not a proxy hang-up)."""
    try:
        return resp_command(host, port, "PING").startswith(b"+PONG")
    except (OSError, ValueError):
        return False


def postgres_ready(host: str, port: int, user: str, database: str) -> bool:
    """True when Postgres gets as far as asking for authentication.

    A server that is starting, recovering or shutting down answers the startup packet
    with an error (SQLSTATE 57P03 and friends) instead, and a proxy with no server
    behind it hangs up; 'R' (an authentication request) means it accepts connections.
    """
    params = b"user\0" + user.encode() + b"\0database\0" + database.encode() + b"\0\0"
    packet = struct.pack("!ii", 8 + len(params), 196608) + params
    try:
        with socket.create_connection((host, port), timeout=1.0) as sock:
            sock.sendall(packet)
            return _recv_exact(sock, 1) == b"R"
    except OSError:
        return False


def port_refuses(host: str, port: int) -> bool:
    """True when nothing listens on host:port (connection refused)."""
    try:
        with socket.create_connection((host, port), timeout=0.5):
            return False
    except ConnectionRefusedError:
        return True
    except OSError:
        return False


# ---------------------------------------------------------------- processes
def _exited_unreaped(pid: int) -> bool:
    """True when pid has exited; leaves the zombie, so the pid (and group id) stays ours."""
    try:
        info = os.waitid(os.P_PID, pid, os.WEXITED | os.WNOHANG | os.WNOWAIT)
    except ChildProcessError:
        return True
    return info is not None


def terminate_group(proc: subprocess.Popen[bytes], sig: int | None, grace: float) -> None:
    """Send sig (if any) to the server, wait up to grace s, then SIGKILL its whole group.

    The server was started with start_new_session=True, so its group id is its pid: the
    group holds a postmaster's children and anything else the server forked. The leader
    is reaped only after killpg(), so the group id cannot have been reused meanwhile.
    """
    if proc.returncode is None:
        if sig is not None:
            with contextlib.suppress(ProcessLookupError):
                proc.send_signal(sig)
        deadline = time.monotonic() + grace
        delay = 0.005
        while not _exited_unreaped(proc.pid) and time.monotonic() < deadline:
            time.sleep(delay)
            delay = min(delay * 2, 0.1)
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.killpg(proc.pid, signal.SIGKILL)
    with contextlib.suppress(subprocess.TimeoutExpired):
        proc.wait(timeout=5)


def tail(path: str, lines: int = 15) -> str:
    """Last lines of a log file, for error messages."""
    try:
        with open(path, "rb") as fh:
            fh.seek(0, os.SEEK_END)
            fh.seek(max(0, fh.tell() - 8192))
            text = fh.read().decode(errors="replace")
    except OSError:
        return ""
    return "\n".join(text.splitlines()[-lines:])


def redact(url: str) -> str:
    """The URL with any password replaced by ***, for printing explicit URLs."""
    parts = urlsplit(url)
    if parts.password is None:
        return url
    host = parts.hostname or ""
    if ":" in host:
        host = f"[{host}]"
    netloc = f"{parts.username or ''}:***@{host}"
    if parts.port is not None:
        netloc += f":{parts.port}"
    return urlunsplit(parts._replace(netloc=netloc))


@contextlib.contextmanager
def cleanup_on_failure(close: Callable[[], None]) -> Iterator[None]:
    """Tear a half-started server down if setup fails or is interrupted (Ctrl-C)."""
    try:
        yield
    except BaseException:
        with contextlib.suppress(Exception):
            close()
        raise
