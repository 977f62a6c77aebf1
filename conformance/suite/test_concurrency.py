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
import time
from collections import Counter
from collections.abc import Callable
from dataclasses import replace
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
from sessionspec.conformance.results import ClauseViolation
from sessionspec.conformance.worker import Task, perform

from ._tasks import TOPOLOGIES, outputs, spread, step
from ._timing import timed

N = 1000
TTL = 3600.0


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
    owner = output["owner"] if output["owner"] is not None else f"owner-{i % 10}"  # lost, not another's: the model
    return (output["id"], owner, writers) != (f"cc5-{i}", f"owner-{i % 10}", {str(i)})  # replay judges that


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
    first: ModelMismatch | None = None
    for i, records in enumerate(results):
        tracker = Tracker(unique_versions=False)  # VER-2 belongs to `atomic`; CC-5 is core
        try:
            for r in records:
                tracker.observe(Call.from_json(r["call"]), (r["invoke"], r["response"]), r.get("output", UNKNOWN))
        except ModelMismatch as exc:
            deviations.append(f"session cc5-{i}: {exc}")
            first = first or exc
    if first is not None and first.clause != "CC-5":
        # each session's calls are one caller's: the model names the rule they break; when that clause fails
        # its own tests too it is the bug, and isolation was not what broke (else the failure stays CC-5's)
        raise ClauseViolation(first.clause, f"{first.clause} (or, if its own tests pass, CC-5): under mixed "
                              f"concurrent traffic {len(deviations)} of {N} sessions, each driven by one caller, "
                              f"broke {first.clause}; first: {deviations[0]}", (*first.alternatives, "CC-5"))
    assert not deviations, (
        f"CC-5: {len(deviations)} of {N} sessions broke the sequential contract while other sessions were busy; "
        f"first: {deviations[0]}"
    )


# -- CC-6: linearizability ----------------------------------------------------------------------------
CC6_SESSIONS, CC6_TASKS, CC6_TIMEOUT = 125, 8, 20.0
"""125 sessions x 8 tasks = 1000 concurrent tasks; each task makes 3 calls on its session."""
CC6_ANSWERED = 0.95
"""The share of calls that must come back with an answer (not timed out, not BackendUnavailable)."""
CC6_MENU = {"get": 25, "save": 10, "apply": 20, "append": 20, "touch": 10, "delete": 3, "create": 3}
CC6_WRITES = ("save", "apply", "append")


def _cc6_call(kind: str, id: str, task: int, j: int, rng: random.Random) -> Call:
    return {
        "get": lambda: Call("get", id),
        "save": lambda: Call("save", id, {"n": j, "log": [f"{task}.{j}"]}),
        "apply": lambda: Call("apply", id, rng.choice([{"n": j}, {f"k{task}": j, "x": DELETE}, {"x": task}])),
        "append": lambda: Call("append", id, [f"{task}.{j}"], key="log"),
        "touch": lambda: Call("touch", id, ttl=rng.choice([KEEP, None])),
        "delete": lambda: Call("delete", id),
        "create": lambda: Call("create", id, {"n": 0, "log": []}, ttl=None),
    }[kind]()


def history_task(id: str, task: int, rng: random.Random) -> Task:
    """Read, write with the version just read (a compare-and-set), then one random call.

    Every task of a session starts with the same read and CAS, so they race on one version:
    exactly one CAS may win (a check-then-write store lets several through), and the third
    call (reads among them) shows what every other call left behind."""
    cas = step(_cc6_call(rng.choice(CC6_WRITES), id, task, 1, rng), timeout=CC6_TIMEOUT, expect="last")
    kind = rng.choices(list(CC6_MENU), weights=list(CC6_MENU.values()))[0]
    extra = {"expect": "last"} if kind in CC6_WRITES and rng.random() < 0.5 else {}
    return [step(Call("get", id), timeout=CC6_TIMEOUT), cas,
            step(_cc6_call(kind, id, task, 2, rng), timeout=CC6_TIMEOUT, **extra)]


async def one_at_a_time(ctx: SuiteContext, seed: int) -> None:
    """CC-6's premise, checked before CC-6 fails: the very scripts of the concurrent run, made one call at a
    time, agree with the model. (A concurrent history the model linearizes needs no premise: the model's rules
    are the single caller's rules too, and every one of them held.)

    Each session's tasks take turns (every task's read, then every compare-and-set, then every third
    call), so version conflicts, deletes and re-creates all happen, but nothing overlaps. A store that
    fails here breaks a rule a single caller sees, and the model names it (blame.py): that clause is the
    bug, and CC-6 (linearizability under concurrency) is not checked, instead of failing for it too. If that
    clause's own tests do not fail, the failure stays CC-6's (results.py: blame falls to the test's clause)."""
    rng = random.Random(seed)
    for h in range(CC6_SESSIONS):
        id = f"cc6-one-{h}"
        tracker = Tracker(None)
        scripts = [history_task(id, t, rng) for t in range(CC6_TASKS)]
        last: list[int | None] = [None] * CC6_TASKS
        turns: list[tuple[dict[str, Any], int | None]] = [
            ({"call": Call("create", id, {"n": 0, "log": []}, ttl=None).to_json()}, None)]
        turns += [(script[n], t) for n in range(3) for t, script in enumerate(scripts)]
        for turn, task in turns:
            call = Call.from_json(turn["call"])
            if turn.get("expect") == "last" and task is not None:
                call = replace(call, expected_version=last[task])
            began = time.monotonic()
            try:
                output = observe(await perform(ctx.store, call))
            except Exception as exc:  # the store's error is an output like any other; the model judges it
                output = observe(exc)
            if isinstance(output, dict) and output.get("error") == "BackendUnavailable":
                break  # no answer tells nothing about the rules (and forks the model): CC-6's own check counts these
            try:
                tracker.observe(call, (began, time.monotonic()), output)
            except ModelMismatch as exc:
                raise ClauseViolation(exc.clause, f"could not check CC-6: made one at a time (no concurrency), the "
                                      f"calls of its scripts already break {exc.clause} — see {exc.clause}. {exc}",
                                      (*exc.alternatives, "CC-6")) from None
            if task is not None and isinstance(output, dict) and isinstance(output.get("version"), int):
                last[task] = output["version"]


async def record_histories(ctx: SuiteContext, topology: str, rng: random.Random) -> list[list[Operation]]:
    """Create the sessions, run CC6_TASKS concurrent scripts on each (all at once), return one history per session."""
    ids = [f"cc6-{h}" for h in range(CC6_SESSIONS)]
    made = await asyncio.gather(*(timed(ctx.store.create({"n": 0, "log": []}, id=id, ttl=None)) for id in ids))
    histories = [[Operation(CC6_TASKS, Call("create", id, {"n": 0, "log": []}, ttl=None), observe(created),
                            span.start, span.end)] for id, (created, span) in zip(ids, made, strict=True)]
    tasks = [history_task(id, t, rng) for id in ids for t in range(CC6_TASKS)]
    results = await spread(ctx, topology, tasks)
    for index, records in enumerate(results):
        histories[index // CC6_TASKS] += [
            Operation(index % CC6_TASKS, Call.from_json(r["call"]), r.get("output", UNKNOWN), r["invoke"],
                      r["response"]) for r in records]
    return histories


LOST_WRITES = {"append": "CC-7", "apply": "CC-3"}
"""Writes without expected_version that a dedicated concurrency clause checks for loss (concurrent RMW)."""


def only_lost(history: list[Operation]) -> str | None:
    """The clause of the one kind of plain write whose loss alone explains a non-linearizable history.

    If the history becomes linearizable once every plain ``append`` (or ``apply``) may not have
    happened, all that went wrong is that such writes were lost under concurrency: CC-7's (CC-3's)
    bug, which CC-6 then does not fail for too. Compare-and-set writes are never relaxed: two
    writers passing one version check stay CC-6's."""
    for kind, clause_id in LOST_WRITES.items():
        relaxed = [replace(op, output=UNKNOWN) if op.input.f == kind and op.input.expected_version is None else op
                   for op in history]
        if relaxed != history and check(relaxed, Namespace(), step_operation).ok:
            return clause_id
    return None


def unanswered(history: list[Operation]) -> Counter[str]:
    """Calls that told nothing: timed out (UNKNOWN) or BackendUnavailable, which the model reads as "maybe"."""
    return Counter("timed out" if op.output is UNKNOWN else "BackendUnavailable" for op in history
                   if op.output is UNKNOWN or (isinstance(op.output, dict)
                                               and op.output.get("error") == "BackendUnavailable"))


@clause("CC-6")
@pytest.mark.parametrize("topology", TOPOLOGIES)
async def test_a_concurrent_history_on_one_session_is_linearizable(ctx: SuiteContext, topology: str) -> None:
    """125 sessions, 8 tasks on each, 1000 tasks at once; each session's history is checked on its own.

    Linearizability is local (Herlihy & Wing): a history of many objects is linearizable exactly
    when each object's subhistory is, so 125 short, highly contended histories are checked
    completely instead of one long one partly. A failing history is attached to the report
    as Jepsen JSON (``history``), with the seed of the scripts.
    """
    seed = random.randrange(2**32)
    rng = random.Random(seed)
    ctx.attach("seed", seed)
    histories = await record_histories(ctx, topology, rng)
    calls = sum(len(h) for h in histories)
    silent = sum((unanswered(h) for h in histories), Counter())
    ctx.attach("cc6", {"sessions": len(histories), "tasks": CC6_SESSIONS * CC6_TASKS, "operations": calls,
                       "unanswered": dict(silent)})
    results = [check(history, Namespace(), step_operation) for history in histories]
    if sum(silent.values()) > (1 - CC6_ANSWERED) * calls or not all(result.ok for result in results):
        await one_at_a_time(ctx, seed)  # before CC-6 fails: is the bug one a single caller already sees?
    assert sum(silent.values()) <= (1 - CC6_ANSWERED) * calls, (
        f"CC-6: of {calls} calls on {len(histories)} sessions, {sum(silent.values())} gave no answer "
        f"({', '.join(f'{n} {why}' for why, n in silent.items())}). A call that times out or raises "
        "BackendUnavailable may or may not have happened, so it fits any history: a history made of them proves "
        f"nothing. At least {CC6_ANSWERED:.0%} must answer; a store under this load must answer, slowly if need "
        "be (BackendUnavailable with the backend up means a pool or lock wait was counted as unreachability)."
    )
    undecided: list[str] = []
    for history, result in zip(histories, results, strict=True):
        if result.ok is None:
            undecided.append(f"{history[0].input.id}: {result.reason}")
            continue
        if not result.ok:
            ctx.attach("history", to_jepsen(history, f=lambda c: str(c.f), encode=Call.to_json, failed=is_failure))
            message = (
                f"CC-6: the history of session {history[0].input.id!r} ({len(history)} calls, {CC6_TASKS} tasks at "
                "once) is not linearizable: no order consistent with real time explains what the store returned (a "
                "stale read, a lost or forked write, or two writers passing one version check: compare "
                "expected_version atomically with the write, on the backend).\n"
                + result.explain(history, describe_operation))
            lost = only_lost(history)
            if lost is not None:  # the clause for exactly this kind of lost write, when its own test fails too
                raise ClauseViolation(lost, f"{lost} (or, if its own tests pass, CC-6): {message}", ("CC-6",))
            pytest.fail(message, pytrace=False)
    assert not undecided, (
        f"CC-6: the checker could not decide {len(undecided)} of {len(histories)} histories (each {CC6_TASKS} tasks "
        f"x 3 calls), e.g. {undecided[0]}"
    )
