"""How get / list / count latency changes from 10,000 to 1,000,000 stored sessions, half expired.

Stages grow one namespace (10k -> 100k -> 1M, up to ``scale_max``) with the bulk loaders.
Most sessions go to 1000 "growing" owners (each holds size/1000 sessions, so their lists and
counts grow with the table: shown, not judged); each stage also adds 100 fresh "probe" owners of
exactly 20 sessions (10 live, 10 expired) and 10 fresh "big" owners of exactly 300 (150 live,
150 expired, interleaved in id order: three full pages of 50), whose per-owner queries should
not depend on the table size at all. A big owner's pages are walked with the cursor: the first
walk is "cold" (on Redis it also forgets the dead index entries it meets), then two warm walks.
Latency is measured one call at a time (no queueing): p50/p99 over bounded samples, each call
followed by a raw round trip whose p50 is kept beside it (the machine's floor at that moment).
When a second server can be had, a "twin" store on it stays at 10,000 sessions (plus each
stage's fresh probe owners) and is measured alongside, call by call alternating with the grown
store: on a shared machine, stages minutes apart differ by the neighbours' load (seen: a PING
30% slower at the 1M stage than at the 10k one), calls alternating with a twin do not.
Before measuring, the server's background work from the load is let finish (Redis AOF rewrite,
a Postgres CHECKPOINT).
Redis's list forgets long-dead index entries it meets, so the first list of an owner ("cold")
also pays that clean-up; a second pass ("warm") is reported beside it. Before measuring,
the stage is checked through the store: counts and pages show exactly the live sessions.
"""

from __future__ import annotations

import asyncio
import os
import random
import time
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass, field
from functools import partial
from typing import Any

from harness import median, percentile
from loaders import VARIANTS, Planned, load_postgres, load_redis, plan
from payload import flat_state

__all__ = ["SIZES", "scaling"]

SIZES = (10_000, 100_000, 1_000_000)
BIG_OWNERS = 1000
PROBE_OWNERS = 100
PROBE_SIZE = 20
BIG_OWNERS_PER_STAGE = 10
BIG_SIZE = 300
PAGE = 50


Call = Callable[[], Awaitable[Any]]


async def _timed(sides: Sequence[Sequence[Call]], max_seconds: float, pings: Sequence[Call]) -> list[dict[str, Any]]:
    """One call at a time, each followed by a raw round trip (PING / SELECT 1) on the store's own client
    (``rtt_p50_ms``: the floor of the moment). With several sides (the growing store and its twin)
    their calls alternate one by one, so both see the same moment's noise."""
    lat: list[list[float]] = [[] for _ in sides]
    rtt: list[list[float]] = [[] for _ in sides]
    deadline = time.perf_counter() + max_seconds
    for i in range(max(map(len, sides))):
        if time.perf_counter() >= deadline:
            break
        for side, calls in enumerate(sides):
            if i < len(calls):
                t = time.perf_counter()
                await calls[i]()
                lat[side].append(time.perf_counter() - t)
                t = time.perf_counter()
                await pings[side]()
                rtt[side].append(time.perf_counter() - t)
    return [{"n": len(a), "p50_ms": round(median(a) * 1000, 3), "p99_ms": round(percentile(a, 99) * 1000, 3),
             "rtt_p50_ms": round(median(b) * 1000, 3)} for a, b in zip(lat, rtt, strict=True)]


async def _check(store: Any, probes: Sequence[str], live: Sequence[Planned], live_total: int) -> None:
    """The store must see exactly what was loaded: else every figure after this would be meaningless."""
    for owner in probes[-5:]:
        assert await store.count(owner=owner) == PROBE_SIZE // 2, f"count({owner}) disagrees with the load"
        page = await store.list(owner=owner, limit=PAGE)
        assert len(page.items) == PROBE_SIZE // 2, f"list({owner}) returned {len(page.items)} live sessions"
    assert await store.count() == live_total, "count() disagrees with the number of live sessions loaded"
    for s in live[:20]:
        got = await store.get(s.id)
        assert got is not None and got.state == flat_state(got.version % VARIANTS), f"get({s.id}) mismatch"


async def _settle(backend: str, store: Any, limit: float = 180.0) -> float:
    """Let the server finish the load's background work (Redis AOF rewrite; a Postgres checkpoint)."""
    t0 = time.perf_counter()
    if backend == "postgres":
        await store.pool.execute("CHECKPOINT", timeout=600)
        return time.perf_counter() - t0
    while time.perf_counter() - t0 < limit:
        info = await store.client.info("persistence")
        if not info.get("aof_rewrite_in_progress") and not info.get("aof_rewrite_scheduled"):
            break
        await asyncio.sleep(0.5)  # polling a server state, not synchronising tasks
    return time.perf_counter() - t0


@dataclass(slots=True)
class _Side:
    """One store being grown and measured: its sessions as loaded, and the latest stage's probe owners."""

    store: Any
    rng: random.Random
    loaded: int = 0
    version: int = 1
    live_total: int = 0
    live: list[Planned] = field(default_factory=list)
    probes: list[str] = field(default_factory=list)
    bigs: list[str] = field(default_factory=list)


async def _grow(backend: str, side: _Side, stage: int, size: int) -> float:
    """Load 100 fresh probe owners and 10 big ones, then growing owners' sessions until the side holds ``size``;
    seconds taken."""
    side.probes = [f"p{stage}-{i}" for i in range(PROBE_OWNERS)]
    side.bigs = [f"b{stage}-{i}" for i in range(BIG_OWNERS_PER_STAGE)]
    batch = plan(side.probes, PROBE_OWNERS * PROBE_SIZE, side.rng)
    batch += plan(side.bigs, BIG_OWNERS_PER_STAGE * BIG_SIZE, side.rng)
    batch += plan([f"o{i}" for i in range(BIG_OWNERS)], max(0, size - side.loaded - len(batch)), side.rng)
    side.rng.shuffle(batch)
    t0 = time.perf_counter()
    if backend == "redis":
        side.version = await load_redis(side.store.client, side.store.namespace, batch, side.version)
    else:
        await load_postgres(side.store.pool, side.store.namespace, batch)
        await side.store.pool.execute("VACUUM ANALYZE sessionspec.sessions", timeout=900)  # not the store's 5 s
    seconds = time.perf_counter() - t0
    side.loaded += len(batch)
    fresh = [s for s in batch if s.live]
    side.live += fresh
    side.live_total += len(fresh)
    await _check(side.store, side.probes, fresh, side.live_total)
    return seconds


def _walks(store: Any, owners: Sequence[str], passes: int) -> list[Call]:
    """Calls that page through each owner's sessions with the cursor, BIG_SIZE // 2 // PAGE pages each:
    run in order, each picks up the cursor the one before it left."""
    cursor: dict[str, str | None] = {}
    calls: list[Call] = []

    def page(owner: str, first: bool) -> Call:
        async def call() -> None:
            got = await store.list(owner=owner, limit=PAGE, cursor=None if first else cursor[owner])
            assert len(got.items) == PAGE, f"a page of big owner {owner} held {len(got.items)} sessions"
            cursor[owner] = got.next_cursor
        return call

    for _ in range(passes):
        for owner in owners:
            calls += [page(owner, k == 0) for k in range(BIG_SIZE // 2 // PAGE)]
    return calls


async def _measure(backend: str, sides: Sequence[_Side], cap: float) -> list[dict[str, Any]]:
    """Probe owners: one cold list pass, then 3 warm passes; growing and big owners: 1 cold, 2 warm. Sides
    alternate."""
    pings = [s.store.client.ping if backend == "redis" else partial(s.store.pool.fetchval, "SELECT 1") for s in sides]
    outs: list[dict[str, Any]] = [{} for _ in sides]

    async def timed(name: str, calls: Sequence[Sequence[Call]]) -> None:
        for out, figures in zip(outs, await _timed(calls, cap, pings), strict=True):
            out[name] = figures

    await timed("get", [[partial(s.store.get, p.id) for p in s.rng.sample(s.live, min(1000, len(s.live)))]
                        for s in sides])
    growing = [f"o{i}" for i in sides[0].rng.sample(range(BIG_OWNERS), 100)]
    for group, passes in (("owner", 3), ("growing_owner", 2)):
        owners = [s.probes[:-5] if group == "owner" else growing for s in sides]
        lists = [[partial(s.store.list, owner=o, limit=PAGE) for o in own]
                 for s, own in zip(sides, owners, strict=True)]
        await timed(f"list_{group}_cold", lists)
        await timed(f"list_{group}", [calls * passes for calls in lists])
        await timed(f"count_{group}", [[partial(s.store.count, owner=o) for o in own] * passes
                                       for s, own in zip(sides, owners, strict=True)])
    for label, passes in (("list_big_owner_cold", 1), ("list_big_owner", 2)):
        await timed(label, [_walks(s.store, s.bigs, passes) for s in sides])
    await timed("list_all", [[partial(s.store.list, limit=PAGE)] * 100 for s in sides])
    await timed("count_all", [[s.store.count] * 30 for s in sides])
    return outs


async def scaling(backend: str, store: Any, *, scale_max: int, load_budget: float, twin: Any = None,
                  cap: float = 20.0, sizes: Sequence[int] = SIZES) -> dict[str, Any]:
    """Grow the store's namespace stage by stage and measure at each size; loading stops at the budget.

    ``twin``, a store on a second server of the same kind, stays at the first size (only each
    stage's 100 fresh probe owners are added) and is measured alongside, call by call: the
    judged ratio compares the grown store with the small one at the same moment, so a noisy
    neighbour moves both. Without a twin the ratio compares stages minutes apart.
    """
    grown = _Side(store, random.Random(7))
    small = None if twin is None else _Side(twin, random.Random(8))
    stages: list[dict[str, Any]] = []
    load_seconds = 0.0
    skipped: list[dict[str, Any]] = []
    for k, size in enumerate(s for s in sizes if s <= scale_max):
        todo = size - grown.loaded
        if stages and load_seconds + todo / (grown.loaded / load_seconds) > load_budget:
            skipped.append({"sessions": size, "why": f"estimated load {todo / (grown.loaded / load_seconds):.0f} s "
                            f"would pass the {load_budget:.0f} s budget"})
            continue
        load_seconds += await _grow(backend, grown, k, size)
        if small is not None:
            await _grow(backend, small, k, size if k == 0 else 0)
        sides = [grown] if small is None else [grown, small]
        settled = sum([await _settle(backend, s.store) for s in sides])
        figures = await _measure(backend, sides, cap)
        stage = {"sessions": grown.loaded, "live": grown.live_total,
                 "load_rate_per_s": round(grown.loaded / load_seconds), "settle_s": round(settled, 1),
                 "load_average": os.getloadavg()[0], **figures[0]}
        if small is not None:
            stage["twin"] = {"sessions": small.loaded, "live": small.live_total, **figures[1]}
        stages.append(stage)
    return {
        "owners": {"growing": BIG_OWNERS, "probe_per_stage": PROBE_OWNERS, "probe_size": PROBE_SIZE,
                   "big_per_stage": BIG_OWNERS_PER_STAGE, "big_size": BIG_SIZE},
        "page": PAGE,
        "twin": small is not None,
        "load_seconds": round(load_seconds, 1),
        "stages": stages,
        "skipped": skipped,
    }
