"""A store task that swallows its cancellation cannot hang the suite in teardown.

Found on the ADK SQLite adapter: after CC-5's mixed traffic, SQLAlchemy's aiosqlite dialect
left a ``_terminate_graceful_close`` task awaiting a connection thread that had ended, and
``asyncio.Runner.close`` waited for it forever, so the store's run never finished and the
matrix had no report for it. The test's loop now closes within a bounded grace and names the
leftover task instead.
"""

from __future__ import annotations

import asyncio
import time

import pytest

from sessionspec.conformance import plugin


def test_a_task_that_ignores_cancellation_is_named_and_abandoned(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(plugin, "LEFTOVER_GRACE", 0.3)
    runner = asyncio.Runner()

    async def stubborn() -> None:
        for _ in range(1000):
            try:
                await asyncio.get_running_loop().create_future()  # nobody completes it: a dead thread's reply
            except asyncio.CancelledError:
                continue  # swallows the cancellation and waits again

    left: list[asyncio.Future[None]] = []

    async def leave_it_behind() -> None:
        left.append(asyncio.ensure_future(stubborn()))
        await asyncio.sleep(0)

    runner.run(leave_it_behind())
    began = time.monotonic()
    stuck = plugin._close_loop(runner)
    assert time.monotonic() - began < 5
    assert len(stuck) == 1 and "stubborn" in stuck[0]
    assert runner.get_loop().is_closed()


def test_a_loop_whose_tasks_end_on_cancellation_closes_normally() -> None:
    runner = asyncio.Runner()

    left: list[asyncio.Future[None]] = []

    async def leave_a_sleeper() -> None:
        left.append(asyncio.ensure_future(asyncio.sleep(3600)))

    runner.run(leave_a_sleeper())
    assert plugin._close_loop(runner) == []
