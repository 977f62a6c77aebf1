"""Forcing a bad interleaving deterministically, so "caught" never depends on luck."""

from __future__ import annotations

import asyncio
import weakref

__all__ = ["Gap", "Rendezvous", "gap", "rendezvous"]

PATIENCE = 64
"""Loop turns a held operation waits for its partner before going on alone (sequential use)."""


class Rendezvous:
    """Holds an operation between its read and its write until a concurrent one has read too.

    Callers pair up: the first waits on an Event; the second, arriving with the same stale
    read, releases it and writes; then the first writes over it, so one update of every pair
    is lost, every time. Alone (a sequential test) the caller gives up after a bounded
    number of loop turns and proceeds, so nothing hangs and single-task tests see a correct store.
    This also models the network round trip every real store has between its calls.
    """

    def __init__(self, patience: int = PATIENCE) -> None:
        self._patience = patience
        self._waiting: asyncio.Event | None = None

    async def meet(self) -> None:
        partner = self._waiting
        if partner is not None and not partner.is_set():
            self._waiting = None
            partner.set()  # both have read; the partner writes after us, over our write
            return
        arrived = asyncio.Event()
        self._waiting = arrived
        for _ in range(self._patience):
            if arrived.is_set():
                return
            await asyncio.sleep(0)  # one loop turn: every runnable task gets to read
        if self._waiting is arrived:
            self._waiting = None


class Gap:
    """Holds an operation between its read and its write until another kind of operation has landed.

    ``hold()`` waits (a bounded number of loop turns) for ``landed()``, which the racing
    operation (a delete) calls once it has taken effect: the held write then acts on a read
    that is no longer true. Alone, the holder proceeds after its patience, as with Rendezvous.
    """

    def __init__(self, patience: int = PATIENCE) -> None:
        self._patience = patience
        self._event = asyncio.Event()

    async def hold(self) -> None:
        self._event.clear()
        for _ in range(self._patience):
            if self._event.is_set():
                return
            await asyncio.sleep(0)

    def landed(self) -> None:
        self._event.set()


_BY_STORE: weakref.WeakKeyDictionary[object, dict[str | None, Rendezvous]] = weakref.WeakKeyDictionary()
_GAPS: weakref.WeakKeyDictionary[object, dict[str, Gap]] = weakref.WeakKeyDictionary()


def rendezvous(store: object, key: str | None = None) -> Rendezvous:
    """The store's own Rendezvous (broken stores override one method, so no __init__ to put it in).

    With ``key`` (a session id) only callers on that session pair up: a race between two
    writers of one session, which is where a check-then-act bug shows."""
    found = _BY_STORE.setdefault(store, {})
    if key not in found:
        found[key] = Rendezvous()
    return found[key]


def gap(store: object, key: str) -> Gap:
    """The store's Gap for session ``key``."""
    found = _GAPS.setdefault(store, {})
    if key not in found:
        found[key] = Gap()
    return found[key]
