"""Google ADK ``DatabaseSessionService`` on PostgreSQL: target ``sessionspec.adapters.adk_postgres:factory``.

The run's provisioned PostgreSQL (``_servers``), driver ``postgresql+asyncpg``, one
``app_name`` per namespace in ADK's own tables. ``append_event`` locks the session row
(``SELECT ... FOR UPDATE``) and refuses stale writers (``StaleSessionError``): the
adapter claims ``atomic`` and ``shared`` on that. Expiry is emulated (ADK has none), so
there is no ``raw_ttl``; the backend can be stopped (FL-1/2/3) and its time zone read (HY-2).
Connection timeouts are set through SQLAlchemy's public ``connect_args`` (asyncpg
``timeout``) (a pool wait is queueing under load, not unreachability), never by the adapter.
"""

from __future__ import annotations

import contextlib
from collections.abc import AsyncIterator

from sessionspec.conformance.contract import SessionStore

from . import _servers
from ._adk import AdkStore

__all__ = ["db_timezone", "drop_namespace", "factory", "start_backend", "stop_backend"]


def _url() -> str:
    url = _servers.server_url("postgres")
    return "postgresql+asyncpg://" + url.split("://", 1)[1]


@contextlib.asynccontextmanager
async def factory(namespace: str) -> AsyncIterator[AdkStore]:
    """ADK DatabaseSessionService on PostgreSQL (expiry and versions emulated)"""
    from google.adk.sessions import DatabaseSessionService

    service = DatabaseSessionService(db_url=_url(), pool_size=4, max_overflow=4, pool_timeout=60,
                                     connect_args={"timeout": 3, "command_timeout": 5})
    store = AdkStore(service, namespace)
    store.capabilities = frozenset({"core", "atomic", "listing", "shared", "durable"})
    async with store:
        yield store


async def drop_namespace(store: SessionStore, namespace: str) -> None:
    """Delete the namespace's sessions through ADK itself."""
    assert isinstance(store, AdkStore)
    for id, _ in await store._scan():
        await store._remove(id)


async def db_timezone(store: SessionStore) -> str:
    from sqlalchemy import text

    assert isinstance(store, AdkStore)
    async with store.service.db_engine.connect() as conn:
        return str((await conn.execute(text("SHOW TimeZone"))).scalar_one())


async def stop_backend() -> None:
    await _servers.stop("postgres")


async def start_backend() -> None:
    await _servers.start("postgres")
