"""Broken listing: expired entries shown or counted, prefix owner filters, cursors that skip or repeat (LS-*)."""

from __future__ import annotations

import bisect
from collections.abc import Mapping
from typing import Any

from sessionspec.conformance.contract import KEEP, Page, Session, TtlArg
from sessionspec.conformance.validation import validate_cursor, validate_limit, validate_owner
from sessionspec.reference.memory import MemoryStore

from ._case import broken


def _page(store: MemoryStore, *, limit: int, cursor: str | None, keep: Any) -> Page:
    """MemoryStore.list with the liveness/owner test replaced by ``keep(record)``: the bug lives in keep."""
    size = validate_limit(limit)
    after = validate_cursor(cursor)
    start = 0 if after is None else bisect.bisect_right(store._ids, after)
    chosen = [sid for sid in store._ids[start:] if keep(store._records[sid])]
    items = [store._info(sid, store._records[sid]) for sid in chosen[:size]]
    return Page(items, items[-1].id if len(chosen) > size else None)


@broken("LS-1", "TTL-4")
class ListShowsExpired(MemoryStore):
    """list() forgets to filter out expired sessions that nobody has read since they expired."""

    async def list(self, *, owner: str | None = None, limit: int = 100, cursor: str | None = None) -> Page:
        own = validate_owner(owner)
        return _page(self, limit=limit, cursor=cursor, keep=lambda r: own is None or r.owner == own)


@broken("LS-2", "TTL-4")
class CountIncludesExpired(MemoryStore):
    """count() counts stored records, expired ones included (e.g. ZCARD of an index nobody prunes)."""

    async def count(self, *, owner: str | None = None) -> int:
        own = validate_owner(owner)
        return sum(1 for r in self._records.values() if own is None or r.owner == own)


@broken("LS-1", "ID-2")
class OwnerFilterByPrefix(MemoryStore):
    """list(owner="a") also returns sessions of owners "ab", "a:b"… (a prefix match, like LIKE 'a%')."""

    async def list(self, *, owner: str | None = None, limit: int = 100, cursor: str | None = None) -> Page:
        prefix = validate_owner(owner)
        now = self._clock()
        return _page(self, limit=limit, cursor=cursor, keep=lambda r: r.live(now) and (
            prefix is None or (r.owner is not None and r.owner.startswith(prefix))))


@broken("LS-1")
class CursorSkipsOne(MemoryStore):
    """list() hands out the first id of the next page as the cursor, so every page boundary loses a session."""

    async def list(self, *, owner: str | None = None, limit: int = 100, cursor: str | None = None) -> Page:
        page = await super().list(owner=owner, limit=limit, cursor=cursor)
        if page.next_cursor is None:
            return page
        ahead = await super().list(owner=owner, limit=1, cursor=page.next_cursor)
        return Page(page.items, ahead.items[0].id if ahead.items else None)


@broken("LS-1")
class CursorRepeatsOne(MemoryStore):
    """list() resumes from the second-to-last id of the page, so every page boundary repeats a session."""

    async def list(self, *, owner: str | None = None, limit: int = 100, cursor: str | None = None) -> Page:
        page = await super().list(owner=owner, limit=limit, cursor=cursor)
        if page.next_cursor is None or len(page.items) < 2:
            return page
        return Page(page.items, page.items[-2].id)


@broken("LS-1")
class LimitIgnored(MemoryStore):
    """list() returns up to 1000 items whatever limit the caller asked for."""

    async def list(self, *, owner: str | None = None, limit: int = 100, cursor: str | None = None) -> Page:
        validate_limit(limit)
        return await super().list(owner=owner, limit=1000, cursor=cursor)


@broken("LS-1", "LS-2")
class IndexScoredOnCreate(MemoryStore):
    """list() and count() read an owner index scored with the expiry only on create (ZADD in create alone):
    a session that writes kept alive drops out of both once its first deadline passes."""

    async def create(self, state: Mapping[str, Any] | None = None, *, id: str | None = None,
                     owner: str | None = None, ttl: TtlArg = KEEP) -> Session:
        session = await super().create(state, id=id, owner=owner, ttl=ttl)
        index: dict[str, float] = vars(self).setdefault("_scores", {})
        index[session.id] = float("inf") if session.expires_at is None else session.expires_at.timestamp()
        return session

    def _indexed(self, sid: str, now: float) -> bool:
        return now < vars(self).get("_scores", {}).get(sid, float("inf"))

    async def list(self, *, owner: str | None = None, limit: int = 100, cursor: str | None = None) -> Page:
        own, now = validate_owner(owner), self._clock()
        page = await super().list(owner=own, limit=1000, cursor=cursor)  # then filtered by the stale score
        size = validate_limit(limit)
        kept = [info for info in page.items if self._indexed(info.id, now)]
        more = len(kept) > size or page.next_cursor is not None
        return Page(kept[:size], kept[:size][-1].id if more and kept[:size] else None)

    async def count(self, *, owner: str | None = None) -> int:
        own, now = validate_owner(owner), self._clock()
        return sum(1 for sid, r in self._records.items()
                   if r.live(now) and (own is None or r.owner == own) and self._indexed(sid, now))
