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


def test_purge_pops_only_due_heap_entries_and_skips_stale_ones() -> None:
    """MG-14 on MemoryStore: purge examines the expiry heap's due entries, not the records."""
    async def scenario() -> None:
        clock = FakeClock()
        store = MemoryStore(clock=clock)
        keep = [await store.create(ttl=100) for _ in range(50)]
        slid = await store.create({"n": 0}, ttl=10)
        gone = await store.create(ttl=10)
        reborn = await store.create(id="x" * 22, ttl=10)
        await store.create(ttl=None)  # never expires: never in the heap
        clock.now += 5
        await store.apply(slid.id, {"n": 1})  # slides to now + 10: its first entry goes stale
        await store.delete(gone.id)  # its entry goes stale
        clock.now += 5.5  # past the first expiry of everything made with ttl=10
        assert await store.get(reborn.id) is None  # read notices the expiry; the id is free again
        await store.create(id=reborn.id, ttl=100)  # new incarnation: the old entry must not remove it
        heap_before = len(store._expiries)
        assert await store.purge_expired() == 0
        assert len(store._expiries) == heap_before - 3  # popped exactly the three due entries, all stale
        assert await store.get(slid.id) is not None and await store.get(reborn.id) is not None
        clock.now += 5  # now the slid session's second entry is due
        assert await store.purge_expired() == 1
        assert await store.get(slid.id) is None
        assert await store.count() == len(keep) + 2
        assert [i.id for i in (await store.list(limit=1000)).items] == sorted(store._records)

    asyncio.run(scenario())


def test_expiry_heap_stays_bounded_when_expiry_slides_forever() -> None:
    """Each write pushes an entry; compaction keeps the heap within 2 x records + SWEEP_FLOOR."""
    async def scenario() -> None:
        clock = FakeClock()
        store = MemoryStore(clock=clock)
        ids = [(await store.create(ttl=60)).id for _ in range(10)]
        for i in range(SWEEP_FLOOR * 20):
            clock.now += 0.001
            await store.touch(ids[i % len(ids)])
            assert len(store._expiries) <= 2 * len(store._records) + SWEEP_FLOOR + 1
        assert await store.purge_expired() == 0
        clock.now += 61
        assert await store.purge_expired() == len(ids)
        assert not store._records and not store._ids

    asyncio.run(scenario())


def test_paging_by_id_stays_in_order_across_deletes_and_expiry() -> None:
    async def scenario() -> None:
        clock = FakeClock()
        store = MemoryStore(clock=clock)
        made = [(await store.create(ttl=10 if i % 3 == 0 else 100)).id for i in range(30)]
        for sid in made[1::5]:
            await store.delete(sid)
        clock.now += 20
        await store.purge_expired()
        seen, cursor = [], None
        for _ in range(30):
            page = await store.list(limit=4, cursor=cursor)
            seen += [i.id for i in page.items]
            cursor = page.next_cursor
            if cursor is None:
                break
        expected = sorted(sid for i, sid in enumerate(made) if i % 3 != 0 and sid not in made[1::5])
        assert seen == expected

    asyncio.run(scenario())
