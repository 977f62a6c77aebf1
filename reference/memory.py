"""MemoryStore: the embedded default, and the plainest reading of the contract.

Every operation runs without an ``await`` between its read and its write, so on one
event loop each is atomic: no locks needed, no lost update possible. Expiry is checked
on every read against one injectable clock; expired records are swept whenever the
store has doubled since the last sweep, so a busy process never grows without bound.

Sweeping costs O(expired), not O(stored) (MG-14): every change of a record's expiry pushes
(expires_at, incarnation, id) onto a heap, and ``purge_expired`` pops only the due entries.
Entries are invalidated lazily (a sliding write, a delete or a re-create leaves the old one
behind; it is skipped when popped), and the heap is rebuilt from the records whenever stale
entries outnumber them, so a workload that slides expiry forever stays bounded: each entry
is pushed once and popped or compacted away once, O(1) amortised. Ids live in a SortedList
(O(log n) insert and remove) so paging by id never shifts a million-entry list.
"""

from __future__ import annotations

import heapq
import itertools
import secrets
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from types import TracebackType
from typing import Any

from sortedcontainers import SortedList  # type: ignore[import-untyped]

from sessionspec.conformance.contract import (
    DELETE,
    KEEP,
    InvalidState,
    Keep,
    Page,
    Session,
    SessionExists,
    SessionInfo,
    SessionNotFound,
    TtlArg,
    VersionConflict,
)
from sessionspec.conformance.validation import (
    json_path,
    validate_changes,
    validate_cursor,
    validate_expected_version,
    validate_id,
    validate_items,
    validate_key,
    validate_limit,
    validate_owner,
    validate_state,
    validate_ttl,
)

__all__ = ["MemoryStore", "clone_json", "new_session_id"]

SWEEP_FLOOR = 1024
"""Below this many records the growth-triggered sweep does not run, nor heap compaction."""


def new_session_id() -> str:
    """ID-1: 192 random bits, URL-safe base64 (32 characters of [A-Za-z0-9_-])."""
    return secrets.token_urlsafe(24)


def clone_json(value: Any) -> Any:
    """Deep copy of an already validated JSON value; several times faster than copy.deepcopy."""
    if isinstance(value, dict):
        return {k: clone_json(v) for k, v in value.items()}
    if isinstance(value, list):
        return [clone_json(v) for v in value]
    return value


def _utc(ts: float) -> datetime:
    return datetime.fromtimestamp(ts, UTC)


@dataclass(slots=True)
class _Record:
    state: dict[str, Any]
    owner: str | None
    version: int
    created_at: float
    updated_at: float
    ttl: float | None
    born: int
    """The version it was created with: unique per incarnation, so a re-created id's old heap entries are stale."""

    @property
    def expires_at(self) -> float | None:
        return None if self.ttl is None else self.updated_at + self.ttl

    def live(self, now: float) -> bool:
        expires = self.expires_at
        return expires is None or now < expires


class MemoryStore:
    """An in-process session store: core, atomic and listing, for one process."""

    capabilities: frozenset[str] = frozenset({"core", "atomic", "listing"})

    def __init__(self, *, default_ttl: float | None = None, clock: Callable[[], float] = time.time) -> None:
        default = validate_ttl(default_ttl, allow_keep=False)
        assert not isinstance(default, Keep)
        self.default_ttl: float | None = default
        self._clock = clock
        self._records: dict[str, _Record] = {}
        self._ids: Any = SortedList()  # of str, for cursor paging by id
        self._expiries: list[tuple[float, int, str]] = []  # heap of (expires_at, born, id); stale entries lazily
        self._versions = itertools.count(1)  # one counter for the store: no ABA across incarnations
        self._swept_at_size = SWEEP_FLOOR

    # -- helpers ------------------------------------------------------------------------
    def _live(self, id: str, now: float) -> _Record | None:
        record = self._records.get(id)
        if record is not None and not record.live(now):
            self._forget(id)
            return None
        return record

    def _require(self, id: str, now: float) -> _Record:
        record = self._live(id, now)
        if record is None:
            raise SessionNotFound(id)
        return record

    def _forget(self, id: str) -> None:
        del self._records[id]
        self._ids.remove(id)  # its heap entries go stale: skipped when popped, dropped when compacted

    def _schedule(self, id: str, record: _Record) -> None:
        """Index the record's current expiry (entries for its earlier expiries stay behind, stale)."""
        expires = record.expires_at
        if expires is None:
            return
        heapq.heappush(self._expiries, (expires, record.born, id))
        if len(self._expiries) > 2 * len(self._records) + SWEEP_FLOOR:  # stale entries dominate
            self._expiries = [(e, r.born, sid) for sid, r in self._records.items() if (e := r.expires_at) is not None]
            heapq.heapify(self._expiries)

    @staticmethod
    def _check_version(id: str, record: _Record, expected: int | None) -> None:
        if expected is not None and expected != record.version:
            raise VersionConflict(id, expected, record.version)

    @staticmethod
    def _resolve_ttl(ttl: float | Keep | None, current: float | None) -> float | None:
        return current if isinstance(ttl, Keep) else ttl

    def _write(self, id: str, record: _Record, now: float, *, bump: bool = True) -> None:
        record.updated_at = now
        if bump:
            record.version = next(self._versions)
        self._schedule(id, record)

    @staticmethod
    def _info(id: str, r: _Record) -> SessionInfo:
        expires = r.expires_at
        return SessionInfo(id, r.owner, r.version, _utc(r.created_at), _utc(r.updated_at),
                           None if expires is None else _utc(expires), r.ttl)

    @staticmethod
    def _session(id: str, r: _Record) -> Session:
        expires = r.expires_at
        return Session(id, r.owner, r.version, _utc(r.created_at), _utc(r.updated_at),
                       None if expires is None else _utc(expires), r.ttl, clone_json(r.state))

    def _maybe_sweep(self, now: float) -> None:
        if len(self._records) >= 2 * self._swept_at_size:
            self._purge(now)
            self._swept_at_size = max(SWEEP_FLOOR, len(self._records))

    def _purge(self, now: float) -> int:
        """Pop every due heap entry: O(expired + stale entries due), never a scan of the records."""
        heap, removed = self._expiries, 0
        while heap and heap[0][0] <= now:
            _, born, id = heapq.heappop(heap)
            record = self._records.get(id)
            # Any due entry of the current incarnation will do: a record still live has a later entry.
            if record is not None and record.born == born and not record.live(now):
                self._forget(id)
                removed += 1
        return removed

    # -- the contract -------------------------------------------------------------------
    async def create(self, state: Mapping[str, Any] | None = None, *, id: str | None = None,
                     owner: str | None = None, ttl: TtlArg = KEEP) -> Session:
        sid = new_session_id() if id is None else validate_id(id)
        own = validate_owner(owner)
        period = validate_ttl(ttl)
        data = validate_state({} if state is None else state)
        now = self._clock()
        if self._live(sid, now) is not None:
            raise SessionExists(sid)
        self._maybe_sweep(now)
        version = next(self._versions)
        record = _Record(data, own, version, now, now, self._resolve_ttl(period, self.default_ttl), version)
        self._records[sid] = record
        self._ids.add(sid)
        self._schedule(sid, record)
        return self._session(sid, record)

    async def get(self, id: str) -> Session | None:
        sid = validate_id(id)
        record = self._live(sid, self._clock())
        return None if record is None else self._session(sid, record)

    async def save(self, id: str, state: Mapping[str, Any], *, expected_version: int | None = None,
                   ttl: TtlArg = KEEP) -> Session:
        sid = validate_id(id)
        data = validate_state(state)
        expected = validate_expected_version(expected_version)
        period = validate_ttl(ttl)
        now = self._clock()
        record = self._require(sid, now)
        self._check_version(sid, record, expected)
        record.state = data
        record.ttl = self._resolve_ttl(period, record.ttl)
        self._write(sid, record, now)
        return self._session(sid, record)

    async def apply(self, id: str, changes: Mapping[str, Any], *,
                    expected_version: int | None = None) -> Session:
        sid = validate_id(id)
        delta = validate_changes(changes)
        expected = validate_expected_version(expected_version)
        now = self._clock()
        record = self._require(sid, now)
        self._check_version(sid, record, expected)
        for key, value in delta.items():
            if value is DELETE:
                record.state.pop(key, None)
            else:
                record.state[key] = value
        self._write(sid, record, now)
        return self._session(sid, record)

    async def append(self, id: str, key: str, items: Sequence[Any], *,
                     expected_version: int | None = None) -> SessionInfo:
        sid = validate_id(id)
        name = validate_key(key)
        values = validate_items(name, items)
        expected = validate_expected_version(expected_version)
        now = self._clock()
        record = self._require(sid, now)
        self._check_version(sid, record, expected)
        target = record.state.setdefault(name, [])
        if not isinstance(target, list):
            kind = "null" if target is None else type(target).__name__
            raise InvalidState(f"append needs a list, but the stored value is {kind}", json_path("$", name))
        target.extend(values)
        self._write(sid, record, now)
        return self._info(sid, record)

    async def touch(self, id: str, *, ttl: TtlArg = KEEP) -> SessionInfo:
        sid = validate_id(id)
        period = validate_ttl(ttl)
        now = self._clock()
        record = self._require(sid, now)
        record.ttl = self._resolve_ttl(period, record.ttl)
        self._write(sid, record, now, bump=False)
        return self._info(sid, record)

    async def delete(self, id: str) -> bool:
        sid = validate_id(id)
        if self._live(sid, self._clock()) is None:
            return False
        self._forget(sid)
        return True

    async def list(self, *, owner: str | None = None, limit: int = 100, cursor: str | None = None) -> Page:
        own = validate_owner(owner)
        size = validate_limit(limit)
        after = validate_cursor(cursor)
        now = self._clock()
        ids = self._ids.irange(minimum=after, inclusive=(False, True)) if after is not None else iter(self._ids)
        items: list[SessionInfo] = []
        for sid in ids:
            record = self._records[sid]
            if record.live(now) and (own is None or record.owner == own):
                if len(items) == size:  # one more exists: this page is not the last
                    return Page(items, items[-1].id)
                items.append(self._info(sid, record))
        return Page(items, None)

    async def count(self, *, owner: str | None = None) -> int:
        own = validate_owner(owner)
        now = self._clock()
        return sum(1 for r in self._records.values() if r.live(now) and (own is None or r.owner == own))

    async def purge_expired(self) -> int:
        return self._purge(self._clock())

    async def aclose(self) -> None:
        """Nothing to release; kept for the protocol and ``async with``."""

    async def __aenter__(self) -> MemoryStore:
        return self

    async def __aexit__(self, exc_type: type[BaseException] | None, exc: BaseException | None,
                        tb: TracebackType | None) -> None:
        await self.aclose()
