"""The worker processes behind the `shared` clauses: kept between jobs, never reused after a failure."""

from __future__ import annotations

import asyncio
import json
import subprocess
import sys
import time

import pytest

from sessionspec.conformance.model import Call
from sessionspec.conformance.worker import POOL, WorkerError, WorkerProcess


def job(namespace: str, n: int) -> list[list[dict[str, object]]]:
    return [[{"call": Call("create", f"w{i}", {"i": i}).to_json()}, {"call": Call("get", f"w{i}").to_json()}]
            for i in range(n)]


def test_serve_runs_one_job_per_line_until_eof() -> None:
    jobs = [{"namespace": f"ns{k}", "instances": 2, "tasks": job(f"ns{k}", 3)} for k in range(2)]
    done = subprocess.run([sys.executable, "-m", "sessionspec.conformance.worker", "--serve", "memory"],
                          input="".join(json.dumps(j) + "\n" for j in jobs), capture_output=True, text=True,
                          timeout=60)
    assert done.returncode == 0, done.stderr
    lines = [json.loads(line) for line in done.stdout.splitlines() if '"answered"' not in line]  # progress
    assert [next(iter(line)) for line in lines] == ["ready", "results", "ready", "results"]
    for line in lines[1::2]:
        assert [records[1]["output"]["state"] for records in line["results"]] == [{"i": 0}, {"i": 1}, {"i": 2}]


def test_serve_reports_an_unusable_target_and_a_bad_job() -> None:
    bad_target = subprocess.run([sys.executable, "-m", "sessionspec.conformance.worker", "--serve", "nosuch://x"],
                                input="", capture_output=True, text=True, timeout=60)
    assert bad_target.returncode == 2 and "unusable target" in bad_target.stderr
    bad_job = subprocess.run([sys.executable, "-m", "sessionspec.conformance.worker", "--serve", "memory"],
                             input='{"tasks": []}\n', capture_output=True, text=True, timeout=60)
    assert bad_job.returncode == 1 and "namespace" in json.loads(bad_job.stdout)["error"]


def test_a_clean_worker_is_reused_and_a_failed_one_is_not() -> None:
    async def scenario() -> None:
        first = await WorkerProcess.start("memory", "a", job("a", 2))
        await first.go()
        assert len(await first.results()) == 2
        first.release()
        second = await WorkerProcess.start("memory", "b", job("b", 2))
        assert second.process.pid == first.process.pid  # the pooled child took the job
        second.release()  # released before its results: killed, not pooled
        assert second.process.poll() is not None
        third = await WorkerProcess.start("memory", "c", [[{"neither": "call nor increment"}]])
        await third.go()
        with pytest.raises(WorkerError, match="worker failed"):
            await third.results()
        third.release()
        assert third.process.poll() is not None
        assert POOL.take("memory") is None

    try:
        asyncio.run(scenario())
    finally:
        POOL.close()


def test_a_worker_that_cannot_start_says_why() -> None:
    async def scenario() -> None:
        with pytest.raises(WorkerError, match=r"exited with 2 before 'ready'.*unusable target"):
            await WorkerProcess.start("nosuch://x", "a", job("a", 1))

    asyncio.run(scenario())
    assert POOL.take("nosuch://x") is None


def test_a_childs_answers_count_as_the_parents_while_it_runs() -> None:
    """A shared test's tasks all run in children; the plugin tells a slow store from a hung one by the calls
    answered (worker.answered()), so the children report theirs while they run."""
    from sessionspec.conformance.worker import PROGRESS_EVERY, answered

    async def scenario() -> int:
        at = time.monotonic() + PROGRESS_EVERY * 1.5  # the gets wait past the first report (monotonic: one clock)
        tasks = [[{"call": Call("create", f"p{i}", {}).to_json()}, {"call": Call("get", f"p{i}").to_json(), "at": at}]
                 for i in range(5)]
        before, _ = answered()
        worker = await WorkerProcess.start("memory", "p", tasks)
        try:
            await worker.go()
            await worker.results()
        finally:
            worker.release()
        return answered()[0] - before

    try:
        assert asyncio.run(scenario()) >= 5  # at least the creates, reported before the gets were made
    finally:
        POOL.close()
