"""Run store operations as concurrent tasks, here or in another process (the `shared` clauses).

A *task* is a list of steps run one after another; tasks run concurrently, task ``i`` on
store instance ``i % instances``. A step is ``{"call": Call.to_json()}`` (optionally with
``"expect": "last"`` to use the version this task saw last as ``expected_version``, and
``"timeout"`` seconds after which the outcome is recorded as unknown, and ``"at"``, a
``time.monotonic()`` instant not to start before: a schedule around a deadline, never a
means of ordering calls, whose order the records' times tell), or
``{"increment": {"id", "key", "via"}}``: a read-modify-write with expected_version that
retries on VersionConflict (CC-4: first attempts all at once, retries taking turns, see
:func:`increment`). Every step's record is ``{"call", "invoke", "response", "output"}``
(monotonic times; ``output`` absent when unknown); outputs are spelled as
:func:`sessionspec.conformance.model.observe` spells them.

As a program, ``python -m sessionspec.conformance.worker [JOB]`` reads the job (JSON:
``target``, ``namespace``, ``instances``, ``tasks``, ``wait_for_go``) from the argument
or the first line of stdin, opens the stores with ``resolve_target`` + ``open_store``,
prints ``{"ready": true}`` and, when ``wait_for_go``, waits for a line on stdin (so every
process starts its tasks at once), then prints ``{"results": [...]}`` (one list per task).
It exits 2 with a message on stderr when the job or target is unusable, 1 on other errors.
``--serve TARGET`` resolves the target once and then runs such jobs (without ``target``),
one per stdin line, until EOF; a failed job prints ``{"error": ...}`` and ends the program.
"""

from __future__ import annotations

import asyncio
import atexit
import contextlib
import json
import os
import random
import subprocess
import sys
import tempfile
import time
from collections.abc import Sequence
from dataclasses import replace
from typing import IO, Any, Final

from .answers import answered, counts_itself, note_answer
from .contract import SessionNotFound, SessionStore, VersionConflict
from .model import Call, observe
from .targets import Target, TargetError, open_store, resolve_target

__all__ = [
    "POOL",
    "RETRY_BUDGET",
    "GaveUp",
    "WorkerError",
    "WorkerPool",
    "WorkerProcess",
    "answered",
    "increment",
    "perform",
    "run_tasks",
]

RETRY_BUDGET: Final = 90.0
"""Seconds one increment may keep retrying. A time budget, not an attempt cap: on a busy machine
a correct store can need hundreds of retries, and giving up would flag it for a lost update."""
BACKOFF_BASE: Final = 0.005
BACKOFF_CAP: Final = 2.0
"""Full-jitter backoff after a conflict: sleep uniform(0, min(CAP, BASE * 2**attempt)). The cap
must let 1000 writers' retries fall below what the server can serve: with 0.5 s, on a 2-core
VM, 1000 free-running writers collapsed into conflicts (Postgres 57-68 s and 83-90k attempts,
Redis 39 s and 63k); with 2 s it took 14-15 s and 9 s (about 10k attempts)."""
READY_TIMEOUT: Final = 60.0

Record = dict[str, Any]
Task = list[dict[str, Any]]


async def perform(store: SessionStore, call: Call) -> Any:
    """Make ``call`` on ``store``; ``list`` pages through everything and returns the items sorted by id."""
    f, id, ev = call.f, call.id, call.expected_version
    if f == "create":
        return await store.create(call.value, id=id, owner=call.owner, ttl=call.ttl)
    if f == "get":
        return await store.get(id)
    if f == "save":
        return await store.save(id, call.value, expected_version=ev, ttl=call.ttl)
    if f == "apply":
        return await store.apply(id, call.value, expected_version=ev)
    if f == "append":
        return await store.append(id, call.key, call.value, expected_version=ev)
    if f == "touch":
        return await store.touch(id, ttl=call.ttl)
    if f == "delete":
        return await store.delete(id)
    if f == "count":
        return await store.count(owner=call.owner)
    if f == "purge_expired":
        return await store.purge_expired()
    if f == "list":
        items, cursor = [], None
        while True:
            page = await store.list(owner=call.owner, limit=100, cursor=cursor)
            items += page.items
            if page.next_cursor is None:
                return sorted(items, key=lambda info: info.id)
            cursor = page.next_cursor
    raise ValueError(f"unknown operation {f!r}")


async def increment(store: SessionStore, id: str, key: str, via: str = "apply",
                    turns: dict[str, asyncio.Lock] | None = None) -> dict[str, Any]:
    """CC-4's client: get, write n+1 with expected_version (by save or apply), retry on VersionConflict.

    The first attempt starts at once, so 1000 tasks race on one version: the stress CC-4 is
    for. With ``turns`` (one dict per :func:`run_tasks` call), a retry first takes the session's
    lock there, so this process's retries take turns instead of racing each other; conflicts
    then come only from first attempts and other processes, and each is followed by jittered
    backoff. Free-running full-jitter retries (``turns=None``) spend most of their time asleep:
    about 9 attempts per commit and 5-6 s for 1000 on a 2-core machine, against about 1 s
    taking turns (bench/contention.py measures both).
    """
    deadline = time.monotonic() + RETRY_BUDGET
    attempt = 0
    while time.monotonic() < deadline:
        attempt += 1
        turn = turns.setdefault(id, asyncio.Lock()) if turns is not None and attempt > 1 else None
        async with turn or contextlib.nullcontext():
            outcome = await _read_modify_write(store, id, key, via)
        if outcome is not None:
            value, version = outcome
            return {"attempts": attempt, "value": value, "version": version}
        await asyncio.sleep(random.uniform(0, min(BACKOFF_CAP, BACKOFF_BASE * 2 ** min(attempt, 20))))
    raise GaveUp(f"no commit in {RETRY_BUDGET:g} s ({attempt} attempts): every write met a VersionConflict")


async def _read_modify_write(store: SessionStore, id: str, key: str, via: str) -> tuple[Any, int] | None:
    """One attempt: (the value written, its version), or None after a VersionConflict."""
    current = await store.get(id)
    if current is None:
        raise SessionNotFound(id)
    value = current.state.get(key, 0) + 1
    try:
        if via == "save":
            written = await store.save(id, current.state | {key: value}, expected_version=current.version)
        else:
            written = await store.apply(id, {key: value}, expected_version=current.version)
    except VersionConflict:
        return None
    return value, written.version


PROGRESS_EVERY: Final = 1.0
"""Seconds between a worker child's ``{"answered": n}`` lines: the parent counts its children's answers as
its own (answered()), so a shared test out of time whose work is all in children still tells slow from hung."""


async def _report_progress() -> None:
    reported, _ = answered()
    while True:
        await asyncio.sleep(PROGRESS_EVERY)
        count, _ = answered()
        if count > reported:
            print(json.dumps({"answered": count - reported}), flush=True)
            reported = count


async def _step(store: SessionStore, step: dict[str, Any], last_version: int | None,
                turns: dict[str, asyncio.Lock]) -> Record:
    if "increment" in step:
        call_json: dict[str, Any] = {"f": "increment", **step["increment"]}
        action = increment(store, **step["increment"], turns=turns)
    else:
        call = Call.from_json(step["call"])
        if step.get("expect") == "last":
            call = replace(call, expected_version=last_version)
        call_json, action = call.to_json(), perform(store, call)
    timeout, at = step.get("timeout"), step.get("at")
    if at is not None:  # CLOCK_MONOTONIC is one clock for every process of the machine
        await asyncio.sleep(max(0.0, at - time.monotonic()))
    record: Record = {"call": call_json, "invoke": time.monotonic()}
    try:
        result = await (action if timeout is None else asyncio.wait_for(action, timeout))
        record["output"] = observe(result)
    except TimeoutError as exc:  # our time limit: the outcome is unknown (no "output")
        if timeout is None:
            record["output"] = observe(exc)
    except Exception as exc:  # the store's error is an output like any other; the test judges it
        record["output"] = observe(exc)
    record["response"] = time.monotonic()
    if "output" in record and not counts_itself(store, "get" if call_json["f"] == "increment" else call_json["f"]):
        note_answer()  # a store whose operations count themselves (answers.count_answers) already did
    return record


async def _run_task(store: SessionStore, steps: Task, turns: dict[str, asyncio.Lock]) -> list[Record]:
    records: list[Record] = []
    last_version: int | None = None
    for step in steps:
        record = await _step(store, step, last_version, turns)
        output = record.get("output")
        if isinstance(output, dict) and isinstance(output.get("version"), int):
            last_version = output["version"]
        records.append(record)
    return records


async def run_tasks(stores: Sequence[SessionStore], tasks: Sequence[Task]) -> list[list[Record]]:
    """Run every task concurrently, task i on ``stores[i % len(stores)]``; records in task order."""
    turns: dict[str, asyncio.Lock] = {}  # increments' retries take turns per session (see increment)
    return list(await asyncio.gather(*(_run_task(stores[i % len(stores)], t, turns) for i, t in enumerate(tasks))))


# -- the other side: driving a worker process ------------------------------------------------
def stop_child(process: subprocess.Popen[bytes], errors: IO[bytes]) -> None:
    """Kill a worker child (if it still runs), reap it, and close its pipes and its stderr file."""
    if process.poll() is None:
        with contextlib.suppress(ProcessLookupError):
            process.kill()
    process.wait()
    for pipe in (process.stdin, process.stdout):
        if pipe is not None:
            with contextlib.suppress(OSError):
                pipe.close()
    errors.close()


class GaveUp(Exception):
    """increment() met a VersionConflict on every attempt."""


class WorkerError(RuntimeError):
    """A worker process failed; the message carries its stderr."""


class WorkerProcess:
    """One ``python -m sessionspec.conformance.worker --serve TARGET`` child, running one job at a time.

    Children are kept between jobs (see :data:`POOL`): a CC-* ``shared`` test needs two, and
    starting a Python process with the store's driver costs 0.3-1 s, which seven tests paid
    twice each. A child opens its stores per job and closes them after, so between jobs it
    holds no connection (FL-* may stop the server meanwhile). Pipes are plain blocking files
    read in a thread, so a child outlives the event loop of the test that started it (each
    suite test runs on its own loop). Any failure, timeout or cancel kills the child; only a
    child that delivered its results goes back to the pool.
    """

    def __init__(self, process: subprocess.Popen[bytes], target: str, errors: IO[bytes]) -> None:
        self.process, self.target, self._errors = process, target, errors
        self._clean = False

    @classmethod
    def spawn(cls, target: str) -> WorkerProcess:
        paths = [p for p in sys.path if p]
        env = {**os.environ, "PYTHONPATH": os.pathsep.join([os.getcwd(), *paths])}
        errors = tempfile.TemporaryFile()  # a file, not a pipe: a chatty child can never block on it
        process = subprocess.Popen([sys.executable, "-m", "sessionspec.conformance.worker", "--serve", target],
                                   stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=errors, env=env)
        return cls(process, target, errors)

    @classmethod
    async def start(cls, target: str, namespace: str, tasks: Sequence[Task], *, instances: int = 2) -> WorkerProcess:
        """Take an idle child for ``target`` (or spawn one), hand over the job, wait until its stores are open."""
        worker = POOL.take(target) or cls.spawn(target)
        try:
            worker._send(json.dumps({"namespace": namespace, "instances": instances, "tasks": list(tasks),
                                     "wait_for_go": True}).encode())
            await asyncio.wait_for(worker._expect("ready"), READY_TIMEOUT)
        except BaseException:
            worker.kill()
            raise
        return worker

    def _send(self, line: bytes) -> None:
        assert self.process.stdin is not None
        try:
            self.process.stdin.write(line + b"\n")
            self.process.stdin.flush()
        except OSError as exc:  # the child died: say why
            raise WorkerError(f"worker is gone ({exc}): {self._stderr()}") from None

    async def _expect(self, key: str) -> Any:
        """The value of the next stdout line that is a JSON object with ``key`` (skipping what factories print)."""
        assert self.process.stdout is not None
        while line := await asyncio.to_thread(self.process.stdout.readline):
            if line.startswith(b"{"):
                with contextlib.suppress(ValueError):
                    message = json.loads(line)
                    if isinstance(message, dict) and key in message:
                        return message[key]
                    if isinstance(message, dict) and isinstance(message.get("answered"), int):
                        note_answer(message["answered"])  # the child's calls count as this test's (answered())
                    if isinstance(message, dict) and "error" in message:
                        raise WorkerError(f"worker failed: {message['error']}")
        with contextlib.suppress(subprocess.TimeoutExpired):  # stdout closed: it is exiting; say how
            self.process.wait(5)
        code, err = self.process.poll(), self._stderr()
        self.kill()
        raise WorkerError(f"worker exited with {code} before {key!r}: {err}")

    async def go(self) -> None:
        self._send(b"go")

    async def results(self) -> list[list[Record]]:
        """Wait for the job's records (one list per task); the child then goes back to the pool."""
        try:
            results: list[list[Record]] = await self._expect("results")
        except BaseException:
            self.kill()
            raise
        self._clean = True
        return results

    def release(self) -> None:
        """Back to the pool after a clean job; killed otherwise (its state is unknown)."""
        if self._clean and self.process.poll() is None:
            self._clean = False
            POOL.give_back(self)
        else:
            self.kill()

    def kill(self) -> None:
        stop_child(self.process, self._errors)

    def _stderr(self) -> str:
        with contextlib.suppress(OSError, ValueError):
            self._errors.seek(0)
            return self._errors.read()[-2000:].decode(errors="replace")
        return ""


class WorkerPool:
    """Idle worker children by target, reused across tests; :meth:`close` kills them (run end, atexit)."""

    def __init__(self) -> None:
        self._idle: dict[str, list[WorkerProcess]] = {}
        atexit.register(self.close)

    def take(self, target: str) -> WorkerProcess | None:
        idle = self._idle.get(target, [])
        while idle:
            worker = idle.pop()
            if worker.process.poll() is None:
                return worker
            worker.kill()
        return None

    def give_back(self, worker: WorkerProcess) -> None:
        self._idle.setdefault(worker.target, []).append(worker)

    def close(self) -> None:
        workers = [w for idle in self._idle.values() for w in idle]
        self._idle.clear()
        for worker in workers:
            worker.kill()


POOL: Final = WorkerPool()


# -- the program ---------------------------------------------------------------------------
async def _run_job(target: Target, job: dict[str, Any]) -> list[list[Record]]:
    async with contextlib.AsyncExitStack() as stack:
        stores = [await stack.enter_async_context(open_store(target, job["namespace"]))
                  for _ in range(int(job.get("instances", 1)))]
        print(json.dumps({"ready": True}), flush=True)
        if job.get("wait_for_go"):
            await asyncio.get_running_loop().run_in_executor(None, sys.stdin.readline)
        progress = asyncio.ensure_future(_report_progress())
        try:
            return await run_tasks(stores, job["tasks"])
        finally:
            progress.cancel()


def _check_job(job: Any, keys: set[str]) -> dict[str, Any]:
    if not isinstance(job, dict) or not keys <= job.keys():
        raise ValueError(f"the job must be a JSON object with {', '.join(sorted(keys))}")
    return job


def _serve(spec: str) -> int:
    """Jobs (``namespace``, ``instances``, ``tasks``, ``wait_for_go``), one per stdin line, until EOF."""
    try:
        target = resolve_target(spec)
    except TargetError as exc:
        print(f"sessionspec worker: unusable target: {exc}", file=sys.stderr)
        return 2
    try:
        while line := sys.stdin.readline():
            try:
                job = _check_job(json.loads(line), {"namespace", "tasks"})
                results = asyncio.run(_run_job(target, job))
            except Exception as exc:
                print(json.dumps({"error": f"{type(exc).__name__}: {exc}"}), flush=True)
                return 1
            print(json.dumps({"results": results}), flush=True)
        return 0
    finally:
        target.close()


def main(argv: Sequence[str] = sys.argv[1:]) -> int:
    """``--serve TARGET``: jobs until EOF (what WorkerProcess runs); ``[JOB]``: one job with its target."""
    if argv[:1] == ["--serve"] and len(argv) == 2:
        return _serve(argv[1])
    try:
        job = _check_job(json.loads(argv[0] if argv else sys.stdin.readline()), {"target", "namespace", "tasks"})
    except ValueError as exc:  # json.JSONDecodeError is a ValueError
        print(f"sessionspec worker: unusable job: {exc}", file=sys.stderr)
        return 2
    try:
        target = resolve_target(job["target"])
    except TargetError as exc:
        print(f"sessionspec worker: unusable target: {exc}", file=sys.stderr)
        return 2
    try:
        results = asyncio.run(_run_job(target, job))
    except Exception as exc:
        print(f"sessionspec worker: {type(exc).__name__}: {exc}", file=sys.stderr)
        return 1
    finally:
        target.close()
    print(json.dumps({"results": results}), flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
