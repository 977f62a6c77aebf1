"""How get / list / count latency changes from 10,000 to 1,000,000 stored sessions, half expired.

Stages grow one namespace (10k -> 100k -> 1M, up to ``scale_max``) with the bulk loaders.
Most sessions go to 1000 "big" owners (each holds size/1000 sessions, so their lists and counts
grow with the table); each stage also adds 100 fresh "probe" owners of exactly 20 sessions
(10 live, 10 expired), whose per-owner queries should not depend on the table size at all.
Latency is measured one call at a time (no queueing): p50/p99 over bounded samples, each call
followed by a raw round trip whose p50 is kept beside it (the machine's floor at that moment).
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
PAGE = 50


Call = Callable[[], Awaitable[Any]]


async def _timed(calls: Sequence[Call], max_seconds: float, ping: Call) -> dict[str, Any]:
    """One call at a time, each followed by a raw round trip (PING / SELECT 1) on the store's own client:
    ``rtt_p50_ms`` is the floor of the moment, so stages measured minutes apart compare fairly."""
    lat: list[float] = []
    rtt: list[float] = []
    deadline = time.perf_counter() + max_seconds
    for call in calls:
        t = time.perf_counter()
        if t >= deadline:
            break
        await call()
        lat.append(time.perf_counter() - t)
        t = time.perf_counter()
        await ping()
        rtt.append(time.perf_counter() - t)
    return {"n": len(lat), "p50_ms": round(median(lat) * 1000, 3), "p99_ms": round(percentile(lat, 99) * 1000, 3),
            "rtt_p50_ms": round(median(rtt) * 1000, 3)}


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
        await store.pool.execute("CHECKPOINT")
        return time.perf_counter() - t0
    while time.perf_counter() - t0 < limit:
        info = await store.client.info("persistence")
        if not info.get("aof_rewrite_in_progress") and not info.get("aof_rewrite_scheduled"):
            break
        await asyncio.sleep(0.5)  # polling a server state, not synchronising tasks
    return time.perf_counter() - t0


async def _measure(backend: str, store: Any, rng: random.Random, probes: list[str], live: list[Planned],
                   cap: float) -> dict[str, Any]:
    """Probe owners: one cold list pass, then 3 warm passes; big owners: 1 cold, 2 warm."""
    ping = store.client.ping if backend == "redis" else partial(store.pool.fetchval, "SELECT 1")
    big = [f"o{i}" for i in rng.sample(range(BIG_OWNERS), 100)]
    sample = rng.sample(live, min(1000, len(live)))
    out = {"get": await _timed([partial(store.get, s.id) for s in sample], cap, ping)}
    for group, owners, passes in (("owner", probes[:-5], 3), ("big_owner", big, 2)):
        lists = [partial(store.list, owner=o, limit=PAGE) for o in owners]
        out[f"list_{group}_cold"] = await _timed(lists, cap, ping)
        out[f"list_{group}"] = await _timed(lists * passes, cap, ping)
        out[f"count_{group}"] = await _timed([partial(store.count, owner=o) for o in owners] * passes, cap, ping)
    out["list_all"] = await _timed([partial(store.list, limit=PAGE)] * 100, cap, ping)
    out["count_all"] = await _timed([store.count] * 30, cap, ping)
    return out


async def scaling(backend: str, store: Any, *, scale_max: int, load_budget: float,
                  cap: float = 20.0, sizes: Sequence[int] = SIZES) -> dict[str, Any]:
    """Grow the store's namespace stage by stage and measure at each size; loading stops at the budget."""
    rng = random.Random(7)
    stages: list[dict[str, Any]] = []
    loaded, version, live_total, load_seconds = 0, 1, 0, 0.0
    live: list[Planned] = []
    skipped: list[dict[str, Any]] = []
    for k, size in enumerate(s for s in sizes if s <= scale_max):
        todo = size - loaded
        if stages and load_seconds + todo / (loaded / load_seconds) > load_budget:
            skipped.append({"sessions": size, "why": f"estimated load {todo / (loaded / load_seconds):.0f} s "
                            f"would pass the {load_budget:.0f} s budget"})
            continue
        probes = [f"p{k}-{i}" for i in range(PROBE_OWNERS)]
        batch = plan(probes, PROBE_OWNERS * PROBE_SIZE, rng)
        batch += plan([f"o{i}" for i in range(BIG_OWNERS)], todo - len(batch), rng)
        rng.shuffle(batch)
        t0 = time.perf_counter()
        if backend == "redis":
            version = await load_redis(store.client, store.namespace, batch, version)
        else:
            await load_postgres(store.pool, store.namespace, batch)
            await store.pool.execute("VACUUM ANALYZE sessionspec.sessions")
        load_seconds += time.perf_counter() - t0
        loaded += len(batch)
        fresh = [s for s in batch if s.live]
        live += fresh
        live_total += len(fresh)
        await _check(store, probes, fresh, live_total)
        settled = await _settle(backend, store)
        stages.append({"sessions": loaded, "live": live_total, "load_rate_per_s": round(loaded / load_seconds),
                       "settle_s": round(settled, 1), "load_average": os.getloadavg()[0],
                       **await _measure(backend, store, rng, probes, live, cap)})
    return {
        "owners": {"big": BIG_OWNERS, "probe_per_stage": PROBE_OWNERS, "probe_size": PROBE_SIZE},
        "page": PAGE,
        "load_seconds": round(load_seconds, 1),
        "stages": stages,
        "skipped": skipped,
    }
