"""Open a reference store and its raw-driver twin on one server, with the same pool settings.

The pool sizes are the stores' defaults, written out here; the raw side copies whatever the
store's own pool was built with (connection count, timeouts, hooks), so it provably gets the same.
"""

from __future__ import annotations

import os
import secrets
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from drivers import RawPostgres, RawRedis

__all__ = ["BACKENDS", "PG_POOL", "REDIS_POOL", "TIMEOUT", "Pair", "open_pair", "open_store", "server_info"]

BACKENDS = ("redis", "postgres")
TIMEOUT = 5.0
CLOCK_TICKS = os.sysconf("SC_CLK_TCK")
REDIS_POOL = 64
PG_POOL: dict[str, Any] = {"min_size": 1, "max_size": 20}


async def open_store(backend: str, url: str, namespace: str) -> Any:
    """A RedisStore or PostgresStore on its own pool (the store modules are imported only when used)."""
    if backend == "redis":
        from sessionspec.reference.redis import RedisStore

        return RedisStore.from_url(url, namespace=namespace, timeout=TIMEOUT, max_connections=REDIS_POOL)
    from sessionspec.reference.postgres import PostgresStore

    return await PostgresStore.connect(url, namespace=namespace, timeout=TIMEOUT, **PG_POOL)


@dataclass(slots=True)
class Pair:
    """A store and the raw client that does the same work by hand, on the same server."""

    backend: str
    store: Any
    raw: RawRedis | RawPostgres
    namespace: str
    settings: dict[str, Any] = field(default_factory=dict)

    async def server_cpu(self) -> float | None:
        """Seconds of CPU the server has used so far: Redis's main process (INFO cpu); Postgres's client
        backends, read from /proc when the server runs on this machine (else None)."""
        if self.backend == "redis":
            info = await self.store.client.info("cpu")
            return float(info["used_cpu_sys"]) + float(info["used_cpu_user"])
        rows = await self.store.pool.fetch("SELECT pid FROM pg_stat_activity WHERE backend_type = 'client backend'")
        return _proc_cpu([row["pid"] for row in rows])

    async def aclose(self) -> None:
        await self.raw.aclose()
        await self.store.aclose()


def _proc_cpu(pids: list[int]) -> float | None:
    """utime + stime of these processes in seconds; None when one cannot be read (a remote server)."""
    total = 0.0
    for pid in pids:
        try:
            fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
        except OSError:
            return None
        total += (int(fields[11]) + int(fields[12])) / CLOCK_TICKS
    return total


async def open_pair(backend: str, url: str) -> Pair:
    tag = secrets.token_hex(4)
    namespace = "bench-" + tag
    store = await open_store(backend, url, namespace)
    raw: RawRedis | RawPostgres
    if backend == "redis":
        raw = RawRedis.like(store.client.connection_pool, tag)
    else:
        raw = await RawPostgres.like(store.pool, tag)
    return Pair(backend, store, raw, namespace, {"pool": raw.settings(), "timeout_s": TIMEOUT})


async def server_info(backend: str, store: Any) -> tuple[str, dict[str, str]]:
    """The server's version and the settings that move the figures, read through the store's client."""
    if backend == "redis":
        info = await store.client.info("server")
        config: dict[str, str] = {}
        for name in ("appendonly", "appendfsync", "save", "maxmemory-policy", "io-threads"):
            config.update({_text(k): _text(v) for k, v in (await store.client.config_get(name)).items()})
        return f"Redis {info.get('redis_version')}", config
    names = ("shared_buffers", "fsync", "synchronous_commit", "max_connections", "work_mem", "jit")
    rows = await store.pool.fetch("SELECT name, current_setting(name) AS value FROM pg_settings WHERE name = ANY($1)",
                                  list(names))
    version = str(await store.pool.fetchval("SHOW server_version"))
    return f"PostgreSQL {version}", {r["name"]: r["value"] for r in rows}


def _text(value: bytes | str) -> str:
    return value.decode() if isinstance(value, bytes) else value
