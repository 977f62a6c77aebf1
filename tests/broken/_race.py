"""Forcing a bad interleaving deterministically, so "caught" never depends on luck."""

from __future__ import annotations

import asyncio
import weakref

__all__ = ["Rendezvous", "rendezvous"]


class Rendezvous:
    """Holds an operation between its read and its write until a concurrent one has read too.

    Callers pair up: the first waits on an Event; the second, arriving with the same stale
    read, releases it and writes; then the first writes over it, so one update of every pair
    is lost, every time. Alone (a sequential test) the caller gives up after a bounded
    number of loop turns and proceeds, so nothing hangs and single-task tests see a correct store.
    This also models the network round trip every real store has between its calls.
    """

    def __init__(self, patience: int = 64) -> None:
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


_BY_STORE: weakref.WeakKeyDictionary[object, Rendezvous] = weakref.WeakKeyDictionary()


def rendezvous(store: object) -> Rendezvous:
    """The store's own Rendezvous (broken stores override one method, so no __init__ to put it in)."""
    found = _BY_STORE.get(store)
    if found is None:
        found = _BY_STORE[store] = Rendezvous()
    return found
