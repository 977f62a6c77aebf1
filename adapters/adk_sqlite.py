"""Google ADK ``DatabaseSessionService`` on SQLite: target ``sessionspec.adapters.adk_sqlite:factory``.

One SQLite file per namespace (``sqlite+aiosqlite``), derived from the namespace so every
process of a run opens the same file. ``append_event`` refuses a write from a session
object older than the stored one (``StaleSessionError``, google/adk/sessions/
database_session_service.py ``append_event``): that is the conflict detection the
adapter's ``expected_version`` and ``apply`` retry build on, so it claims ``atomic``. It
does not claim ``shared``: several processes on one SQLite file work, but the matrix
must stay bounded and SQLite is the single-process deployment. Expiry is emulated (ADK
has none). No backend to stop: FL-1..3 are n/a.
"""

from __future__ import annotations

import contextlib
import os
from collections.abc import AsyncIterator

from ._adk import AdkStore
from ._servers import scratch_path

__all__ = ["drop_namespace", "factory"]


@contextlib.asynccontextmanager
async def factory(namespace: str) -> AsyncIterator[AdkStore]:
    """ADK DatabaseSessionService on SQLite (embedded; expiry and versions emulated)"""
    from google.adk.sessions import DatabaseSessionService

    path = scratch_path(f"adk-{namespace}.db")
    store = AdkStore(DatabaseSessionService(db_url=f"sqlite+aiosqlite:///{path}"), namespace)
    store.capabilities = frozenset({"core", "atomic", "listing"})
    async with store:
        yield store


async def drop_namespace(store: AdkStore, namespace: str) -> None:
    """Remove the namespace's SQLite file (and its journal)."""
    await store.aclose()
    for suffix in ("", "-wal", "-shm", "-journal"):
        with contextlib.suppress(FileNotFoundError):
            os.remove(scratch_path(f"adk-{namespace}.db{suffix}"))
