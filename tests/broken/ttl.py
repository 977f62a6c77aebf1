"""Broken expiry: ttl=0 as forever, non-sliding writes, sliding reads, lazy grace, bad purges (TTL-*)."""

from __future__ import annotations

import math
import time
from collections.abc import Mapping, Sequence
from datetime import UTC, datetime
from typing import Any

from sessionspec.conformance.contract import KEEP, Keep, Session, SessionInfo, SessionNotFound, TtlArg
from sessionspec.conformance.validation import MAX_TTL, validate_id
from sessionspec.reference.memory import MemoryStore

from ._case import broken

GRACE = 1.5
"""Seconds an expired session stays readable in ExpiryGraceOnGet (the contract allows 0.25)."""


@broken("TTL-0")
class TtlZeroMeansForever(MemoryStore):
    """create(ttl=0) (or any ttl <= 0) is taken as "never expires" instead of raising InvalidTtl."""

    async def create(self, state: Mapping[str, Any] | None = None, *, id: str | None = None,
                     owner: str | None = None, ttl: TtlArg = KEEP) -> Session:
        if isinstance(ttl, int | float) and not isinstance(ttl, bool) and ttl <= 0:
            ttl = None
        return await super().create(state, id=id, owner=owner, ttl=ttl)


@broken("TTL-0")
class HugeTtlFailsAfterWriting(MemoryStore):
    """save(ttl=3.4e38) writes the state, then fails building its expiry (OverflowError, not InvalidTtl).

    What MemoryStore did before the validator capped ttl at 1e10 s: the caller saw an untyped error and
    the session was left changed (the real store's was even unreadable).
    """

    async def save(self, id: str, state: Mapping[str, Any], *, ttl: TtlArg = KEEP,
                   expected_version: int | None = None) -> SessionInfo:
        if isinstance(ttl, float) and MAX_TTL < ttl < math.inf:
            await super().save(id, state, expected_version=expected_version)
            datetime.fromtimestamp(time.time() + ttl, UTC)  # OverflowError: year is out of range
        return await super().save(id, state, ttl=ttl, expected_version=expected_version)


@broken("TTL-2")
class AppendDoesNotSlide(MemoryStore):
    """append() writes without refreshing the expiry (RPUSH with no EXPIRE), though it reports a new one."""

    async def append(self, id: str, key: str, items: Sequence[Any], *,
                     expected_version: int | None = None) -> SessionInfo:
        record = self._records.get(id) if isinstance(id, str) else None
        before = None if record is None else record.updated_at
        info = await super().append(id, key, items, expected_version=expected_version)
        if record is not None and before is not None:
            record.updated_at = before
        return info


@broken("TTL-2")
class GetSlidesExpiry(MemoryStore):
    """get() refreshes the expiry (a read counts as activity), so a session read often never expires."""

    async def get(self, id: str) -> Session | None:
        try:
            await self.touch(id)
        except SessionNotFound:
            return None
        return await super().get(id)


@broken("TTL-1")
class ExpiryGraceOnGet(MemoryStore):
    """get() keeps returning a session for 1.5 s after it expired (lazy expiry with a loose check)."""

    async def get(self, id: str) -> Session | None:
        sid = validate_id(id)
        now = self._clock()
        record = self._records.get(sid)
        expires = None if record is None else record.expires_at
        if record is not None and expires is not None and expires <= now < expires + GRACE:
            return self._session(sid, record)
        return await super().get(sid)


@broken("TTL-3")
class SaveKeepResetsTtl(MemoryStore):
    """save(ttl=KEEP) applies the store default (here: never expire) instead of keeping the period."""

    async def save(self, id: str, state: Mapping[str, Any], *, expected_version: int | None = None,
                   ttl: TtlArg = KEEP) -> Session:
        if isinstance(ttl, Keep):
            ttl = self.default_ttl
        return await super().save(id, state, expected_version=expected_version, ttl=ttl)


@broken("TTL-5")
class PurgeIgnoresSliding(MemoryStore):
    """purge_expired() computes expiry from created_at, so it deletes live sessions kept alive by writes."""

    async def purge_expired(self) -> int:
        now = self._clock()
        doomed = [sid for sid, r in self._records.items() if r.ttl is not None and r.created_at + r.ttl <= now]
        for sid in doomed:
            self._forget(sid)
        return len(doomed)


@broken("TTL-5")
class PurgeCountsEverything(MemoryStore):
    """purge_expired() returns how many sessions it examined, not how many it removed."""

    async def purge_expired(self) -> int:
        examined = len(self._records)
        await super().purge_expired()
        return examined


@broken("TTL-1")
class WholeSecondTtls(MemoryStore):
    """Periods are rounded down to whole seconds (EXPIRE int(ttl)): ttl=0.3 expires at once, ttl=1.5 after 1 s."""

    @staticmethod
    def _resolve_ttl(ttl: float | Keep | None, current: float | None) -> float | None:
        period = current if isinstance(ttl, Keep) else ttl
        return None if period is None else float(int(period))
