"""The measuring loop and its statistics: N operations from T concurrent tasks, bounded in count and time.

Every task takes the next operation number from a shared counter until the count or the
deadline is reached, times each call with ``perf_counter`` and keeps the latency. Latency
therefore includes waiting for a pooled connection, as an application under that load sees it.
"""

from __future__ import annotations

import asyncio
import statistics
import time
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

__all__ = ["Op", "Sample", "hammer", "median", "percentile", "summary"]

Op = Callable[[int, int], Awaitable[Any]]
"""op(task, n): one call by task ``task`` (0..tasks-1); ``n`` counts calls across all tasks."""


@dataclass(slots=True)
class Sample:
    """One measurement: how many calls finished, over what wall time, and each call's latency (s)."""

    ops: int
    seconds: float
    latencies: list[float] = field(repr=False)
    capped: bool = False
    """True when the time cap, not the op count, ended the measurement."""
    errors: dict[str, int] = field(default_factory=dict)
    """Failed calls by exception type (not counted in ops); a healthy run has none."""
    cpu_seconds: float = 0.0
    """CPU time this process spent (client side): per op, it is steadier than throughput on a busy box."""
    server_cpu_seconds: float | None = None
    """CPU time the server spent meanwhile, when it tells (Redis INFO cpu)."""

    @property
    def throughput(self) -> float:
        return self.ops / self.seconds if self.seconds > 0 else 0.0

    def p(self, q: float) -> float:
        return percentile(self.latencies, q)


def percentile(values: Sequence[float], q: float) -> float:
    """The q-th percentile (0..100), nearest rank; NaN for no values."""
    if not values:
        return float("nan")
    ordered = sorted(values)
    rank = max(0, min(len(ordered) - 1, round(q / 100 * len(ordered)) - 1))
    return ordered[rank]


def median(values: Sequence[float]) -> float:
    return statistics.median(values) if values else float("nan")


async def hammer(op: Op, *, tasks: int, max_ops: int, max_seconds: float) -> Sample:
    """Run ``op`` from ``tasks`` concurrent tasks until ``max_ops`` calls started or ``max_seconds`` passed."""
    latencies: list[float] = []
    errors: dict[str, int] = {}
    issued = 0
    start = time.perf_counter()
    cpu = time.process_time()
    deadline = start + max_seconds

    async def worker(task: int) -> None:
        nonlocal issued
        while issued < max_ops:
            t0 = time.perf_counter()
            if t0 >= deadline:
                return
            n = issued
            issued += 1
            try:
                await op(task, n)
            except Exception as exc:  # a benchmark reports failures, it does not stop at the first
                errors[type(exc).__name__] = errors.get(type(exc).__name__, 0) + 1
                continue
            latencies.append(time.perf_counter() - t0)

    await asyncio.gather(*(worker(i) for i in range(tasks)))
    seconds = time.perf_counter() - start
    return Sample(len(latencies), seconds, latencies, capped=issued < max_ops, errors=errors,
                  cpu_seconds=time.process_time() - cpu)


def summary(sample: Sample) -> dict[str, Any]:
    """The JSON figures of one sample (latencies in milliseconds)."""
    return {
        "ops": sample.ops,
        "seconds": round(sample.seconds, 4),
        "ops_per_s": round(sample.throughput, 1),
        "p50_ms": round(sample.p(50) * 1000, 3),
        "p99_ms": round(sample.p(99) * 1000, 3),
        "mean_ms": round(statistics.fmean(sample.latencies) * 1000, 3) if sample.latencies else None,
        "client_cpu_us_per_op": round(sample.cpu_seconds / sample.ops * 1e6, 1) if sample.ops else None,
        "server_cpu_us_per_op": (round(sample.server_cpu_seconds / sample.ops * 1e6, 1)
                                 if sample.ops and sample.server_cpu_seconds is not None else None),
        "capped": sample.capped,
        "errors": sample.errors,
    }
