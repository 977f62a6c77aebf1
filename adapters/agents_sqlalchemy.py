"""OpenAI Agents SDK ``SQLAlchemySession`` on PostgreSQL: target ``sessionspec.adapters.agents_sqlalchemy:factory``.

The run's provisioned PostgreSQL (``_servers``), driver ``postgresql+asyncpg``, the SDK's
default tables (created by the SDK, ``create_tables=True``), one engine per store and a
``SQLAlchemySession`` per call. The SDK keys sessions by id only, so the adapter prefixes
ids with the namespace (``"<namespace>/<id>"``). Expiry is emulated (the SDK has none).
Claims ``core``, ``shared`` and ``durable``. Timeouts come from SQLAlchemy's public
engine options (asyncpg ``timeout``, ``pool_timeout``). See ``_agents`` for the mapping.
"""

from __future__ import annotations

import contextlib
from collections.abc import AsyncIterator
from typing import Any

from sessionspec.conformance.contract import SessionStore, SessionStoreError

from . import _servers
from ._adk import sqlalchemy_error
from ._agents import AgentsStore

__all__ = ["db_timezone", "drop_namespace", "factory", "start_backend", "stop_backend"]


class SQLAlchemySessionStore(AgentsStore):
    def __init__(self, namespace: str, engine: Any) -> None:
        super().__init__(namespace)
        self.engine = engine
        self._tables_ready = False

    def key(self, id: str) -> str:
        return f"{self.namespace}/{id}"

    @contextlib.asynccontextmanager
    async def _open(self, id: str, ttl: float | None = None) -> AsyncIterator[Any]:
        from agents.extensions.memory import SQLAlchemySession

        # The SDK's create_tables=True checks the tables on each new session object; once per store is enough.
        session = SQLAlchemySession(self.key(id), engine=self.engine, create_tables=not self._tables_ready)
        yield session
        self._tables_ready = True

    def _classify(self, exc: Exception) -> SessionStoreError | None:
        return sqlalchemy_error(exc)

    async def _close(self) -> None:
        await self.engine.dispose()


def factory(namespace: str) -> SQLAlchemySessionStore:
    """Agents SDK SQLAlchemySession on PostgreSQL (create-if-absent, expiry and versions emulated)"""
    from sqlalchemy.ext.asyncio import create_async_engine

    url = "postgresql+asyncpg://" + _servers.server_url("postgres").split("://", 1)[1]
    engine = create_async_engine(url, pool_size=4, max_overflow=4, pool_timeout=60, pool_pre_ping=True,
                                 connect_args={"timeout": 3, "command_timeout": 5})
    store = SQLAlchemySessionStore(namespace, engine)
    store.capabilities = frozenset({"core", "shared", "durable"})
    return store


async def drop_namespace(store: SessionStore, namespace: str) -> None:
    from sqlalchemy import text

    assert isinstance(store, SQLAlchemySessionStore)
    async with store.engine.begin() as conn:
        await conn.execute(text("DELETE FROM agent_sessions WHERE session_id LIKE :p"), {"p": f"{namespace}/%"})


async def db_timezone(store: SessionStore) -> str:
    from sqlalchemy import text

    assert isinstance(store, SQLAlchemySessionStore)
    async with store.engine.connect() as conn:
        return str((await conn.execute(text("SHOW TimeZone"))).scalar_one())


async def stop_backend() -> None:
    await _servers.stop("postgres")


async def start_backend() -> None:
    await _servers.start("postgres")
