"""Servers in Docker containers through testcontainers, reachable on loopback only.

Choices, and why:
- Ryuk is disabled (it is an image to pull, and hangs rootless/DinD); we remove our
  containers ourselves in close() and atexit, and reap ones whose owner process died.
- The host port is a FIXED free port bound on 127.0.0.1, so stop()/start() (docker
  stop/start of the same container) keep the URL valid, and nothing listens beyond
  loopback. URLs are built from 127.0.0.1 directly (testcontainers' docker_host mode
  with TC_HOST=127.0.0.1, without depending on env read at its import time).
- Readiness is our own protocol probe: Docker's proxy accepts TCP before the server
  inside listens, and testcontainers' waits poll once a second.
- Nothing is ever pulled: a missing image is a reason to try the next method.
"""

from __future__ import annotations

import contextlib
import os
import secrets
import socket
from collections.abc import Callable, Iterator
from typing import Any

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
    unregister_cleanup,
    wait_until,
)
from .images import image_for, image_present, missing_image_reason

LABEL = "org.sessionspec.provision"
OWNER_LABEL = "org.sessionspec.owner"
PING_TIMEOUT = 3.0  # an engine that does not answer in this long is treated as absent
STOP_GRACE = 30


def docker_client() -> Any:
    """A docker client whose engine answered a ping; MethodUnavailable otherwise."""
    try:
        import docker
    except ImportError:
        raise MethodUnavailable("the docker package is not installed (pip install 'sessionspec[docker]')") from None
    try:
        client = docker.from_env(timeout=int(PING_TIMEOUT))
        client.ping()
    except Exception as exc:  # any failure here means "no engine"
        first = str(exc).splitlines()[0][:200] if str(exc) else type(exc).__name__
        raise MethodUnavailable(f"no Docker engine answers ({first})") from None
    return client


def _container_classes() -> tuple[type[Any], type[Any]]:
    """RedisContainer, PostgresContainer from the current import path (4.x moved them)."""
    try:
        from testcontainers.community.postgres import PostgresContainer
        from testcontainers.community.redis import RedisContainer
    except ImportError:
        try:
            from testcontainers.postgres import PostgresContainer  # type: ignore[no-redef]
            from testcontainers.redis import RedisContainer  # type: ignore[no-redef]
        except ImportError:
            raise MethodUnavailable("testcontainers is not installed (pip install 'sessionspec[docker]')") from None
    return RedisContainer, PostgresContainer


@contextlib.contextmanager
def _tc_settings() -> Iterator[None]:
    """Ryuk off, docker_host mode, host 127.0.0.1 — only while we start a container."""
    from testcontainers.core.config import ConnectionMode
    from testcontainers.core.config import testcontainers_config as cfg

    saved = (cfg.ryuk_disabled, cfg.connection_mode_override, cfg.tc_host_override)
    cfg.ryuk_disabled = True
    cfg.connection_mode_override = ConnectionMode.docker_host
    cfg.tc_host_override = LOOPBACK
    try:
        yield
    finally:
        cfg.ryuk_disabled, cfg.connection_mode_override, cfg.tc_host_override = saved


def _owner() -> str:
    return f"{socket.gethostname()}:{os.getpid()}"


def reap_orphans(client: Any) -> None:
    """Remove our containers left by a process on this host that has died (kill -9)."""
    host = socket.gethostname()
    with contextlib.suppress(Exception):
        for c in client.containers.list(all=True, filters={"label": LABEL}):
            owner_host, _, pid = str(c.labels.get(OWNER_LABEL, "")).rpartition(":")
            if owner_host != host or not pid.isdigit() or int(pid) == os.getpid():
                continue
            try:
                os.kill(int(pid), 0)
                continue  # owner alive
            except ProcessLookupError:
                pass
            except PermissionError:
                continue
            with contextlib.suppress(Exception):
                c.remove(force=True, v=True)


class DockerServer:
    """A container with a fixed loopback port; stop()/start() keep port and data."""

    controllable = True
    persistent = True

    def __init__(self, kind: str, image: str, *, timeout: float = 60.0) -> None:
        self.kind = kind
        self.image = image
        self.method = f"docker image {image}"
        self._container: Any = None
        self._closed = False
        client = docker_client()
        try:
            if not image_present(client, image):
                raise MethodUnavailable(missing_image_reason(kind, image))
            reap_orphans(client)
        finally:
            client.close()
        register_cleanup(self, self.close)
        with cleanup_on_failure(self.close):
            self._launch(timeout)

    # -- setup
    def _build(self, port: int) -> tuple[Any, Callable[[], bool], str]:
        redis_cls, postgres_cls = _container_classes()
        from testcontainers.core.waiting_utils import WaitStrategy

        inner: int
        if self.kind == "redis":
            inner = 6379
            container = redis_cls(self.image, port=inner)
            container.with_command(
                ["redis-server", "--bind", "0.0.0.0", "--protected-mode", "no", "--dir", "/data", *REDIS_ARGS]
            )
            url = f"redis://{LOOPBACK}:{port}/0"

            def ready() -> bool:
                return redis_ready(LOOPBACK, port)
        else:
            inner = 5432
            password = secrets.token_hex(12)

            class _Postgres(postgres_cls):  # type: ignore[misc,valid-type]
                def _connect(self) -> None:
                    """Readiness is the wait strategy below, not psql run inside the image."""

            container = _Postgres(
                self.image, port=inner, username=PG_USER, password=password, dbname=PG_DB, driver=None
            )
            container.with_command(["postgres"] + [a for k, v in PG_SETTINGS.items() for a in ("-c", f"{k}={v}")])
            url = f"postgresql://{PG_USER}:{password}@{LOOPBACK}:{port}/{PG_DB}"

            def ready() -> bool:
                return postgres_ready(LOOPBACK, port, PG_USER, PG_DB)

        server = self

        class _Probe(WaitStrategy):  # type: ignore[misc]
            def wait_until_ready(self, target: Any) -> None:
                wait_until(
                    ready,
                    timeout=self._startup_timeout,
                    what=f"{server.method} on port {port}",
                    alive=server._death_note,
                )

        container.ports[str(inner)] = (LOOPBACK, port)  # fixed host port, loopback only
        container.with_name(f"sessionspec-{self.kind}-{os.getpid()}-{secrets.token_hex(3)}")
        container.with_kwargs(labels={LABEL: "1", OWNER_LABEL: _owner()})
        container.waiting_for(_Probe())
        return container, ready, url

    def _launch(self, timeout: float) -> None:
        last: Exception | None = None
        for _ in range(3):  # the free port can be taken between choosing and binding it
            self.port = free_port()
            container, self._ready, self.url = self._build(self.port)
            container._wait_strategy.with_startup_timeout(timeout)
            self._container = container
            try:
                with _tc_settings():
                    container.start()
                return
            except Exception as exc:
                if "already allocated" not in str(exc) and "address already in use" not in str(exc):
                    raise
                last = exc
                self._remove()
        raise RuntimeError(f"could not bind a free port: {last}")

    # -- state
    @property
    def container_id(self) -> str | None:
        """The container's id while it exists (for tests and `docker logs`)."""
        c = self._wrapped()
        return str(c.id) if c is not None else None

    def _wrapped(self) -> Any:
        return self._container.get_wrapped_container() if self._container is not None else None

    def _death_note(self) -> str | None:
        c = self._wrapped()
        if c is None:
            return None
        with contextlib.suppress(Exception):
            c.reload()
            if c.status in ("exited", "dead"):
                logs = c.logs(tail=15).decode(errors="replace")
                return f"container {c.status}; logs:\n{logs}"
        return None

    # -- Server API
    def stop(self) -> None:
        """Clean shutdown (Postgres: fast, SIGINT; Redis: SIGTERM), then the port refuses."""
        c = self._wrapped()
        c.reload()
        if c.status == "running":
            with contextlib.suppress(Exception):
                c.kill(signal="SIGINT" if self.kind == "postgres" else "SIGTERM")
            try:
                c.wait(timeout=STOP_GRACE)
            except Exception:  # a wait timeout: force it
                c.stop(timeout=0)
        wait_until(lambda: port_refuses(LOOPBACK, self.port), timeout=10, what="port release")

    def start(self, timeout: float = 60.0) -> None:
        """docker start of the same container: same port, same data."""
        if self._closed:
            raise RuntimeError("server was closed")
        c = self._wrapped()
        c.reload()
        if c.status != "running":
            c.start()
        wait_until(self._ready, timeout=timeout, what=f"{self.method} on port {self.port}", alive=self._death_note)

    def _remove(self) -> None:
        c = self._wrapped()
        if c is not None:
            with contextlib.suppress(Exception):
                c.remove(force=True, v=True)  # v: the official images' anonymous volumes too
        self._container = None

    def close(self) -> None:
        """Remove the container and its volumes; idempotent."""
        if self._closed:
            return
        self._remove()
        self._closed = True
        unregister_cleanup(self)

    def __repr__(self) -> str:
        return f"<DockerServer {getattr(self, 'url', '?')} ({self.method})>"


def docker_server(kind: str, timeout: float = 60.0) -> DockerServer:
    if kind not in ("redis", "postgres"):
        raise MethodUnavailable("no Docker path for a Redis Cluster (use local binaries)")
    return DockerServer(kind, image_for(kind), timeout=timeout)
