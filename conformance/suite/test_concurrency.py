"""CC-*: 1000 concurrent tasks per clause, on one store instance and (``shared``) across instances and processes.

Each test writes its tasks down as data (see :mod:`sessionspec.conformance.worker`) and
hands them to :func:`spread`. On ``one-instance`` they all run on ``ctx.store``. On
``shared`` (spec: at least 4 store instances in at least 2 processes) half of them run here
across 2 store instances and the other half in a worker process across 2 more (kept for the
next shared test), released together once both processes have their stores open;
reads afterwards go through ``ctx.store``, so a write made in another process must be
visible here. The final-state checks are stress; CC-6's linearizability check needs no luck.
"""

from __future__ import annotations

import asyncio
import random
from collections import Counter
from collections.abc import Callable
from typing import Any

import pytest

from sessionspec.conformance.clauses import clause
from sessionspec.conformance.context import SuiteContext
from sessionspec.conformance.contract import DELETE, KEEP, Session
from sessionspec.conformance.linearizability import UNKNOWN, Operation, check, to_jepsen
from sessionspec.conformance.model import (
    Call,
    ModelMismatch,
    Namespace,
    Tracker,
    describe_operation,
    is_failure,
    observe,
    step_operation,
)
from sessionspec.conformance.results import NOT_APPLICABLE
from sessionspec.conformance.worker import Record, Task, WorkerProcess, run_tasks

from ._timing import timed

N = 1000
TOPOLOGIES = ("one-instance", "shared")
TTL = 3600.0


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


def assert_succeeded(clause_id: str, what: str, outs: list[Any]) -> None:
    failed = Counter(str(o.get("error")) if isinstance(o, dict) else repr(o)
                     for o in outs if o is UNKNOWN or (isinstance(o, dict) and "error" in o))
    hint = (" BackendUnavailable with the backend up means the store gave up while queueing (a pool or lock "
            "wait counted as unreachability): load must slow a store down, not fail it."
            if "BackendUnavailable" in failed else "")
    assert not failed, (
        f"{clause_id}: of {len(outs)} concurrent {what}, {sum(failed.values())} failed: {dict(failed)}. Under "
        "concurrency every one of these calls must succeed." + hint
    )


async def on_one_session(ctx: SuiteContext, topology: str, clause_id: str, what: str, state: dict[str, Any],
                         tasks_for: Callable[[str], list[Task]]) -> tuple[Session, list[Any]]:
    """Create the session the tasks share, run them on it, and require every call to succeed."""
    session = await ctx.store.create(state, ttl=TTL)
    outs = outputs(await spread(ctx, topology, tasks_for(session.id)))
    assert_succeeded(clause_id, what, outs)
    return session, outs


async def live(ctx: SuiteContext, id: str, clause_id: str) -> Session:
    got = await ctx.store.get(id)
    assert got is not None, f"{clause_id}: session {id!r} vanished (get is None) during the concurrent run."
    return got


# -- CC-1, CC-2: creates ------------------------------------------------------------------------------
@clause("CC-1")
@pytest.mark.parametrize("topology", TOPOLOGIES)
async def test_concurrent_creates_without_id_give_distinct_live_sessions(ctx: SuiteContext, topology: str) -> None:
    tasks = [[step(Call("create", None, {"task": i}, ttl=TTL))] for i in range(N)]
    outs = outputs(await spread(ctx, topology, tasks))
    assert_succeeded("CC-1", "creates without id", outs)
    ids = [o["id"] for o in outs]
    reused = {id: n for id, n in Counter(ids).items() if n > 1}
    assert not reused, (
        f"CC-1: {len(reused)} ids were handed to more than one of {N} concurrent creates, e.g. {next(iter(reused))!r}. "
        "Generated ids need >= 128 random bits (not a clock or a counter per process), and create must never "
        "overwrite a live session."
    )
    reads = await asyncio.gather(*(ctx.store.get(id) for id in ids))
    wrong = [(i, ids[i], r.state if r else None) for i, r in enumerate(reads) if r is None or r.state != {"task": i}]
    assert not wrong, (
        f"CC-1: {len(wrong)} of {N} concurrently created sessions do not read back their own state; e.g. task "
        f"{wrong[0][0]}'s session {wrong[0][1]!r} reads {wrong[0][2]!r} instead of {{'task': {wrong[0][0]}}}."
    )
    if ctx.claims("listing"):
        count = await ctx.store.count()
        assert count == N, f"CC-1: count() is {count} after {N} concurrent creates in a fresh namespace."


@clause("CC-2")
@pytest.mark.parametrize("topology", TOPOLOGIES)
async def test_exactly_one_of_concurrent_creates_of_one_id_wins(ctx: SuiteContext, topology: str) -> None:
    tasks = [[step(Call("create", "cc2-contested", {"task": i}, ttl=TTL))] for i in range(N)]
    outs = outputs(await spread(ctx, topology, tasks))
    winners = [i for i, o in enumerate(outs) if o is not UNKNOWN and not is_failure(o)]
    other = Counter(o["error"] if isinstance(o, dict) else repr(o) for o in outs
                    if o is UNKNOWN or (is_failure(o) and o["error"] != "SessionExists"))
    assert not other, (
        f"CC-2: besides one success and SessionExists, concurrent creates of one id ended in {dict(other)}; the "
        "losers must raise SessionExists and nothing else."
    )
    assert len(winners) == 1, (
        f"CC-2: {len(winners)} of {N} concurrent creates of one id succeeded; exactly one must, the other {N - 1} "
        "raising SessionExists. Create must be create-if-absent in one atomic step (SET NX, INSERT ... ON CONFLICT "
        "DO NOTHING), never exists-check then write."
    )
    got = await live(ctx, "cc2-contested", "CC-2")
    assert got.state == {"task": winners[0]}, (
        f"CC-2: task {winners[0]} won the create, but the stored state is {got.state!r}: a loser overwrote it."
    )


# -- CC-3, CC-4, CC-7: many writers, one session ------------------------------------------------------------
@clause("CC-3")
@pytest.mark.parametrize("topology", TOPOLOGIES)
async def test_concurrent_applies_of_distinct_keys_lose_nothing(ctx: SuiteContext, topology: str) -> None:
    session, outs = await on_one_session(ctx, topology, "CC-3", "applies", {},
                                         lambda id: [[step(Call("apply", id, {f"k{i}": i}))] for i in range(N)])
    got = await live(ctx, session.id, "CC-3")
    lost = [i for i in range(N) if got.state.get(f"k{i}") != i]
    assert not lost, (
        f"CC-3: {len(lost)} of {N} keys applied concurrently are missing or wrong (e.g. k{lost[0]}): lost updates. "
        "apply must merge on the backend in one atomic step (a script or a transaction), never GET, merge in the "
        "client, then SET (google/adk-python#4751)."
    )
    versions = [o["version"] for o in outs]
    assert len(set(versions)) == N and min(versions) > session.version and got.version == max(versions), (
        f"CC-3: {N} applies returned {len(set(versions))} distinct versions (from {min(versions)} to "
        f"{max(versions)}; the session started at {session.version}, get shows {got.version}). Every apply is its "
        "own write: distinct versions above the start, the last one what get shows."
    )


@clause("CC-4")
@pytest.mark.parametrize("topology", TOPOLOGIES)
async def test_concurrent_optimistic_increments_reach_the_exact_total(ctx: SuiteContext, topology: str) -> None:
    """Half the tasks commit with save, half with apply, each with expected_version and retries."""
    session, outs = await on_one_session(
        ctx, topology, "CC-4", "read-modify-write increments", {"n": 0},
        lambda id: [[{"increment": {"id": id, "key": "n", "via": "save" if i % 2 else "apply"}}] for i in range(N)])
    ctx.attach("cc4_attempts", sum(o["attempts"] for o in outs))
    got = await live(ctx, session.id, "CC-4")
    twice = sorted(v for v, n in Counter(o["value"] for o in outs).items() if n > 1)
    assert got.state.get("n") == N and not twice, (
        f"CC-4: after {N} increments that each committed with expected_version, n is {got.state.get('n')!r}; "
        f"{len(twice)} values were committed by more than one task (e.g. {twice[:5]}). Two writers holding the "
        "same version both got through: the version check must be atomic with the write (MG-2)."
    )


@clause("CC-7")
@pytest.mark.parametrize("topology", TOPOLOGIES)
async def test_concurrent_appends_keep_every_item_once_and_each_tasks_order(ctx: SuiteContext, topology: str) -> None:
    """1000 tasks each append two items, one call each, so per-task order is observable."""
    session, outs = await on_one_session(
        ctx, topology, "CC-7", "appends", {"log": []},
        lambda id: [[step(Call("append", id, [f"{i}:{j}"], key="log")) for j in range(2)] for i in range(N)])
    log = (await live(ctx, session.id, "CC-7")).state.get("log")
    assert isinstance(log, list), f"CC-7: the appended key holds {type(log).__name__}, not a list."
    counts, expected = Counter(map(str, log)), {f"{i}:{j}" for i in range(N) for j in range(2)}
    lost, doubled = sorted(expected - counts.keys()), sorted(k for k, n in counts.items() if n > 1)
    assert not lost and not doubled and len(log) == 2 * N, (
        f"CC-7: after {2 * N} concurrent appends the list has {len(log)} items: {len(lost)} lost (e.g. {lost[:3]}), "
        f"{len(doubled)} duplicated (e.g. {doubled[:3]}). append must extend the list atomically on the backend "
        "(RPUSH in the same script, jsonb || in one UPDATE), never read-extend-write."
    )
    where = {item: index for index, item in enumerate(log)}
    swapped = [i for i in range(N) if where[f"{i}:0"] > where[f"{i}:1"]]
    assert not swapped, (
        f"CC-7: {len(swapped)} tasks' items appear out of the order they were appended in (e.g. task {swapped[0]}): "
        "a task's second append returned after its first, so its item must come later."
    )
    versions = [o["version"] for o in outs]
    assert len(set(versions)) == 2 * N, f"CC-7: {2 * N} appends returned only {len(set(versions))} distinct versions."


# -- CC-5: isolation ---------------------------------------------------------------------------------
def isolation_task(i: int, rng: random.Random, atomic: bool) -> list[Call]:
    """Session ``cc5-i``: created, then five random operations, then read; every value it holds names ``i``.

    Odd sessions start without state and get their marker by a first write: a store whose
    state-less sessions share one default dict leaks it into all of them (spec CC-5)."""
    id, owner = f"cc5-{i}", f"owner-{i % 10}"
    create = Call("create", id, None if i % 2 else {"who": i}, owner=owner, ttl=TTL)
    menu = ["get", "save", "touch", "recreate"] + (["apply", "append"] if atomic else [])
    marker = [Call("apply" if atomic else "save", id, {"who": i})] if i % 2 else []
    calls = [create, *marker]
    for j in range(5):
        kind = rng.choice(menu)
        calls += {
            "get": [Call("get", id)],
            "save": [Call("save", id, {"who": i, "gen": j})],
            "touch": [Call("touch", id, ttl=rng.choice([KEEP, TTL / 2]))],
            "recreate": [Call("delete", id), create, *marker],
            "apply": [Call("apply", id, {"who": i, f"k{j}": f"{i}-{j}"})],
            "append": [Call("append", id, [f"{i}-{j}"], key="log")],
        }[kind]
    return [*calls, Call("get", id)]


def foreign(i: int, output: Any) -> bool:
    """Does this output carry another session's id, owner or writes (its "who", or a tagged value "j-...")?"""
    if not isinstance(output, dict) or "id" not in output:
        return False
    state = output.get("state", {})
    tagged = [v for k, v in state.items() if k.startswith("k")] + list(state.get("log", []))
    writers = {str(state.get("who", i))} | {str(v).split("-")[0] for v in tagged}
    return (output["id"], output["owner"], writers) != (f"cc5-{i}", f"owner-{i % 10}", {str(i)})


@clause("CC-5")
@pytest.mark.parametrize("topology", TOPOLOGIES)
async def test_sessions_stay_isolated_under_mixed_concurrent_traffic(ctx: SuiteContext, topology: str) -> None:
    """Every read and write result is checked for another session's data, then each session's history
    is replayed through the sequential model (apply/append join the mix when `atomic` is claimed)."""
    rng = random.Random(5)
    scripts = [isolation_task(i, rng, ctx.claims("atomic")) for i in range(N)]
    results = await spread(ctx, topology, [[step(c) for c in calls] for calls in scripts])
    assert_succeeded("CC-5", "operations on 1000 sessions (each valid for its own session)", outputs(results))
    leaks = [(i, r["call"], r.get("output")) for i, records in enumerate(results) for r in records
             if foreign(i, r.get("output"))]
    assert not leaks, (
        f"CC-5: {len(leaks)} results carried another session's data; e.g. session cc5-{leaks[0][0]}'s "
        f"{Call.from_json(leaks[0][1])} returned {leaks[0][2]!r}. State, owner and id must never cross between "
        "sessions (a shared mutable default, a cache keyed wrongly, or a connection handing one request's reply "
        "to another)."
    )
    deviations = []
    for i, records in enumerate(results):
        tracker = Tracker(unique_versions=False)  # VER-2 belongs to `atomic`; CC-5 is core
        try:
            for r in records:
                tracker.observe(Call.from_json(r["call"]), (r["invoke"], r["response"]), r.get("output", UNKNOWN))
        except ModelMismatch as exc:
            deviations.append(f"session cc5-{i}: {exc}")
    assert not deviations, (
        f"CC-5: {len(deviations)} of {N} sessions broke the sequential contract while other sessions were busy; "
        f"first: {deviations[0]}"
    )


# -- CC-6: linearizability ----------------------------------------------------------------------------
CC6_TASKS, CC6_STEPS, CC6_TIMEOUT = 16, 10, 10.0
CC6_ID = "cc6-subject"
CC6_MENU = {"get": 25, "save": 10, "apply": 20, "append": 20, "touch": 10, "delete": 3, "create": 3}


def history_task(task: int, rng: random.Random) -> Task:
    """Random operations on the one session, half the writes with the version this task saw last."""
    steps = []
    for j in range(CC6_STEPS):
        kind = rng.choices(list(CC6_MENU), weights=list(CC6_MENU.values()))[0]
        call = {
            "get": Call("get", CC6_ID),
            "save": Call("save", CC6_ID, {"n": j, "log": [f"{task}.{j}"]}),
            "apply": Call("apply", CC6_ID, rng.choice([{"n": j}, {f"k{task}": j, "x": DELETE}, {"x": task}])),
            "append": Call("append", CC6_ID, [f"{task}.{j}"], key="log"),
            "touch": Call("touch", CC6_ID, ttl=rng.choice([KEEP, None])),
            "delete": Call("delete", CC6_ID),
            "create": Call("create", CC6_ID, {"n": 0, "log": []}, ttl=None),
        }[kind]
        expect = kind in ("save", "apply", "append") and rng.random() < 0.5
        steps.append(step(call, timeout=CC6_TIMEOUT, **({"expect": "last"} if expect else {})))
    return steps


async def record_history(ctx: SuiteContext, topology: str, tasks: int, rng: random.Random) -> list[Operation]:
    """Create the subject session, run ``tasks`` concurrent scripts on it, return the timed history."""
    create = Call("create", CC6_ID, {"n": 0, "log": []}, ttl=None)  # permanent: expiry is other clauses' business
    await ctx.store.delete(CC6_ID)
    created, span = await timed(ctx.store.create(create.value, id=CC6_ID, ttl=None))
    history = [Operation(tasks, create, observe(created), span.start, span.end)]
    results = await spread(ctx, topology, [history_task(t, rng) for t in range(tasks)])
    history += [Operation(task, Call.from_json(r["call"]), r.get("output", UNKNOWN), r["invoke"], r["response"])
                for task, records in enumerate(results) for r in records]
    return history


@clause("CC-6")
@pytest.mark.parametrize("topology", TOPOLOGIES)
async def test_a_concurrent_history_on_one_session_is_linearizable(ctx: SuiteContext, topology: str) -> None:
    """The history is attached to the report as Jepsen JSON (``history``), with the seed of its script.

    A history too tangled for the bounded search is no evidence either way, so the test records
    a smaller one (16, then 8, then 4 tasks) until the checker decides; only a decided
    "not linearizable" fails.
    """
    seed = random.randrange(2**32)
    rng = random.Random(seed)
    ctx.attach("seed", seed)
    undecided = []
    for tasks in (CC6_TASKS, CC6_TASKS // 2, CC6_TASKS // 4):
        history = await record_history(ctx, topology, tasks, rng)
        ctx.attach("history", to_jepsen(history, f=lambda c: str(c.f), encode=Call.to_json, failed=is_failure))
        result = check(history, Namespace(), step_operation)
        if result.ok is not None:
            break
        undecided.append(f"{len(history)} operations: {result.reason}")
    assert result.ok is not None, "CC-6: the checker could not decide even a small history: " + "; ".join(undecided)
    assert result.ok, (
        f"CC-6: the history of {len(history)} concurrent operations on one session is not linearizable: no order "
        "consistent with real time explains what the store returned (a stale read, a lost or forked write, or "
        "two writers passing one version check).\n" + result.explain(history, describe_operation)
    )
