"""Run store operations as concurrent tasks, here or in another process (the `shared` clauses).

A *task* is a list of steps run one after another; tasks run concurrently, task ``i`` on
store instance ``i % instances``. A step is ``{"call": Call.to_json()}`` (optionally with
``"expect": "last"`` to use the version this task saw last as ``expected_version``, and
``"timeout"`` seconds after which the outcome is recorded as unknown), or
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
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import random
import sys
import time
from collections.abc import Sequence
from dataclasses import replace
from typing import Any, Final

from .contract import SessionNotFound, SessionStore, VersionConflict
from .model import Call, observe
from .targets import TargetError, open_store, resolve_target

__all__ = ["RETRY_BUDGET", "GaveUp", "WorkerError", "WorkerProcess", "increment", "perform", "run_tasks"]

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
    timeout = step.get("timeout")
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
class GaveUp(Exception):
    """increment() met a VersionConflict on every attempt."""


class WorkerError(RuntimeError):
    """A worker process failed; the message carries its stderr."""


class WorkerProcess:
    """One ``python -m sessionspec.conformance.worker`` child, started and held at the gate."""

    def __init__(self, process: asyncio.subprocess.Process) -> None:
        self.process = process

    @classmethod
    async def start(cls, target: str, namespace: str, tasks: Sequence[Task], *, instances: int = 2) -> WorkerProcess:
        """Spawn, hand over the job, and wait until its stores are open (``ready``)."""
        paths = [p for p in sys.path if p]
        env = {**os.environ, "PYTHONPATH": os.pathsep.join([os.getcwd(), *paths])}
        process = await asyncio.create_subprocess_exec(
            sys.executable, "-m", "sessionspec.conformance.worker",
            stdin=asyncio.subprocess.PIPE, stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE, env=env)
        worker = cls(process)
        try:
            job = {"target": target, "namespace": namespace, "instances": instances, "tasks": list(tasks),
                   "wait_for_go": True}
            assert process.stdin is not None and process.stdout is not None
            process.stdin.write(json.dumps(job).encode() + b"\n")
            await process.stdin.drain()
            await asyncio.wait_for(worker._ready(), READY_TIMEOUT)
        except BaseException:
            await worker.kill()
            raise
        return worker

    async def _ready(self) -> None:
        """Skip whatever the factory printed until the ready line."""
        assert self.process.stdout is not None
        while line := await self.process.stdout.readline():
            if line.strip() == b'{"ready": true}':
                return
        await self._fail("ended before it was ready")

    async def go(self) -> None:
        assert self.process.stdin is not None
        self.process.stdin.write(b"go\n")
        await self.process.stdin.drain()

    async def results(self) -> list[list[Record]]:
        """Wait for the worker to finish and return its records (one list per task)."""
        try:
            out, err = await self.process.communicate()
        finally:
            await self.kill()
        if self.process.returncode != 0:
            raise WorkerError(f"worker exited with {self.process.returncode}: {err.decode(errors='replace')[-2000:]}")
        results: list[list[Record]] = json.loads(out.splitlines()[-1])["results"]
        return results

    async def kill(self) -> None:
        if self.process.returncode is None:
            with contextlib.suppress(ProcessLookupError):
                self.process.kill()
            await self.process.wait()

    async def _fail(self, what: str) -> None:
        await self.kill()
        assert self.process.stderr is not None
        err = (await self.process.stderr.read()).decode(errors="replace")
        raise WorkerError(f"worker {what}: {err[-2000:]}")


# -- the program ---------------------------------------------------------------------------
async def _main(job: dict[str, Any]) -> list[list[Record]]:
    target = resolve_target(job["target"])
    try:
        async with contextlib.AsyncExitStack() as stack:
            stores = [await stack.enter_async_context(open_store(target, job["namespace"]))
                      for _ in range(int(job.get("instances", 1)))]
            print(json.dumps({"ready": True}), flush=True)
            if job.get("wait_for_go"):
                await asyncio.get_running_loop().run_in_executor(None, sys.stdin.readline)
            return await run_tasks(stores, job["tasks"])
    finally:
        target.close()


def main(argv: Sequence[str] = sys.argv[1:]) -> int:
    try:
        job = json.loads(argv[0] if argv else sys.stdin.readline())
        if not isinstance(job, dict) or not {"target", "namespace", "tasks"} <= job.keys():
            raise ValueError('the job must be a JSON object with "target", "namespace" and "tasks"')
    except ValueError as exc:  # json.JSONDecodeError is a ValueError
        print(f"sessionspec worker: unusable job: {exc}", file=sys.stderr)
        return 2
    try:
        results = asyncio.run(_main(job))
    except TargetError as exc:
        print(f"sessionspec worker: unusable target: {exc}", file=sys.stderr)
        return 2
    except Exception as exc:
        print(f"sessionspec worker: {type(exc).__name__}: {exc}", file=sys.stderr)
        return 1
    print(json.dumps({"results": results}), flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
