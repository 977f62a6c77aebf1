"""OpenAI Agents SDK ``SQLiteSession``: target ``sessionspec.adapters.agents_sqlite:factory``.

One SQLite file per namespace (derived from the namespace, so every process of a run
opens the same file); a fresh ``SQLiteSession`` per call, closed after it, because each
instance keeps a connection per thread. Expiry is emulated (the SDK has none). Claims
``core`` and ``shared``. See ``_agents`` for the mapping.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
from collections.abc import AsyncIterator
from typing import Any

from sessionspec.conformance.contract import SessionStore

from ._agents import AgentsStore
from ._servers import scratch_path

__all__ = ["drop_namespace", "factory"]


class SQLiteSessionStore(AgentsStore):
    def __init__(self, namespace: str) -> None:
        super().__init__(namespace)
        self.path = scratch_path(f"agents-{namespace}.db")

    @contextlib.asynccontextmanager
    async def _open(self, id: str, ttl: float | None = None) -> AsyncIterator[Any]:
        from agents import SQLiteSession

        session = await asyncio.to_thread(SQLiteSession, id, self.path)
        try:
            yield session
        finally:
            session.close()


def factory(namespace: str) -> SQLiteSessionStore:
    """Agents SDK SQLiteSession (embedded; create-if-absent, expiry and versions emulated)"""
    store = SQLiteSessionStore(namespace)
    store.capabilities = frozenset({"core", "shared"})
    return store


async def drop_namespace(store: SessionStore, namespace: str) -> None:
    for suffix in ("", "-wal", "-shm", "-journal"):
        with contextlib.suppress(FileNotFoundError):
            os.remove(scratch_path(f"agents-{namespace}.db{suffix}"))
