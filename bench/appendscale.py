"""Does append cost O(items appended)? One message appended to an empty history vs a long one.

The long histories are built through the store, one message per append call (as a chat
grows), by concurrent tasks. The measurement is sequential (one call at a time, so it is
latency, not queueing) and alternates empty / long, each empty-history session getting
exactly one append, so "empty" stays empty-before-the-call for every sample.
"""

from __future__ import annotations

import asyncio
import time
from typing import Any

from harness import hammer, median, percentile
from payload import message, session_state

__all__ = ["append_scaling"]

KEY = "messages"


async def append_scaling(store: Any, *, history: int, sessions: int = 3, samples: int = 300,
                         build_seconds: float = 120.0) -> dict[str, Any]:
    long_ids = [(await store.create(session_state(i) | {KEY: []}, ttl=3600.0)).id for i in range(sessions)]
    total = history * sessions

    async def grow(task: int, n: int) -> None:
        await store.append(long_ids[n % sessions], KEY, [message(n)])

    t0 = time.perf_counter()
    built = await hammer(grow, tasks=min(300, total), max_ops=total, max_seconds=build_seconds)
    build_s = time.perf_counter() - t0
    empty_ids = list(await asyncio.gather(*(store.create(session_state(i) | {KEY: []}, ttl=3600.0)
                                            for i in range(samples))))
    lat: dict[str, list[float]] = {"empty": [], "long": []}
    for i in range(samples):
        order = (("empty", empty_ids[i].id), ("long", long_ids[i % sessions]))
        for label, sid in order if i % 2 == 0 else reversed(order):
            t = time.perf_counter()
            await store.append(sid, KEY, [message(i)])
            lat[label].append(time.perf_counter() - t)
    for sid in [*long_ids, *(s.id for s in empty_ids)]:
        await store.delete(sid)
    p50 = {label: median(v) for label, v in lat.items()}
    return {
        "history": built.ops // sessions,
        "build": {"appends": built.ops, "seconds": round(build_s, 2), "appends_per_s": round(built.throughput, 1)},
        "samples": samples,
        "empty": {"p50_ms": round(p50["empty"] * 1000, 3), "p99_ms": round(percentile(lat["empty"], 99) * 1000, 3)},
        "long": {"p50_ms": round(p50["long"] * 1000, 3), "p99_ms": round(percentile(lat["long"], 99) * 1000, 3)},
        "ratio_long_to_empty": round(p50["long"] / p50["empty"], 3),
    }
