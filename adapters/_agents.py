"""OpenAI Agents SDK sessions (``agents.memory.Session``) as a contract store.

An Agents SDK session is an append-only conversation history keyed by a session id, with
``get_items(limit)``, ``add_items``, ``pop_item`` and ``clear_session``; there is no
"create", no existence check, no listing and no version. The faithful mapping is event
sourcing: every contract write appends one item, ``{"type": "sessionspec_record",
"record": ...}``, holding the whole record after the write, and a read is
``get_items(limit=1)`` (the latest item). ``delete`` is ``clear_session``. A session
exists while its history is non-empty.

Emulated (see ``_base``): create-if-absent (a read, then ``add_items``: not atomic, the
SDK has no primitive for it), versions, input validation, per-id serialisation inside one
store instance. Nothing detects a concurrent writer, so no adapter claims ``atomic``;
without a session index nothing claims ``listing``. Out of scope: the item schema
(``TResponseInputItem``), compaction, ``pop_item``.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

from sessionspec.conformance.contract import SessionExists, SessionNotFound

from ._base import AdapterStore, Record

__all__ = ["ITEM_TYPE", "AgentsStore"]

ITEM_TYPE = "sessionspec_record"


class AgentsStore(AdapterStore):
    """Subclasses say how to open the SDK session object for an id (``_open``)."""

    @asynccontextmanager
    async def _open(self, id: str, ttl: float | None = None) -> AsyncIterator[Any]:
        raise NotImplementedError
        yield

    async def _latest(self, session: Any, id: str) -> Record | None:
        items = await session.get_items(limit=1)
        if not items:
            return None
        item = items[-1]
        if not isinstance(item, dict) or item.get("type") != ITEM_TYPE:
            raise SessionNotFound(id)
        return Record.from_json(item["record"])

    async def _load(self, id: str) -> tuple[Record, Any] | None:
        async with self._open(id) as session:
            record = await self._latest(session, id)
        return None if record is None else (record, None)

    async def _insert(self, id: str | None, record: Record) -> str:
        assert id is not None
        async with self._open(id, record.ttl) as session:
            if await session.get_items(limit=1):
                raise SessionExists(id)
            await session.add_items([{"type": ITEM_TYPE, "record": record.to_json()}])
        return id

    async def _store(self, id: str, record: Record, token: Any) -> None:
        async with self._open(id, record.ttl) as session:
            await session.add_items([{"type": ITEM_TYPE, "record": record.to_json()}])

    async def _remove(self, id: str) -> None:
        async with self._open(id) as session:
            await session.clear_session()

    async def _scan(self) -> list[tuple[str, Record]]:
        raise NotImplementedError("the Agents SDK Session protocol has no way to enumerate sessions")
