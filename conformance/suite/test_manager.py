"""MG-3, MG-4, MG-6..MG-11: the reference SessionManager on the store under test.

The manager comes from :func:`sessionspec.conformance.manager_support.manager_for` (a target
may supply its own). Concurrency tests run 1000 callers on one manager, and (stores
claiming ``shared``) split over two managers on two independent store instances. Expiry
verdicts use measured spans (``_timing``): waiting for a deadline, never sleeping and hoping.
"""

from __future__ import annotations

import asyncio
import functools
import json
import random
import time
from collections import Counter
from collections.abc import Awaitable, Callable
from typing import Any

import pytest

from sessionspec.conformance.clauses import clause
from sessionspec.conformance.context import SuiteContext
from sessionspec.conformance.contract import Session, SessionNotFound
from sessionspec.conformance.manager_support import manager_for
from sessionspec.conformance.manager_worker import ManagerProcess
from sessionspec.conformance.results import NOT_APPLICABLE
from sessionspec.reference.manager import (
    LeaseLost,
    LimitExceeded,
    LockTimeout,
    MergeConflict,
    SessionManager,
    key_id,
)
from sessionspec.reference.manager.keys import KeyPart

from ._timing import Inconclusive, dead_from, retrying, sleep_until, timed, within

N = 1000
TOPOLOGIES = ("one-manager", "two-managers")
PROCESS_TOPOLOGIES = (*TOPOLOGIES, "two-processes")
TTL = 3600.0
SHORT = 0.3


async def managers(ctx: SuiteContext, topology: str, **options: Any) -> list[SessionManager]:
    """One manager on ctx.store, or (``shared``) two, each on its own store instance."""
    if topology == "one-manager":
        return [manager_for(ctx, **options)]
    ctx.require("shared", "two managers over two store instances of one backend")
    return [manager_for(ctx, **options), manager_for(ctx, await ctx.another_store(), **options)]


async def across_processes(ctx: SuiteContext, job: dict[str, Any], here: SessionManager,
                           calls: Callable[[SessionManager, int], Awaitable[Session]]) -> tuple[list[Any], int]:
    """Half the calls in a manager process (manager_worker), half here, released together.

    Returns every call's outcome (a Session-like dict or Session, or an exception) and the
    ``created`` count summed over both managers."""
    ctx.require("shared", "a second process with its own manager and store instance")
    spec = ctx.target.process_spec
    if spec is None:
        pytest.skip(f"{NOT_APPLICABLE}: the target names no process_spec, so no other process can reach its data")
    half = N // 2
    worker = await ManagerProcess.start(spec, {**job, "namespace": ctx.namespace, "count": N - half})
    try:
        worker.go()
        mine, theirs = await asyncio.gather(
            asyncio.gather(*(calls(here, i) for i in range(half)), return_exceptions=True), worker.results())
    finally:
        worker.kill()
    remote = [RuntimeError(r["error"]) if "error" in r else r for r in theirs["results"]]
    return [*mine, *remote], here.counters["created"] + int(theirs["counters"]["created"])


def failures(results: list[Any], allowed: tuple[type[BaseException], ...] = ()) -> Counter[str]:
    return Counter(f"{type(r).__name__}: {r}"[:200] for r in results
                   if isinstance(r, BaseException) and not isinstance(r, allowed))


# -- MG-3, MG-4: parallel branches --------------------------------------------------------------------
FORK = {"plan": "A", "notes": [], "x": 1, "y": 1}


async def run_branches(mgr: SessionManager, id: str, strategy: str, finish_order: list[int],
                       outside: dict[str, Any] | None = None, store: Any = None) -> Any:
    """Three branches: 0 sets plan B; 1 adds a note and deletes y; 2 sets plan C. They finish in ``finish_order``."""
    turn = [asyncio.Event() for _ in range(3)]

    async def work(branch: Any) -> None:
        await turn[branch.index].wait()
        if branch.index == 0:
            branch.state["plan"] = "B"
        elif branch.index == 1:
            branch.state["notes"].append("n1")
            del branch.state["y"]
        else:
            branch.state["plan"] = "C"
        later = finish_order.index(branch.index) + 1
        if later < len(finish_order):
            turn[finish_order[later]].set()

    group = mgr.branches(id, 3, strategy=strategy)  # type: ignore[arg-type]
    async with group as branches:
        turn[finish_order[0]].set()
        await asyncio.gather(*(work(b) for b in branches))
        if outside is not None:
            await store.apply(id, outside)  # another writer commits between the fork and the merge
    return group


@clause("MG-3")
@pytest.mark.parametrize("strategy, plan", [("last_writer_wins", "C"), ("first_writer_wins", "B")])
async def test_branches_merge_their_own_changes_in_branch_order(ctx: SuiteContext, strategy: str, plan: str) -> None:
    async with manager_for(ctx) as mgr:
        for order in ([2, 1, 0], [1, 0, 2]):
            session = await mgr.create(dict(FORK))
            group = await run_branches(mgr, session.id, strategy, order)
            got = await mgr.get(session.id)
            assert got is not None, "MG-3: the session vanished during the merge."
            expected = {"plan": plan, "notes": ["n1"], "x": 1}
            assert got.state == expected, (
                f"MG-3 ({strategy}): branches finishing in order {order} left {got.state!r}; expected {expected!r}. "
                "Each branch's changes relative to the fork are merged in branch order, never completion order; a "
                "branch that did not touch a key (notes, y) must not overwrite another branch's change to it (the "
                "overlay merge {**fork, **b0, **b1, **b2} does), and deletions count as changes."
            )
            conflicts = group.result.conflicts if group.result is not None else None
            assert conflicts == {"plan": [0, 2]}, (
                f"MG-3: the merge reported conflicts {conflicts!r}; branches 0 and 2 both changed 'plan' (to "
                "different values), so exactly {'plan': [0, 2]} must be reported."
            )


@clause("MG-3")
async def test_strategy_raise_refuses_conflicting_branches_and_changes_nothing(ctx: SuiteContext) -> None:
    async with manager_for(ctx) as mgr:
        session = await mgr.create(dict(FORK))
        try:
            await run_branches(mgr, session.id, "raise", [0, 1, 2])
        except MergeConflict as exc:
            assert exc.keys == ("plan",), f"MG-3: MergeConflict names {exc.keys!r}; only 'plan' is contested."
        else:
            pytest.fail("MG-3: strategy 'raise' merged branches that changed 'plan' differently; it must raise "
                        "MergeConflict naming the key.", pytrace=False)
        got = await mgr.get(session.id)
        assert got is not None and got.state == FORK, (
            f"MG-3: a refused merge changed the session to {got.state if got else None!r}; it must stay {FORK!r}."
        )


@clause("MG-4")
@pytest.mark.parametrize("outside", [{"tool": "x"}, {"x": 2}, {"x": 2, "tool": ["t"], "notes": ["o"]}],
                         ids=["new-key", "changed-key", "contested-key"])
async def test_a_merge_that_races_another_writer_keeps_both_sides(ctx: SuiteContext, outside: dict[str, Any]) -> None:
    async with manager_for(ctx) as mgr:
        session = await mgr.create(dict(FORK))
        group = await run_branches(mgr, session.id, "last_writer_wins", [0, 1, 2], outside, ctx.store)
        got = await mgr.get(session.id)
        assert got is not None, "MG-4: the session vanished during the merge."
        expected = {**FORK, **outside, "plan": "C", "notes": ["n1"]}
        del expected["y"]
        assert got.state == expected, (
            f"MG-4: another writer applied {outside!r} between the fork and the commit; the session ends as "
            f"{got.state!r}, expected {expected!r}. The commit must use expected_version, and on VersionConflict "
            "re-read and re-merge the branches' changes onto the new state (the other writer counts as an earlier "
            "branch): replaying the state merged at the fork loses the other writer's update, giving up loses the "
            "branches'."
        )
        if "notes" in outside:
            conflicts = group.result.conflicts if group.result is not None else {}
            assert conflicts.get("notes") == [-1, 1], (
                f"MG-4: the other writer (reported as -1) and branch 1 both changed 'notes'; conflicts were "
                f"{conflicts!r}."
            )


# -- MG-6: get_or_create ------------------------------------------------------------------------------
def outcome(result: Any) -> tuple[str, dict[str, Any]] | None:
    """(id, state) of a successful call, here (a Session) or in the manager process (a dict)."""
    if isinstance(result, Session):
        return result.id, result.state
    if isinstance(result, dict) and "id" in result:
        return result["id"], result["state"]
    return None


@clause("MG-6")
@pytest.mark.parametrize("topology", PROCESS_TOPOLOGIES)
async def test_concurrent_get_or_create_of_one_key_makes_one_session(ctx: SuiteContext, topology: str) -> None:
    key = ("user:1", "chat:1", "openai")
    if topology == "two-processes":
        async with manager_for(ctx, idle_timeout=TTL) as here:
            results, created = await across_processes(
                ctx, {"op": "get_or_create", "key": list(key), "options": {"idle_timeout": TTL}}, here,
                lambda mgr, i: mgr.get_or_create(key, {"task": i}))
        instances = 2
    else:
        mgrs = await managers(ctx, topology, idle_timeout=TTL)
        try:
            results = await asyncio.gather(*(mgrs[i % len(mgrs)].get_or_create(key, {"task": i}) for i in range(N)),
                                           return_exceptions=True)
        finally:
            for mgr in mgrs:
                await mgr.aclose()
        created, instances = sum(m.counters["created"] for m in mgrs), len(mgrs)
    failed = failures(results)
    assert not failed, (
        f"MG-6: of {N} concurrent get_or_create calls for one key, {sum(failed.values())} failed: {dict(failed)}. "
        "Losing the create race (SessionExists) means another caller created it: read and return that session."
    )
    got = [o for o in map(outcome, results) if o is not None]
    ids = Counter(id for id, _ in got)
    assert len(ids) == 1 and created == 1, (
        f"MG-6: {N} concurrent get_or_create calls for one key over {instances} manager(s) ({topology}) returned "
        f"{len(ids)} distinct sessions and created {created}; exactly one must be created and every caller get it. "
        "Derive the id from the key and let the store's create-if-absent pick the winner (never get-then-create)."
    )
    winner = await ctx.store.get(next(iter(ids)))
    states = {json.dumps(state, sort_keys=True) for _, state in got}
    assert winner is not None and len(states) == 1, (
        f"MG-6: callers saw {len(states)} different initial states; the one created session's state must be what "
        "everyone gets."
    )


@clause("MG-6")
async def test_composite_keys_are_data_not_joined_strings(ctx: SuiteContext) -> None:
    async with manager_for(ctx) as mgr:
        pairs: list[tuple[tuple[KeyPart, ...], tuple[KeyPart, ...]]] = [
            (("a:b", "c"), ("a", "b:c")), (("a", "b"), ("a", "b", "")), ((1, "x"), ("1", "x"))]
        for left, right in pairs:
            one, two = await mgr.get_or_create(left), await mgr.get_or_create(right)
            assert one.id != two.id and key_id(left) != key_id(right), (
                f"MG-6: keys {left!r} and {right!r} share session {one.id!r}; key parts are data and must be "
                "encoded unambiguously (never joined with a separator)."
            )
            again = await mgr.get_or_create(left)
            assert again.id == one.id, f"MG-6: get_or_create({left!r}) twice gave {one.id!r} then {again.id!r}."


# -- MG-7: update ----------------------------------------------------------------------------------
@clause("MG-7")
@pytest.mark.parametrize("topology", PROCESS_TOPOLOGIES)
async def test_concurrent_updates_reach_the_exact_total(ctx: SuiteContext, topology: str) -> None:
    def increment(state: dict[str, Any]) -> dict[str, Any]:
        return {**state, "n": state["n"] + 1}

    if topology == "two-processes":
        async with manager_for(ctx, idle_timeout=TTL) as here:
            session = await here.create({"n": 0})
            results, _ = await across_processes(ctx, {"op": "update", "id": session.id}, here,
                                                lambda mgr, i: mgr.update(session.id, increment))
    else:
        mgrs = await managers(ctx, topology, idle_timeout=TTL)
        session = await mgrs[0].create({"n": 0})
        try:
            results = await asyncio.gather(*(mgrs[i % len(mgrs)].update(session.id, increment) for i in range(N)),
                                           return_exceptions=True)
        finally:
            for mgr in mgrs:
                await mgr.aclose()
    failed = failures(results)
    assert not failed, f"MG-7: {sum(failed.values())} of {N} concurrent updates failed: {dict(failed)}."
    got = await ctx.store.get(session.id)
    n = got.state.get("n") if got else None
    values = Counter(o[1]["n"] for o in map(outcome, results) if o is not None)
    twice = sorted(v for v, c in values.items() if c > 1)
    assert n == N and not twice, (
        f"MG-7 ({topology}): after {N} concurrent update(+1) calls n is {n!r}, and {len(twice)} values were returned "
        f"by more than one call (e.g. {twice[:5]}): lost updates. update() must write with expected_version and retry "
        "on VersionConflict (re-reading and re-applying fn), never read-modify-write without the version check."
    )


# -- MG-8: per-owner limits ------------------------------------------------------------------------------
LIMIT = 5


@clause("MG-8")
@pytest.mark.parametrize("topology", TOPOLOGIES)
@pytest.mark.parametrize("policy", ["reject", "evict_idle"])
async def test_concurrent_creates_for_one_owner_stop_at_the_limit(ctx: SuiteContext, topology: str,
                                                                  policy: str) -> None:
    mgrs = await managers(ctx, topology, idle_timeout=TTL, max_active_sessions=LIMIT, limit_policy=policy)
    try:
        results = await asyncio.gather(*(mgrs[i % len(mgrs)].create({"i": i}, owner="alice") for i in range(N)),
                                       return_exceptions=True)
    finally:
        for mgr in mgrs:
            await mgr.aclose()
    failed = failures(results, (LimitExceeded,) if policy == "reject" else ())
    assert not failed, f"MG-8 ({policy}): {sum(failed.values())} of {N} creates failed unexpectedly: {dict(failed)}."
    made = [r for r in results if not isinstance(r, BaseException)]
    live = [s for s in await asyncio.gather(*(ctx.store.get(r.id) for r in made)) if s is not None]
    if policy == "reject":
        assert len(made) == LIMIT, (
            f"MG-8: {len(made)} of {N} concurrent creates for one owner succeeded with max_active_sessions={LIMIT} "
            "and policy 'reject'; exactly the limit must, the rest raising LimitExceeded. Check-then-create "
            "(count, then create) lets concurrent callers all pass the check."
        )
    assert len(live) == LIMIT, (
        f"MG-8 ({policy}): after {N} concurrent creates for one owner {len(live)} of its sessions are live; "
        f"max_active_sessions={LIMIT} must hold exactly."
    )
    if ctx.claims("listing"):
        count = await ctx.store.count(owner="alice")
        assert count == LIMIT, f"MG-8 ({policy}): count(owner='alice') is {count}, the limit is {LIMIT}."


# -- MG-9: chats -------------------------------------------------------------------------------------
@clause("MG-9")
async def test_concurrent_switches_leave_one_active_chat_and_appends_lose_nothing(ctx: SuiteContext) -> None:
    rng = random.Random(9)
    async with manager_for(ctx, idle_timeout=TTL) as mgr:
        session = await mgr.create({})
        chats = mgr.chats(session.id)
        ids = [await chats.create(f"chat {i}") for i in range(3)]
        switches = [chats.switch(rng.choice(ids)) for _ in range(200)]
        appends = [chats.append(ids[i % 3], [f"{i}:{j}"]) for i in range(150) for j in range(1)]
        results = await asyncio.gather(*switches, *appends, return_exceptions=True)
        failed = failures(results)
        assert not failed, f"MG-9: {sum(failed.values())} chat operations failed: {dict(failed)}."
        listed = await chats.list()
        active = [c.id for c in listed if c.active]
        assert len(active) == 1 and active[0] in ids and await chats.active() == active[0], (
            f"MG-9: after 200 concurrent switches {len(active)} chats are active ({active}); exactly one chat is "
            "active at any time: hold it in one place written atomically, not as a flag per chat."
        )
        for c in range(3):
            history = await chats.history(ids[c])
            expected = {f"{i}:0" for i in range(150) if i % 3 == c}
            assert set(history) == expected and len(history) == len(expected), (
                f"MG-9: chat {c}'s history has {len(history)} messages, expected {len(expected)}; appends to a "
                "chat's history must be atomic (the store's append), never read-extend-write."
            )


# -- MG-10: absolute lifetime --------------------------------------------------------------------------
@clause("MG-10")
async def test_activity_never_extends_the_absolute_lifetime(ctx: SuiteContext) -> None:
    async with manager_for(ctx, idle_timeout=TTL, absolute_lifetime=TTL) as mgr:  # the store's pace, measured
        _, pace = await timed(_activity(ctx, mgr, (await mgr.create({"n": 0})).id))
    start = max(SHORT, 4 * pace.seconds)  # the activity, begun at half the lifetime, fits in the other half
    await retrying("MG-10", lambda lifetime: _activity_past_half_the_lifetime(ctx, lifetime), start)


async def _activity(ctx: SuiteContext, mgr: SessionManager, id: str) -> None:
    await mgr.touch(id)
    await mgr.get(id, touch=True)
    await mgr.apply(id, {"a": 1})
    await mgr.append(id, "log", [1])
    if ctx.claims("atomic"):
        await mgr.update(id, lambda s: {**s, "n": 1})


async def _activity_past_half_the_lifetime(ctx: SuiteContext, lifetime: float) -> None:
    """The activity must run while the session is certainly live; on a slow store it may not (Inconclusive)."""
    async with manager_for(ctx, idle_timeout=TTL, absolute_lifetime=lifetime) as mgr:
        session, created = await timed(mgr.create({"n": 0}))
        await sleep_until(created.end + lifetime / 2)
        try:
            await _activity(ctx, mgr, session.id)
        except SessionNotFound:
            if time.monotonic() < created.start + lifetime:
                raise  # gone before its lifetime could have ended
            raise Inconclusive("MG-10: the activity ran past the absolute lifetime (a slow store)") from None
        await sleep_until(dead_from(created, lifetime))
        stored = await ctx.store.get(session.id)  # first: the manager's own read may retire it
        seen_by_manager = await mgr.get(session.id)
    assert seen_by_manager is None, (
        f"MG-10: a session with absolute_lifetime={lifetime} s is still returned by the manager "
        f"{lifetime + 0.25} s after its creation, after touch/get(touch=True)/apply/append/update: activity slid it "
        "past its absolute lifetime."
    )
    expires = stored.expires_at if stored is not None else None
    assert stored is None, (
        f"MG-10: the manager hides the session, but the store still holds it (expires_at {expires}): every write "
        "must cap the store's TTL at what is left of the absolute lifetime, so the session expires in the store "
        "too (other readers, counts and listings see it otherwise)."
    )


# -- MG-11: expiry callbacks ------------------------------------------------------------------------------
@clause("MG-11")
async def test_expiry_callbacks_run_once_per_ended_session_per_manager(ctx: SuiteContext) -> None:
    await retrying("MG-11", lambda idle: _expiry_callbacks(ctx, idle), SHORT)


async def _create_each(mgr: SessionManager, n: int) -> list[Session]:
    return [await mgr.create({"i": i}) for i in range(n)]


async def _expiry_callbacks(ctx: SuiteContext, idle: float) -> None:
    seen: dict[str, list[tuple[str, str]]] = {"first": [], "second": []}
    first, second = manager_for(ctx, idle_timeout=idle), manager_for(ctx, idle_timeout=idle)
    first.on_expire(lambda id, why: seen["first"].append((id, why)))
    second.on_expire(lambda id, why: seen["second"].append((id, why)))
    closed: Counter[str] = Counter()
    async with first, second:
        made, setup = await timed(_create_each(first, 6))
        ids = [s.id for s in made]
        _, span = await timed(asyncio.gather(*(second.get(id) for id in ids)))  # the second instance knows them too
        for id in ids:
            first.attach(id, object(), close=functools.partial(closed.update, [id]))
        deleted, deleting = await timed(first.delete(ids[0]))
        if not deleted:  # the first session may have idled out already on a slow store: then nothing is decided
            within("MG-11", "creating, reading and deleting the sessions", deleting, setup.start + idle)
            pytest.fail("MG-11: delete of a live session returned False.", pytrace=False)
        await first.delete(ids[0])  # a second delete is no new end
        await sleep_until(dead_from(span, idle))
        assert await first.get(ids[1]) is None  # noticed on access, between sweeps
        await first.sweep()
        await first.sweep()
        await second.sweep()
        await second.get(ids[2])
    want_first = {(ids[0], "deleted")} | {(id, "expired") for id in ids[1:]}
    for name, want in (("first", want_first), ("second", {(id, "expired") for id in ids})):
        calls = Counter(seen[name])
        assert set(calls) == want and all(n == 1 for n in calls.values()), (
            f"MG-11: the {name} manager's expiry callbacks ran {dict(calls)}; expected each of {sorted(want)} exactly "
            "once. A session's end (expiry, noticed on access or by a sweep, or deletion) is reported once per "
            "manager instance, however many times it is noticed."
        )
    assert closed == Counter(ids), (
        f"MG-11: resources attached to the sessions were closed {dict(closed)} times; each exactly once, when its "
        "session ended."
    )


# -- MG-12: scoped state -------------------------------------------------------------------------------
@clause("MG-12")
async def test_scoped_state_routes_each_prefix_to_its_scope(ctx: SuiteContext) -> None:
    async with manager_for(ctx, idle_timeout=TTL, app="mg12") as mgr:
        one, two = await mgr.create({}, owner="ann"), await mgr.create({}, owner="ann")
        other = await mgr.create({}, owner="bob")
        turn = mgr.scoped(one.id)
        await turn.write({"own": 1, "app:theme": "dark", "user:lang": "fr", "temp:scratch": "x"})
        views = {"same invocation": (await turn.read(), {"own": 1, "app:theme": "dark", "user:lang": "fr",
                                                          "temp:scratch": "x"}),
                 "the owner's other session": (await mgr.scoped(two.id).read(), {"app:theme": "dark",
                                                                                 "user:lang": "fr"}),
                 "another owner's session": (await mgr.scoped(other.id).read(), {"app:theme": "dark"})}
        for where, (got, want) in views.items():
            assert got == want, (
                f"MG-12: the scoped read of {where} is {got!r}; expected {want!r}. app: keys are shared by every "
                "session of the app, user: keys by every session of one owner, temp: keys only by this invocation."
            )
        stored = await ctx.store.get(one.id)
        leaked = [k for k in (stored.state if stored else {}) if k.startswith(("temp", "app:", "user:"))]
        assert stored is not None and not leaked, (
            f"MG-12: the session itself stores {leaked}; scoped keys live in their scope, and temp: keys are never "
            "persisted."
        )
        writers = [mgr.scoped(one.id if i % 2 else two.id) for i in range(200)]
        await asyncio.gather(*(w.write({f"user:k{i}": i}) for i, w in enumerate(writers)),
                             *(w.update("app", lambda s: {**s, "hits": s.get("hits", 0) + 1}) for w in writers))
        merged = await mgr.scoped(two.id).read()
        lost = [i for i in range(200) if merged.get(f"user:k{i}") != i]
        assert not lost and merged.get("app:hits") == 200, (
            f"MG-12: after 200 concurrent writers, {len(lost)} user: keys are missing and app:hits is "
            f"{merged.get('app:hits')!r} (expected 200): writes to one scope must not lose each other (the store's "
            "apply per key; a CAS update for read-modify-writes)."
        )


# -- MG-13: leases and fencing tokens ---------------------------------------------------------------------
@clause("MG-13")
async def test_a_lease_excludes_others_and_fences_a_holder_that_outlived_it(ctx: SuiteContext) -> None:
    lease = 0.3
    first, second = manager_for(ctx), manager_for(ctx)
    async with first, second:
        session = await first.create({"runs": 0})
        stale = first.lock(session.id, lease=lease)
        _, taken = await timed(stale.__aenter__())
        try:
            async with second.lock(session.id, lease=lease, timeout=0.05):
                pytest.fail("MG-13: a second manager took a lease that another holds and that has not expired.",
                            pytrace=False)
        except LockTimeout:
            pass
        await sleep_until(dead_from(taken, lease))
        async with second.lock(session.id, lease=30) as fresh:
            await fresh.update(lambda s: {**s, "runs": s["runs"] + 1})
            try:
                await stale.update(lambda s: {**s, "runs": s["runs"] + 100})
            except LeaseLost:
                pass
            else:
                pytest.fail("MG-13: a holder whose lease expired and was taken over still wrote; its fencing token "
                            "is stale, so its next write must raise LeaseLost.", pytrace=False)
            assert fresh.token is not None and stale.token is not None and fresh.token > stale.token, (
                f"MG-13: fencing tokens went {stale.token} -> {fresh.token}; each new holder's must be greater."
            )
        await stale.release()
        got = await ctx.store.get(session.id)
        runs = (got.state if got else {}).get("runs")
        assert runs == 1, f"MG-13: the guarded session has runs={runs!r}; only the current holder's write may land."
        again = first.lock(session.id, lease=30, timeout=5)
        await again.__aenter__()  # released: free again
        await again.release()
