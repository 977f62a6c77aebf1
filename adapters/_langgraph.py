"""LangGraph long-term memory stores (``langgraph.store.base.BaseStore``) as a contract store.

Mapping: the session -> one item, ``namespace=("sessionspec", <namespace>)``,
``key=<id>``, ``value=<the contract record>``, written with ``aput(..., index=False,
ttl=<period in minutes>)`` (LangGraph's TTL unit, passed exactly as a float) and read with
``aget(..., refresh_ttl=False)`` (the contract's ``get`` must not slide the expiry);
``delete`` is ``adelete``, listing pages through ``asearch`` (LangGraph orders search
results by its own rules, so the adapter sorts by key). ``purge_expired`` is the store's
own ``sweep_ttl`` where it has one.

Emulated (see ``_base``): create-if-absent and no-upsert (``aput`` is an upsert; the
adapter reads first, not atomically), versions, input validation, per-id serialisation
inside one store instance; expiry only for stores without ``supports_ttl``. Nothing
detects a concurrent writer, so no adapter claims ``atomic``. Out of scope: vector
indexing and semantic search.
"""

from __future__ import annotations

from typing import Any

from sessionspec.conformance.contract import SessionExists

from ._base import AdapterStore, Record, minutes

__all__ = ["LangGraphStore"]

PAGE = 500


class LangGraphStore(AdapterStore):
    def __init__(self, store: Any, namespace: str) -> None:
        super().__init__(namespace)
        self.store = store
        self.native_ttl = bool(getattr(store, "supports_ttl", False))
        self.ns = ("sessionspec", namespace)

    def _ttl(self, record: Record) -> float | None:
        return minutes(record.ttl) if self.native_ttl else None

    async def _load(self, id: str) -> tuple[Record, Any] | None:
        item = await self.store.aget(self.ns, id, refresh_ttl=False)
        return None if item is None else (Record.from_json(item.value), None)

    async def _insert(self, id: str | None, record: Record) -> str:
        assert id is not None
        if await self.store.aget(self.ns, id, refresh_ttl=False) is not None:
            raise SessionExists(id)
        await self.store.aput(self.ns, id, record.to_json(), index=False, ttl=self._ttl(record))
        return id

    async def _store(self, id: str, record: Record, token: Any) -> None:
        await self.store.aput(self.ns, id, record.to_json(), index=False, ttl=self._ttl(record))

    async def _remove(self, id: str) -> None:
        await self.store.adelete(self.ns, id)

    async def _scan(self) -> list[tuple[str, Record]]:
        rows: list[tuple[str, Record]] = []
        offset = 0
        while True:
            items = await self.store.asearch(self.ns, limit=PAGE, offset=offset, refresh_ttl=False)
            rows.extend((item.key, Record.from_json(item.value)) for item in items)
            if len(items) < PAGE:
                return rows
            offset += len(items)

    async def _purge(self) -> int:
        return int(await self.store.sweep_ttl())
