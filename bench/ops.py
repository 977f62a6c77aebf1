"""Store vs raw driver, operation by operation: throughput and p50/p99 with T concurrent tasks.

Task ``t`` works on its own session ``t`` (no row or key contention: contention is
contention.py's subject). Each variant is warmed up once, then the variants are measured in
alternating order for a few rounds (store, raw, raw, store, ...) and the ratio reported is the
median over rounds of store throughput / raw throughput measured in the same round. A last,
solo phase calls each variant from one task, interleaved call by call: p50 latency without
queueing, where the store's extra work per call shows undiluted.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass
from typing import Any

from backends import Pair
from drivers import RawPostgres
from harness import Op, Sample, hammer, median, summary
from payload import message, session_state

__all__ = ["Comparison", "Plan", "compare", "comparisons", "prepare"]

ServerCpu = Callable[[], Awaitable[float | None]]
OWNERS = 100
TTL = 3600.0


@dataclass(frozen=True, slots=True)
class Plan:
    """How much to measure: every loop is bounded by an op count AND a time cap."""

    tasks: int = 1000
    ops: int = 20_000
    seconds: float = 15.0
    rounds: int = 5
    warmup_ops: int = 3_000
    warmup_seconds: float = 5.0
    solo_ops: int = 1000
    """Then one task alone, alternating store/raw call by call: latency without queueing."""


@dataclass(slots=True)
class Comparison:
    op: str
    store: Op
    raws: dict[str, Op]
    """Raw baselines by label; the first is the headline ratio."""


async def prepare(pair: Pair, count: int) -> tuple[list[str], list[str]]:
    """``count`` sessions for get/save/apply and ``count`` for append, in the store and in raw form."""
    states = [session_state(i) for i in range(count)]

    async def make(i: int, state: dict[str, Any]) -> str:
        created = await pair.store.create(state, owner=f"user-{i % OWNERS}", ttl=TTL)
        return str(created.id)

    ids = list(await asyncio.gather(*(make(i, s) for i, s in enumerate(states))))
    chats = list(await asyncio.gather(*(make(i, {"messages": []}) for i in range(count))))
    await pair.raw.seed(dict(zip(ids, states, strict=True)))
    return ids, chats


def comparisons(pair: Pair, ids: Sequence[str], chats: Sequence[str]) -> list[Comparison]:
    store, raw = pair.store, pair.raw
    state, msg = session_state(10**6), message(1)
    get_raws: dict[str, Op] = {"GET" if pair.backend == "redis" else "SELECT": lambda t, n: raw.get(ids[t])}
    if pair.backend == "redis":
        get_raws["HGETALL"] = lambda t, n: raw.get_hash(ids[t])  # type: ignore[union-attr]
        get_raws["GET, blocking pool"] = lambda t, n: raw.get_blocking(ids[t])  # type: ignore[union-attr]
    redis = pair.backend == "redis"
    apply_raws: dict[str, Op] = {"HSET" if redis else "UPDATE state||": lambda t, n: raw.apply(ids[t], "counter", n)}
    if isinstance(raw, RawPostgres) and raw.lz4:  # information: the store's column uses lz4, the judged table not
        apply_raws["UPDATE state|| (lz4 table)"] = lambda t, n: raw.apply_lz4(ids[t], "counter", n)
    return [
        Comparison("get", lambda t, n: store.get(ids[t]), get_raws),
        Comparison("save", lambda t, n: store.save(ids[t], state),
                   {"SET" if redis else "UPDATE state": lambda t, n: raw.save(ids[t], state)}),
        Comparison("apply", lambda t, n: store.apply(ids[t], {"counter": n}), apply_raws),
        Comparison("append", lambda t, n: store.append(chats[t], "messages", [msg]),
                   {"RPUSH" if redis else "INSERT item": lambda t, n: raw.append(chats[t], "messages", msg)}),
    ]


def _median_or_none(values: Sequence[float | None]) -> float | None:
    known = [v for v in values if v is not None]
    return round(median(known), 1) if known else None


def _stats(samples: Sequence[Sample]) -> dict[str, Any]:
    rounds = [summary(s) for s in samples]
    return {
        "ops_per_s": round(median([r["ops_per_s"] for r in rounds]), 1),
        "p50_ms": round(median([r["p50_ms"] for r in rounds]), 3),
        "p99_ms": round(median([r["p99_ms"] for r in rounds]), 3),
        "mean_ms": round(median([r["mean_ms"] for r in rounds if r["mean_ms"] is not None]), 3),
        "client_cpu_us_per_op": round(median([s.cpu_seconds / s.ops * 1e6 for s in samples if s.ops]), 1),
        "server_cpu_us_per_op": _median_or_none([r["server_cpu_us_per_op"] for r in rounds]),
        "errors": sum(sum(s.errors.values()) for s in samples),
        "rounds": rounds,
    }


async def _measured(op: Op, plan: Plan, server_cpu: ServerCpu | None) -> Sample:
    before = await server_cpu() if server_cpu else None
    sample = await hammer(op, tasks=plan.tasks, max_ops=plan.ops, max_seconds=plan.seconds)
    if server_cpu and before is not None:
        after = await server_cpu()
        sample.server_cpu_seconds = None if after is None else after - before
    return sample


async def compare(c: Comparison, plan: Plan, server_cpu: ServerCpu | None = None) -> dict[str, Any]:
    variants: dict[str, Op] = {"store": c.store, **c.raws}
    for op in variants.values():
        await hammer(op, tasks=plan.tasks, max_ops=plan.warmup_ops, max_seconds=plan.warmup_seconds)
    samples: dict[str, list[Sample]] = {name: [] for name in variants}
    for r in range(plan.rounds):
        order = list(variants) if r % 2 == 0 else list(reversed(variants))
        for name in order:
            samples[name].append(await _measured(variants[name], plan, server_cpu))
    store = samples["store"]

    def ratio(label: str, of: Callable[[Sample], float], inverse: bool = False) -> float:
        pairs = [(of(a), of(b)) if not inverse else (of(b), of(a)) for a, b in zip(store, samples[label], strict=True)]
        return round(median([x / y if y else float("nan") for x, y in pairs]), 3)

    def cpu(s: Sample) -> float:
        return s.cpu_seconds / s.ops if s.ops else float("nan")

    solo = await _solo(variants, plan.solo_ops, plan.seconds)
    ratios = {label: ratio(label, lambda s: s.throughput) for label in c.raws}
    p50_ratios = {label: ratio(label, lambda s: s.p(50), inverse=True) for label in c.raws}
    cpu_ratios = {label: ratio(label, cpu, inverse=True) for label in c.raws}
    return {
        "op": c.op,
        "baseline": next(iter(c.raws)),
        "store": _stats(store),
        "raw": {label: _stats(samples[label]) for label in c.raws},
        "ratio": ratios,
        "p50_ratio": p50_ratios,
        "client_cpu_ratio": cpu_ratios,
        "solo_p50_ms": {name: round(median(lat) * 1000, 4) for name, lat in solo.items()},
        "solo_p50_ratio": {label: round(median(solo[label]) / median(solo["store"]), 3) for label in c.raws},
    }


async def _solo(variants: dict[str, Op], ops: int, max_seconds: float) -> dict[str, list[float]]:
    """Each variant called ``ops`` times by one task, interleaved call by call (same moment, same noise)."""
    lat: dict[str, list[float]] = {name: [] for name in variants}
    deadline = time.perf_counter() + max_seconds
    for n in range(ops):
        for name, op in variants.items():
            t = time.perf_counter()
            await op(0, n)
            lat[name].append(time.perf_counter() - t)
        if time.perf_counter() > deadline:
            break
    return lat
