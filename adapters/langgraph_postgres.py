"""LangGraph ``AsyncPostgresStore``: target ``sessionspec.adapters.langgraph_postgres:factory``.

The run's provisioned PostgreSQL (``_servers``) through ``AsyncPostgresStore.from_conn_string``
with a small psycopg pool and ``TTLConfig(refresh_on_read=False, omit_expired=True)``: the
store's own options for "reads do not slide the expiry" and "expired items are invisible
before the sweep". Expiry is native (``expires_at = NOW() + ttl_minutes``, evaluated by the
database), so ``raw_ttl`` reads the row's ``expires_at`` against the database clock.
Claims ``core``, ``listing``, ``shared`` and ``durable``. See ``_langgraph`` for the mapping.
"""

from __future__ import annotations

import contextlib
from collections.abc import AsyncIterator
from typing import Any

from sessionspec.conformance.contract import BackendUnavailable, SessionStore, SessionStoreError

from . import _servers
from ._langgraph import LangGraphStore

__all__ = ["db_timezone", "drop_namespace", "factory", "raw_ttl", "start_backend", "stop_backend"]

_SETUP_DONE: set[str] = set()


class PostgresLangGraphStore(LangGraphStore):
    def _classify(self, exc: Exception) -> SessionStoreError | None:
        import psycopg
        import psycopg_pool

        if isinstance(exc, psycopg.OperationalError | psycopg_pool.PoolTimeout | psycopg.errors.AdminShutdown):
            return BackendUnavailable(f"{type(exc).__name__}: {exc}")
        return None


def _url() -> str:
    return _servers.server_url("postgres")


@contextlib.asynccontextmanager
async def factory(namespace: str) -> AsyncIterator[PostgresLangGraphStore]:
    """LangGraph AsyncPostgresStore (native expiry in minutes; create-if-absent and versions emulated)"""
    from langgraph.store.postgres.aio import AsyncPostgresStore

    url = _url()
    # A 1 s pool timeout: LangGraph's batch loop (``AsyncBatchedBaseStore._run``) runs one batch at a
    # time on one connection, so load never queues for the pool; but in an outage every call waits
    # the full timeout, and this adapter's per-id lock lines up calls on one session behind each
    # other (FL-1: four calls on one id at 3 s each took 12 s; at 1 s, 4 s, inside FL-1's 5 s).
    pool: Any = {"min_size": 1, "max_size": 4, "timeout": 1, "kwargs": {"connect_timeout": 3}}
    async with AsyncPostgresStore.from_conn_string(
        url, pool_config=pool, ttl={"refresh_on_read": False, "omit_expired": True}
    ) as lg:
        if url not in _SETUP_DONE:
            await lg.setup()
            _SETUP_DONE.add(url)
        store = PostgresLangGraphStore(lg, namespace)
        store.capabilities = frozenset({"core", "listing", "shared", "durable"})
        async with store:
            yield store


async def _fetch(sql: str, *args: Any) -> Any:
    import psycopg

    async with await psycopg.AsyncConnection.connect(_url(), autocommit=True) as conn:
        cur = await conn.execute(sql, args)
        return await cur.fetchone() if cur.description else None


async def raw_ttl(store: SessionStore, id: str) -> float | None:
    """expires_at minus the database clock; None when the row has no expiry; KeyError when absent."""
    assert isinstance(store, LangGraphStore)
    row = await _fetch("SELECT expires_at IS NULL, extract(epoch FROM expires_at - clock_timestamp())::float8 "
                       "FROM store WHERE prefix = %s AND key = %s", ".".join(store.ns), id)
    if row is None:
        raise KeyError(id)
    return None if row[0] else float(row[1])


async def drop_namespace(store: SessionStore, namespace: str) -> None:
    await _fetch("DELETE FROM store WHERE prefix = %s", f"sessionspec.{namespace}")


async def db_timezone(store: SessionStore) -> str:
    row = await _fetch("SHOW TimeZone")
    return str(row[0])


async def stop_backend() -> None:
    await _servers.stop("postgres")


async def start_backend() -> None:
    await _servers.start("postgres")
