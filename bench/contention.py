"""CC-4-style contention: T tasks each increment one counter in one session (get, then apply with
expected_version, retry on VersionConflict), under three retry policies:

* ``naive``: retry at once;
* ``backoff``: full-jitter exponential backoff, sleep uniform(0, min(cap, base * 2**attempt)),
  with the conformance worker's base and cap (the reference stores have no retry helper);
* ``single-flight``: the same backoff, but callers in this process take a per-session
  asyncio.Lock first, so they never race each other; only other processes cause retries;
* ``suite``: the conformance suite's own CC-4 client, ``sessionspec.conformance.worker.increment``:
  every first attempt at once (the race), then retries take turns per session, with the backoff.

The policies alternate in the same run, each bounded by attempts per task and by wall time
(a run that hits the time cap counts as the cap: its speedup is then a lower bound). The final
counter is checked against the commits (no lost update).
"""

from __future__ import annotations

import asyncio
import random
import time
from typing import Any

from harness import median, percentile

from sessionspec.conformance import worker
from sessionspec.conformance.contract import VersionConflict
from sessionspec.conformance.worker import BACKOFF_BASE, BACKOFF_CAP

__all__ = ["BACKOFF_BASE", "BACKOFF_CAP", "POLICIES", "contend", "increment", "race"]

POLICIES = ("naive", "backoff", "single-flight", "suite")
MAX_ATTEMPTS = {"naive": 100_000, "backoff": 1000, "single-flight": 1000}
KEY = "n"


async def _read_modify_write(store: Any, sid: str, policy: str) -> int:
    """One increment; returns how many retries it took."""
    for attempt in range(1, MAX_ATTEMPTS[policy] + 1):
        current = await store.get(sid)
        try:
            await store.apply(sid, {KEY: current.state[KEY] + 1}, expected_version=current.version)
        except VersionConflict:
            if policy != "naive":
                await asyncio.sleep(random.uniform(0, min(BACKOFF_CAP, BACKOFF_BASE * 2**attempt)))
            continue
        return attempt - 1
    raise RuntimeError(f"increment gave up after {MAX_ATTEMPTS[policy]} attempts ({policy})")


async def increment(store: Any, sid: str, policy: str, locks: dict[str, asyncio.Lock]) -> int:
    if policy == "suite":
        done = await worker.increment(store, sid, KEY, "apply", turns=locks)
        return int(done["attempts"]) - 1
    if policy == "single-flight":
        async with locks.setdefault(sid, asyncio.Lock()):
            return await _read_modify_write(store, sid, policy)
    return await _read_modify_write(store, sid, policy)


async def contend(store: Any, *, tasks: int, policy: str, max_seconds: float) -> dict[str, Any]:
    """``tasks`` concurrent increments of one fresh session; wall time, retries, latencies, final value."""
    created = await store.create({KEY: 0}, ttl=3600.0)
    latencies: list[float] = []
    per_task: list[int] = []
    locks: dict[str, asyncio.Lock] = {}

    async def one() -> None:
        t0 = time.perf_counter()
        per_task.append(await increment(store, created.id, policy, locks))
        latencies.append(time.perf_counter() - t0)

    start = time.perf_counter()
    timed_out = False
    try:
        async with asyncio.timeout(max_seconds):
            await asyncio.gather(*(one() for _ in range(tasks)))
    except TimeoutError:
        timed_out = True
    seconds = time.perf_counter() - start
    final = await store.get(created.id)
    await store.delete(created.id)
    return {
        "policy": policy,
        "committed": len(latencies),
        "final_value": final.state[KEY],
        "seconds": round(seconds, 3),
        "retries": sum(per_task),
        "max_retries_one_task": max(per_task, default=0),
        "increments_per_s": round(len(latencies) / seconds, 1),
        "p50_ms": round(percentile(latencies, 50) * 1000, 2),
        "p99_ms": round(percentile(latencies, 99) * 1000, 2),
        "timed_out": timed_out,
    }


async def race(store: Any, *, tasks: int, rounds: int, max_seconds: float) -> dict[str, Any]:
    """Every policy ``rounds`` times in rotating order; speedup = median naive time / median policy time."""
    runs: list[dict[str, Any]] = []
    for r in range(rounds):
        k = r % len(POLICIES)
        for policy in POLICIES[k:] + POLICIES[:k]:
            runs.append(await contend(store, tasks=tasks, policy=policy, max_seconds=max_seconds))
    seconds = {p: median([run["seconds"] for run in runs if run["policy"] == p]) for p in POLICIES}
    retries = {p: median([run["retries"] for run in runs if run["policy"] == p]) for p in POLICIES}
    return {
        "tasks": tasks,
        "backoff": {"base_s": BACKOFF_BASE, "cap_s": BACKOFF_CAP, "jitter": "full"},
        "seconds": seconds,
        "retries": retries,
        "max_retries_one_task": {p: max(run["max_retries_one_task"] for run in runs if run["policy"] == p)
                                 for p in POLICIES},
        "speedup": {p: round(seconds["naive"] / seconds[p], 2) for p in POLICIES[1:]},
        "speedup_is_lower_bound": any(run["timed_out"] for run in runs if run["policy"] == "naive"),
        "incomplete": sorted({run["policy"] for run in runs if run["timed_out"]}),
        "lost_updates": any(run["final_value"] < run["committed"] for run in runs),
        "runs": runs,
    }
