"""SC-1..SC-5: the workflows applications run on a session store, end to end through the SessionManager.

Each scenario is one real application shape from the issue tracker of an agent or chat
framework, scaled down in time (a 30-minute idle timeout becomes 0.3 s; verdicts come from
measured spans, see ``_timing``) and run on the store under test.
"""

from __future__ import annotations

import asyncio
import time
from collections import Counter
from typing import Any

import pytest

from sessionspec.conformance.clauses import clause
from sessionspec.conformance.context import SuiteContext
from sessionspec.conformance.manager_support import manager_for
from sessionspec.reference.manager import (
    LimitExceeded,
    ManagerClosed,
    SessionManager,
)

from ._timing import Span, dead_from, sleep_until, timed

IDLE = 0.3
HOUR = 3600.0


class FakeLLMClient:
    """A per-session resource: counts its closes."""

    closes = 0

    def __init__(self, key: tuple[str, ...]) -> None:
        self.key = key

    async def aclose(self) -> None:
        self.closes += 1


# -- SC-1: the chat app ------------------------------------------------------------------------------------
@clause("SC-1")
async def test_chat_app_sessions_expire_idle_release_their_clients_and_shut_down_cleanly(ctx: SuiteContext) -> None:
    """Sessions keyed user:chat:provider, 30-minute idle expiry (scaled), a cleanup loop, an LLM client each."""
    ended: list[str] = []
    all_ended = asyncio.Event()
    keys = [(f"user{u}", f"chat{c}", "openai") for u in range(4) for c in range(2)]
    clients: dict[str, FakeLLMClient] = {}
    mgr = manager_for(ctx, idle_timeout=IDLE, sweep_interval=0.05)

    def on_end(id: str, reason: str) -> None:
        ended.append(id)
        if len(ended) == len(keys):
            all_ended.set()

    mgr.on_expire(on_end)
    async with mgr:
        spans: list[Span] = []
        for key in keys:
            session, span = await timed(mgr.get_or_create(key, {"messages": []}))
            spans.append(span)
            clients[session.id] = mgr.attach(session.id, FakeLLMClient(key))
            again = await mgr.get_or_create(key)
            assert again.id == session.id, f"SC-1: the same key {key} gave two sessions ({session.id}, {again.id})."
            await mgr.append(session.id, "messages", [{"role": "user", "content": "hi"}])
        assert len(clients) == len(keys), f"SC-1: {len(keys)} distinct keys gave {len(clients)} sessions."
        await sleep_until(dead_from(Span.cover(spans), IDLE))
        try:
            await asyncio.wait_for(all_ended.wait(), 20)
        except TimeoutError:
            pytest.fail(f"SC-1: {len(ended)} of {len(keys)} idle sessions were reported ended 20 s after they expired, "
                        "with the cleanup loop running every 0.05 s: the sweeper must notice expired sessions and "
                        "run the expiry callbacks.", pytrace=False)
        late = await mgr.get_or_create(("user9", "chat9", "anthropic"))
        clients[late.id] = mgr.attach(late.id, FakeLLMClient(("late",)))
        expired_closes = {id: c.closes for id, c in clients.items() if id != late.id}
    await mgr.aclose()  # twice is harmless
    assert all(n == 1 for n in expired_closes.values()), (
        f"SC-1: the LLM clients of expired sessions were closed {sorted(expired_closes.values())} times by the "
        "cleanup loop; each exactly once, when its session expired."
    )
    assert clients[late.id].closes == 1, (
        f"SC-1: a live session's client was closed {clients[late.id].closes} times at shutdown; leaving the manager "
        "must release every per-session resource, once."
    )
    try:
        await mgr.get(late.id)
    except ManagerClosed:
        pass
    else:
        pytest.fail("SC-1: a closed manager still served get(); it must raise ManagerClosed.", pytrace=False)


# -- SC-2: the conversation store ----------------------------------------------------------------------------
@clause("SC-2")
async def test_conversation_store_with_hour_ttl_extend_ttl_and_listing(ctx: SuiteContext) -> None:
    async with manager_for(ctx, idle_timeout=HOUR) as mgr:
        conversations = mgr.conversations()
        ids = [await conversations.create_new_session_id() for _ in range(150)]
        for i, id in enumerate(ids[:3]):
            await conversations.save_state(id, {"messages": [f"m{i}"]})
        await conversations.save_state("conv-by-name", {"messages": ["named"]})
        assert await conversations.get_state(ids[1]) == {"messages": ["m1"]}, (
            "SC-2: get_state lost what save_state saved."
        )
        assert await conversations.get_state("conv-by-name") == {"messages": ["named"]}, (
            "SC-2: save_state on a new id must create the conversation under that id."
        )
        before = await ctx.store.get(ids[0])
        assert before is not None and before.ttl == HOUR, (
            f"SC-2: a conversation was stored with ttl {before.ttl if before else None}; the store's 1-hour TTL "
            f"({HOUR} s) must be what it holds."
        )
        extended = await conversations.extend_ttl(ids[0])
        after = await ctx.store.get(ids[0])
        assert extended and after is not None and after.expires_at is not None and before.expires_at is not None
        assert after.expires_at >= before.expires_at and after.ttl == HOUR, (
            f"SC-2: extend_ttl moved expires_at from {before.expires_at} to {after.expires_at} (ttl {after.ttl}); it "
            "must restart the hour."
        )
        assert not await conversations.extend_ttl("never-made"), "SC-2: extend_ttl of an unknown id must be False."
        assert await conversations.delete_state(ids[2])
        listed = await conversations.get_all_session_ids()
        want = set(ids) - {ids[2]} | {"conv-by-name"}
        assert Counter(listed) == Counter(want), (
            f"SC-2: get_all_session_ids returned {len(listed)} ids ({len(set(listed) - want)} unexpected, "
            f"{len(want - set(listed))} missing, {len(listed) - len(set(listed))} repeated) for {len(want)} live "
            "conversations: it must page through the store's list to the end, every id once."
        )


# -- SC-3: the workflow -----------------------------------------------------------------------------------------
async def workflow(mgr: SessionManager, finish_order: list[int]) -> tuple[dict[str, Any], dict[str, list[int]]]:
    session = await mgr.create({"draft": "d0"})
    await mgr.update(session.id, lambda s: {**s, "input": "question"})
    await mgr.append(session.id, "log", ["step1"])
    await mgr.update(session.id, lambda s: {**s, "log": [*s["log"], "step2"]})
    turn = [asyncio.Event() for _ in range(3)]
    writes = [{"answer": "a0", "tools": ["search"]}, {"answer": "a1", "score": 1}, {"draft": None, "score": 2}]

    async def branch(b: Any) -> None:
        await turn[b.index].wait()
        b.state.update(writes[b.index])
        if b.index == 2:
            del b.state["draft"]
        nxt = finish_order.index(b.index) + 1
        if nxt < 3:
            turn[finish_order[nxt]].set()

    group = mgr.branches(session.id, 3)
    async with group as branches:
        turn[finish_order[0]].set()
        await asyncio.gather(*(branch(b) for b in branches))
    got = await mgr.get(session.id)
    assert got is not None
    return got.state, (group.result.conflicts if group.result else {})


@clause("SC-3")
async def test_workflow_branches_merge_the_same_whatever_order_they_finish(ctx: SuiteContext) -> None:
    async with manager_for(ctx, idle_timeout=HOUR) as mgr:
        outcomes = [await workflow(mgr, order) for order in ([0, 1, 2], [2, 1, 0], [1, 2, 0])]
    expected = {"input": "question", "log": ["step1", "step2"], "answer": "a1", "tools": ["search"], "score": 2}
    for (state, conflicts), order in zip(outcomes, ([0, 1, 2], [2, 1, 0], [1, 2, 0]), strict=True):
        assert state == expected, (
            f"SC-3: with branches finishing in order {order} the workflow ended with {state!r}; expected {expected!r} "
            "every time: the shared steps' state, then each branch's changes in branch order (last writer wins), "
            "deletions included, whatever order the branches finish in."
        )
        assert conflicts == {"answer": [0, 1], "score": [1, 2]}, (
            f"SC-3: the merge reported {conflicts!r}; 'answer' (branches 0, 1) and 'score' (1, 2) are contested."
        )


# -- SC-4: SQL-style sessions -------------------------------------------------------------------------------------
@clause("SC-4")
async def test_sql_style_sessions_count_requests_exactly_and_count_the_active_ones(ctx: SuiteContext) -> None:
    ctx.require("atomic", "request_count is a read-modify-write")
    async with manager_for(ctx, idle_timeout=HOUR, absolute_lifetime=2 * HOUR) as mgr:
        made = [await mgr.create({"user": "bob"}, owner="bob") for _ in range(4)]
        short = await mgr.create({}, owner="bob")
        await ctx.store.touch(short.id, ttl=0.3)
        _, span = await timed(ctx.store.get(short.id))
        target = made[0].id
        started = time.time()
        await asyncio.gather(*(mgr.record_request(target) for _ in range(100)))
        activity = await mgr.activity(target)
        assert activity is not None and activity.request_count == 100, (
            f"SC-4: 100 concurrent requests were recorded as request_count="
            f"{activity.request_count if activity else None}; it must be exact (a CAS update, not read-then-write)."
        )
        assert activity.last_activity.timestamp() >= started - 1, (
            f"SC-4: last_activity is {activity.last_activity}, before the requests began."
        )
        assert activity.expires_at is not None and activity.absolute_deadline is not None
        assert activity.expires_at <= activity.absolute_deadline, (
            f"SC-4: expires_at {activity.expires_at} is after the absolute deadline {activity.absolute_deadline}."
        )
        await sleep_until(dead_from(span, 0.3))
        await mgr.delete(made[3].id)
        active = await ctx.store.count(owner="bob")
        assert active == 3, (
            f"SC-4: counting bob's active sessions gave {active}; of 5 created one was deleted and one expired, so 3 "
            "are active."
        )


# -- SC-5: a user's sessions and chats ------------------------------------------------------------------------------
@clause("SC-5")
async def test_a_user_with_capped_sessions_each_with_chats_and_one_active_chat(ctx: SuiteContext) -> None:
    cap = 3
    async with manager_for(ctx, idle_timeout=HOUR, max_active_sessions=cap) as mgr:
        results = await asyncio.gather(*(mgr.create({"n": i}, owner="carol") for i in range(50)),
                                       return_exceptions=True)
        other = [r for r in results if isinstance(r, BaseException) and not isinstance(r, LimitExceeded)]
        assert not other, f"SC-5: creates failed with {other[:3]} (only LimitExceeded is expected past the cap)."
        sessions = [r for r in results if not isinstance(r, BaseException)]
        assert len(sessions) == cap, (
            f"SC-5: 50 concurrent session creates for one user made {len(sessions)} sessions; the cap is {cap}."
        )
        for s in sessions:
            chats = mgr.chats(s.id)
            ids = [await chats.create(f"c{i}", activate=False) for i in range(3)]
            await asyncio.gather(*(chats.switch(ids[i % 3]) for i in range(30)),
                                 *(chats.append(ids[i % 3], [i]) for i in range(30)))
            listed = await chats.list()
            assert sum(c.active for c in listed) == 1, (
                f"SC-5: session {s.id} has {sum(c.active for c in listed)} active chats after concurrent switches; "
                "exactly one."
            )
            sizes = [len(await chats.history(c)) for c in ids]
            assert sizes == [10, 10, 10], f"SC-5: chat histories hold {sizes} messages; 10 each were appended."
        try:
            await mgr.create({}, owner="carol")
        except LimitExceeded:
            pass
        else:
            pytest.fail(f"SC-5: a {cap + 1}th session was created for a user capped at {cap}.", pytrace=False)
        await mgr.delete(sessions[0].id)
        replacement = await mgr.create({}, owner="carol")
        assert await mgr.get(replacement.id) is not None, "SC-5: after a delete the user may create a session again."
