"""Targets ``postgres`` (a throwaway server for the run), ``postgresql://...`` and ``postgres://...``.

Each suite test opens its own PostgresStore (its own small pool): asyncpg pools belong to
one event loop and every suite test runs on a loop of its own, so a shared pool would
break. The store's pool also serves the backdoors: raw_ttl reads the row with the
database's own clock, drop_namespace deletes the test's rows, db_timezone asks the server.
The store's connections run in a time zone far from UTC (``TimeZone``, a session setting, which is
what every zone-dependent expression reads), so HY-2 is checked on any server, one given by URL
and running in UTC included.
asyncpg is imported only when a store is opened, so a missing driver becomes a TargetError
that says what to install instead of an ImportError.
"""

from __future__ import annotations

import asyncio
import importlib.util
from collections.abc import Callable
from typing import Any
from urllib.parse import urlsplit

from .contract import SessionStore
from .provision.base import PG_TIMEZONE
from .targets import BACKEND_SCHEMES, Target, TargetError, TargetOptions, netloc_with_port

__all__ = ["SESSION_SETTINGS", "build_postgres_target", "db_timezone", "drop_namespace", "raw_ttl"]

POOL_MAX_SIZE = 4
"""Connections per store. CC tests queue 1000 tasks on it and `shared` runs 4 stores in 2 processes:
on a small machine a few connections finish a burst sooner than many (measured: 1000 creates on 4
fresh stores, p99 240 ms at 5 vs 550 ms at 20), as every new backend costs a fork, cold caches and
its first plan of each write function (~8 ms of server CPU here). A whole `check postgres` opens ~770
of them: at 4 per store instead of 8 the server's CPU over a whole check fell from 24 to 20.8 s on a
2-vCPU machine (2, 3 and 4 measured alike)."""
SESSION_SETTINGS = {"timezone": PG_TIMEZONE}
"""The zone HY-2 needs, set per connection: most servers run in UTC, where a store that mixes up zones
still looks right (the servers the suite provisions run in this zone already)."""

_RAW_TTL = """
SELECT s.expires_at IS NULL AS permanent, extract(epoch FROM s.expires_at - clock_timestamp())::float8 AS left
  FROM sessionspec.sessions s
 WHERE s.namespace = $1 AND s.id = $2 AND (s.expires_at IS NULL OR s.expires_at > clock_timestamp())"""


def _pool_of(store: SessionStore) -> Any:
    pool = getattr(store, "pool", None)
    if pool is None:
        raise TypeError(f"the postgres backdoors need a PostgresStore, got {type(store).__name__}")
    return pool


async def raw_ttl(store: SessionStore, id: str) -> float | None:
    """Seconds left per the database clock; None when permanent; KeyError when absent or expired."""
    row = await _pool_of(store).fetchrow(_RAW_TTL, store.namespace, id)  # type: ignore[attr-defined]
    if row is None:
        raise KeyError(id)
    return None if row["permanent"] else float(row["left"])


async def drop_namespace(store: SessionStore, namespace: str) -> None:
    """Delete every row the namespace holds (both tables), leaving the shared schema alone."""
    pool = _pool_of(store)
    async with pool.acquire() as conn, conn.transaction():
        await conn.execute("DELETE FROM sessionspec.items WHERE namespace = $1", namespace)
        await conn.execute("DELETE FROM sessionspec.sessions WHERE namespace = $1", namespace)


async def db_timezone(store: SessionStore) -> str:
    """The server's time zone setting (`SHOW timezone`)."""
    return str(await _pool_of(store).fetchval("SHOW timezone"))


def _require_driver(spec: str) -> None:
    if importlib.util.find_spec("asyncpg") is None:
        raise TargetError(
            f"Target {spec!r} needs the asyncpg driver, which is not installed. "
            "Install the postgres extra: pip install -e '.[postgres]' in the sessionspec checkout "
            "(or pip install 'asyncpg>=0.29' 'orjson>=3.9')"
        )


def build_postgres_target(spec: str, options: TargetOptions) -> Target:
    """`postgres` provisions a throwaway server (or uses --postgres-url); a URL is used as is."""
    _require_driver(spec)
    from .provision import ProvisionError, describe, provision

    explicit = spec if "://" in spec else options.postgres_url
    try:
        server = provision("postgres", url=explicit)
    except ProvisionError as exc:
        raise TargetError(
            f"Target {spec!r}: no PostgreSQL server could be provisioned.\n{exc}\n"
            "Fix one of these: pass --postgres-url postgresql://USER:PW@HOST:PORT/DB (or set "
            "SESSIONSPEC_POSTGRES_URL); install the PostgreSQL server binaries (initdb and postgres, e.g. "
            "apt-get install postgresql) or the wheel-shipped ones (the servers extra: pip install -e '.[servers]' "
            "in the sessionspec checkout); or start a Docker engine with a local postgres image."
        ) from exc
    except ValueError as exc:
        raise TargetError(f"Target {spec!r}: {exc}") from exc
    url = server.url
    hooks: dict[str, Any] = {}

    def factory_for(at: str) -> Callable[[str], Any]:
        async def factory(namespace: str) -> SessionStore:
            from sessionspec.reference.postgres import PostgresStore

            return await PostgresStore.connect(at, namespace=namespace, max_size=POOL_MAX_SIZE,
                                               server_settings=SESSION_SETTINGS)

        return factory

    factory = factory_for(url)
    parts = urlsplit(url)
    if parts.hostname and parts.port and not parts.hostname.startswith("/"):  # TCP, not a unix socket
        hooks["backend_address"] = (parts.hostname or "127.0.0.1", parts.port or 5432)
        hooks["via_port"] = lambda port: factory_for(netloc_with_port(url, port))

    if server.controllable:
        hooks["stop_backend"] = lambda: asyncio.to_thread(server.stop)
        hooks["start_backend"] = lambda: asyncio.to_thread(server.start)
    return Target(
        spec, f"PostgresStore on {describe(server)}", factory,
        raw_ttl=raw_ttl, drop_namespace=drop_namespace, db_timezone=db_timezone,
        backend_kind="postgres", process_spec=url, closers=[server.close], **hooks,
    )


for _scheme in ("postgres", "postgresql"):
    BACKEND_SCHEMES[_scheme] = build_postgres_target
