"""The background runs of wait-heavy suite tests (conformance/suite/_overlap.py).

What must hold: a background test's outcome (pass, failure, skip, hang) lands on that test
and no other, with the message it would have had in the foreground; the verdicts are the same
with the overlap on and off; tests that need the backend alone wait for the background and
run last; only selected tests are started.
"""

from __future__ import annotations

import asyncio
import threading
import time
from typing import Any

import pytest

from sessionspec.conformance.results import NOT_APPLICABLE, RunResult
from sessionspec.conformance.runner import run_suite
from sessionspec.conformance.suite._overlap import Job, Overlap, needs_the_backend_alone
from sessionspec.conformance.targets import Target
from sessionspec.reference.memory import MemoryStore
from tests.broken.ttl import AppendDoesNotSlide

FOCUSED = "not agree_with_the_model"


def _target(store: type[MemoryStore], name: str) -> Target:
    return Target(spec=name, description=name, factory=lambda namespace: store())


def _statuses(result: RunResult) -> dict[str, str]:
    return {t.nodeid: t.status for t in result.tests}


class HangingPurge(MemoryStore):
    """purge_expired never answers: only the TTL-5 test calls it."""

    async def purge_expired(self) -> int:
        await asyncio.sleep(3600)
        return 0


def test_a_background_failure_lands_on_its_own_test_with_its_own_message(monkeypatch: pytest.MonkeyPatch) -> None:
    """TTL-2's failure (append does not slide) is reported on its test alone, as in the foreground."""
    clauses = ["TTL-1", "TTL-2", "TTL-5"]
    target = _target(AppendDoesNotSlide, "tests.broken:append_does_not_slide")
    overlapped = run_suite(target, clauses=clauses, keyword=FOCUSED)
    monkeypatch.setenv("SESSIONSPEC_OVERLAP", "0")
    serial = run_suite(target, clauses=clauses, keyword=FOCUSED)
    assert not overlapped.errors and not serial.errors
    assert _statuses(overlapped) == _statuses(serial)
    failed = [t for t in overlapped.tests if t.status == "failed"]
    assert [t.clauses for t in failed] == [("TTL-2",)], [(t.name, t.message) for t in failed]
    assert failed[0].message.startswith("TTL-2: ") and "append" in failed[0].message, failed[0].message


def test_a_hung_background_test_fails_alone_within_its_budget() -> None:
    """A store that hangs in purge_expired fails TTL-5's test with the time-limit message; TTL-1 passes."""
    began = time.monotonic()
    result = run_suite(_target(HangingPurge, "hanging-purge"), clauses=["TTL-1", "TTL-5"], keyword=FOCUSED,
                       timeout=3)
    assert time.monotonic() - began < 60
    by_clause = {t.clauses: t for t in result.tests}
    assert by_clause[("TTL-5",)].status == "failed"
    assert "did not finish within 3 s" in by_clause[("TTL-5",)].message
    assert by_clause[("TTL-1",)].status == "passed", by_clause[("TTL-1",)].message


def test_skips_in_the_background_keep_their_reason() -> None:
    """HY-2 needs a db_timezone hook MemoryStore lacks: skipped as not applicable, from the background run."""
    result = run_suite("memory", clauses=["HY-2"])
    assert [t.status for t in result.tests] == ["skipped"]
    assert result.tests[0].message.startswith(NOT_APPLICABLE)


def test_only_selected_tests_start_and_durations_are_the_tests_own() -> None:
    """--clause LC-4 runs LC-4's tests only; the background one reports its own duration (it waits SHORT_TTL)."""
    result = run_suite("memory", clauses=["LC-4"], keyword=FOCUSED)
    assert result.tests and all(t.clauses == ("LC-4",) for t in result.tests)
    delete = next(t for t in result.tests if "delete_returns_true" in t.name)
    assert delete.status == "passed" and delete.duration >= 0.3 + 0.25


def test_tests_that_need_the_backend_alone_run_first_and_alone() -> None:
    """FL-2 stops the backend: it runs before LC-4's background test starts, whatever the file order."""
    running: list[str] = []
    target = Target(spec="memory-with-hooks", description="x", factory=lambda namespace: MemoryStore(),
                    stop_backend=lambda: running.append(f"stop with {threading.active_count()} threads"),
                    start_backend=lambda: None)
    result = run_suite(target, clauses=["FL-2", "LC-4"], keyword=FOCUSED)
    assert not result.errors, result.errors
    assert [t.clauses[0] for t in result.tests][:1] == ["FL-2"]
    assert {t.status for t in result.tests} == {"passed"}, [(t.name, t.message) for t in result.tests]
    assert not any(t.name == "sessionspec-overlap" for t in threading.enumerate())
    assert running


def _job() -> Job:
    job = Job(item=None, kwargs={})  # type: ignore[arg-type]  # the queue is never run here
    job.started = time.monotonic()
    return job


def test_exclusive_hooks_wait_for_the_background_to_finish() -> None:
    """stop_backend (and command_counts) of a foreground test return only once no background test runs; a fault
    proxy (via_port) is no reason to wait: only its own store instance goes through it."""
    calls: list[float] = []
    target = Target(spec="x", description="x", factory=lambda namespace: MemoryStore(),
                    stop_backend=lambda: calls.append(time.monotonic()), start_backend=lambda: None)
    overlap = Overlap(target, frozenset(), timeout=10, replay={})
    overlap.started = True
    job = overlap.jobs["a"] = _job()
    finished: list[float] = []

    def finish() -> None:
        time.sleep(0.3)
        finished.append(time.monotonic())
        job.events["done"].set()

    threading.Thread(target=finish).start()
    guarded = overlap.guard(target)
    assert guarded.command_counts is None and guarded.via_port is None  # absent hooks stay absent
    assert guarded.stop_backend is not None
    guarded.stop_backend()
    assert calls and finished and calls[0] >= finished[0]
    assert target.stop_backend is not None and guarded.controllable


def test_a_job_past_its_budget_is_given_up_and_reported_hung() -> None:
    overlap = Overlap(_target(MemoryStore, "m"), frozenset(), timeout=0.0, replay={})
    overlap.started = True
    job = overlap.jobs["a"] = _job()
    job.started = time.monotonic() - overlap.budget - 1
    with pytest.raises(pytest.fail.Exception, match="did not finish within"):
        overlap.wait(job, "called")
    assert job.abandoned and not overlap.pending()
    overlap.drain()  # returns: nothing left to wait for


def test_tests_that_stop_or_watch_the_backend_are_recognised() -> None:
    class Item:
        def __init__(self, function: Any) -> None:
            self.function = function

    from sessionspec.conformance.suite import test_failure, test_listing, test_ttl

    assert needs_the_backend_alone(
        Item(test_failure.test_every_operation_raises_backend_unavailable_quickly_when_the_backend_is_down))  # type: ignore[arg-type]
    # its fault proxy stalls only the store instance behind it: it runs in the background with the others
    assert not needs_the_backend_alone(
        Item(test_failure.test_every_operation_raises_backend_unavailable_quickly_when_the_backend_stalls))  # type: ignore[arg-type]
    assert needs_the_backend_alone(Item(test_listing.test_list_and_count_never_run_keys_or_scan))  # type: ignore[arg-type]
    assert not needs_the_backend_alone(Item(test_ttl.test_every_write_restarts_the_period_and_reads_do_not))  # type: ignore[arg-type]
