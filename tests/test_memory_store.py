"""MemoryStore specifics the suite cannot see: the injectable clock and bounded growth."""

from __future__ import annotations

import asyncio

from sessionspec.reference.memory import SWEEP_FLOOR, MemoryStore


class FakeClock:
    """A clock the test moves by hand, so expiry is exact and instant."""

    def __init__(self) -> None:
        self.now = 1_000_000.0

    def __call__(self) -> float:
        return self.now


def test_expiry_follows_the_injected_clock_exactly() -> None:
    async def scenario() -> None:
        clock = FakeClock()
        store = MemoryStore(clock=clock)
        created = await store.create({"a": 1}, ttl=10)
        clock.now += 9.999
        assert await store.get(created.id) is not None
        clock.now += 0.001
        assert await store.get(created.id) is None

    asyncio.run(scenario())


def test_default_ttl_applies_when_create_keeps() -> None:
    async def scenario() -> None:
        store = MemoryStore(default_ttl=30)
        assert (await store.create()).ttl == 30.0
        assert (await store.create(ttl=None)).ttl is None

    asyncio.run(scenario())


def test_expired_records_are_swept_as_the_store_grows() -> None:
    async def scenario() -> None:
        clock = FakeClock()
        store = MemoryStore(clock=clock)
        for _ in range(SWEEP_FLOOR * 2):
            await store.create(ttl=1)
        clock.now += 2  # everything above is now dead
        for _ in range(SWEEP_FLOOR * 4):
            await store.create(ttl=1)
            clock.now += 2
        # Without sweeping, 6 * SWEEP_FLOOR records would be held; sweeps keep it near the floor.
        assert len(store._records) <= 2 * SWEEP_FLOOR

    asyncio.run(scenario())
