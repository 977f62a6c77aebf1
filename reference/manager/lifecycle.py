"""Knowing when sessions end: an expiry schedule per manager instance, and the background sweeper.

The store tells nobody when a session expires, and ``purge_expired`` returns only a count.
So each manager keeps the sessions it has seen in a heap by expected expiry; a sweep pops
the due ones (O(due), never O(all)), asks the store, and reports each incarnation that is
gone exactly once. A session still alive (another instance wrote to it) goes back in the
heap with its new expiry.
"""

from __future__ import annotations

import asyncio
import contextlib
import heapq
import itertools
import logging
import random
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Final

from sessionspec.conformance.contract import SessionInfo

__all__ = ["ExpirySchedule", "Sweeper", "Tracked"]

log = logging.getLogger("sessionspec.manager")

RECHECK: Final = 0.5
"""Seconds until a session that was due but still alive is looked at again (clock skew)."""
COMPACT_FLOOR: Final = 1024
"""Stale heap entries tolerated beyond 2 x the tracked sessions before a rebuild."""


@dataclass(frozen=True, slots=True)
class Tracked:
    """One incarnation of a session this manager has seen: id plus its created_at."""

    id: str
    incarnation: str
    deadline: float | None
    """Wall-clock seconds when it should be gone; None for a permanent session."""


class ExpirySchedule:
    """id -> the incarnation last seen, plus a lazy heap of deadlines (stale heap entries are skipped)."""

    def __init__(self) -> None:
        self._known: dict[str, Tracked] = {}
        self._heap: list[tuple[float, int, str, str]] = []
        self._seq = itertools.count()

    def note(self, info: SessionInfo, deadline: float | None = None) -> Tracked | None:
        """Record ``info`` as the live incarnation; returns the previous incarnation if this one replaced it."""
        expires = info.expires_at.timestamp() if info.expires_at is not None else None
        if deadline is not None:
            expires = deadline if expires is None else min(expires, deadline)
        tracked = Tracked(info.id, info.created_at.isoformat(), expires)
        previous = self._known.get(info.id)
        self._known[info.id] = tracked
        if expires is not None and previous != tracked:
            self._push(expires, tracked)
        return previous if previous is not None and previous.incarnation != tracked.incarnation else None

    def recheck(self, tracked: Tracked, at: float) -> None:
        self._push(at, tracked)

    def _push(self, at: float, tracked: Tracked) -> None:
        """Every write pushes an entry and leaves the last one stale: rebuild when stale ones dominate.

        Without it, sessions whose expiry slides forever would hold one entry per write for a
        whole idle period. A rebuild costs O(tracked) after at least as many pushes: O(1) amortised.
        (A session waiting for a recheck is rebuilt at its deadline, already past: it is looked
        at on the next sweep, one get early.)
        """
        heapq.heappush(self._heap, (at, next(self._seq), tracked.id, tracked.incarnation))
        if len(self._heap) > 2 * len(self._known) + COMPACT_FLOOR:
            self._heap = [(t.deadline, next(self._seq), t.id, t.incarnation)
                          for t in self._known.values() if t.deadline is not None]
            heapq.heapify(self._heap)

    def forget(self, id: str, incarnation: str | None = None) -> Tracked | None:
        """Stop tracking ``id`` (only that incarnation, if given); the removed entry, once."""
        tracked = self._known.get(id)
        if tracked is None or (incarnation is not None and tracked.incarnation != incarnation):
            return None
        del self._known[id]
        return tracked

    def due(self, now: float | None = None) -> list[Tracked]:
        """Pop every tracked incarnation whose deadline has passed (still tracked until forgotten)."""
        now = time.time() if now is None else now
        found: dict[str, Tracked] = {}
        while self._heap and self._heap[0][0] <= now:
            _, _, id, incarnation = heapq.heappop(self._heap)
            tracked = self._known.get(id)
            if tracked is not None and tracked.incarnation == incarnation:
                found[id] = tracked
        return list(found.values())

    def get(self, id: str) -> Tracked | None:
        return self._known.get(id)

    def ids(self) -> list[str]:
        return list(self._known)

    def __len__(self) -> int:
        return len(self._known)


class Sweeper:
    """Runs ``sweep`` every ``interval`` seconds; an error is logged and retried with backoff, never raised."""

    def __init__(self, sweep: Callable[[], Awaitable[object]], interval: float, *,
                 on_error: Callable[[BaseException], Awaitable[None]] | None = None,
                 max_backoff: float = 300.0) -> None:
        if not interval > 0:
            raise ValueError(f"sweep interval must be > 0 seconds, not {interval!r}")
        self._sweep, self.interval, self._on_error = sweep, interval, on_error
        self._max_backoff = max_backoff
        self._task: asyncio.Task[None] | None = None
        self.failures = 0

    def start(self) -> None:
        if self._task is None:
            self._task = asyncio.create_task(self._run(), name="sessionspec-sweeper")

    async def stop(self) -> None:
        task, self._task = self._task, None
        if task is not None:
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await task

    @property
    def running(self) -> bool:
        return self._task is not None and not self._task.done()

    async def _run(self) -> None:
        delay = self.interval
        while True:
            await asyncio.sleep(delay)
            try:
                await self._sweep()
            except Exception as exc:
                self.failures += 1
                ceiling = min(self._max_backoff, self.interval * 2 ** min(self.failures, 20))
                delay = random.uniform(self.interval, max(self.interval, ceiling))
                log.warning("session manager: sweep failed (%s: %s); retrying in %.1f s",
                            type(exc).__name__, exc, delay)
                if self._on_error is not None:
                    with contextlib.suppress(Exception):
                        await self._on_error(exc)
            else:
                self.failures, delay = 0, self.interval
