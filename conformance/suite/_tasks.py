"""Concurrent tasks written down as data, run on one store instance or across processes (the CC-* clauses).

On ``one-instance`` every task runs on ``ctx.store``. On ``shared`` (spec: at least 4
store instances in at least 2 processes) half of them run here across 2 store instances
and the other half in a worker process across 2 more, released together once both
processes have their stores open (see :mod:`sessionspec.conformance.worker`).
"""

from __future__ import annotations

import asyncio
from typing import Any

import pytest

from sessionspec.conformance.context import SuiteContext
from sessionspec.conformance.linearizability import UNKNOWN
from sessionspec.conformance.model import Call
from sessionspec.conformance.results import NOT_APPLICABLE
from sessionspec.conformance.worker import Record, Task, WorkerProcess, run_tasks

__all__ = ["TOPOLOGIES", "outputs", "spread", "step"]

TOPOLOGIES = ("one-instance", "shared")


def step(call: Call, **extra: Any) -> dict[str, Any]:
    return {"call": call.to_json(), **extra}


async def spread(ctx: SuiteContext, topology: str, tasks: list[Task]) -> list[list[Record]]:
    """Run ``tasks`` concurrently on the topology; the records come back in task order."""
    if topology == "one-instance":
        return await run_tasks([ctx.store], tasks)
    ctx.require("shared", "this variant spreads the tasks over 4 store instances in 2 processes")
    spec = ctx.target.process_spec
    if spec is None:
        pytest.skip(f"{NOT_APPLICABLE}: the target names no process_spec, so no other process can reach its data")
    stores = [ctx.store, await ctx.another_store()]
    groups = [[i for i in range(len(tasks)) if i % 2 == side] for side in (0, 1)]
    started = await asyncio.gather(
        *(WorkerProcess.start(spec, ctx.namespace, [tasks[i] for i in ids]) for ids in groups[1:]),
        return_exceptions=True)
    workers = [w for w in started if isinstance(w, WorkerProcess)]
    try:
        for failure in started:
            if isinstance(failure, BaseException):
                raise failure
        for worker in workers:
            await worker.go()
        parts = await asyncio.gather(run_tasks(stores, [tasks[i] for i in groups[0]]),
                                     *(worker.results() for worker in workers))
    finally:
        for worker in workers:
            worker.release()  # back to the pool for the next shared test, or killed if anything went wrong
    records: dict[int, list[Record]] = {}
    for ids, part in zip(groups, parts, strict=True):
        records.update(zip(ids, part, strict=True))
    return [records[i] for i in range(len(tasks))]


def outputs(results: list[list[Record]]) -> list[Any]:
    """Every step's output, task by task (UNKNOWN where a step timed out)."""
    return [record.get("output", UNKNOWN) for records in results for record in records]
