"""CC-8: writes racing a delete or an expiry never bring a session back.

1000 concurrent tasks: on 100 sessions four writers race one delete; on 100 more, five
writers are scheduled around the instant each session expires. Dead is for good (nothing
here creates), so the verdict needs no timing assumption: once any call has *returned*
"gone" (a delete, ``get`` None, SessionNotFound), every call *invoked* after that must find
it gone too, and the final read of every such session must be None. A write that returned
success before the session died is fine, whatever the clock said.
"""

from __future__ import annotations

import asyncio
from collections.abc import Sequence
from dataclasses import dataclass

import pytest

from sessionspec.conformance.clauses import clause
from sessionspec.conformance.context import SuiteContext
from sessionspec.conformance.contract import KEEP
from sessionspec.conformance.model import Call, observe
from sessionspec.conformance.worker import Record, Task

from ._overlap import overlapped
from ._tasks import TOPOLOGIES, spread, step
from ._timing import Stopwatch, timed

SESSIONS = 100
"""Per scenario; 5 tasks each, 2 scenarios: 1000 tasks."""
WRITERS = 4
TTL = 1.0
"""Whole seconds: a store that keeps only whole-second expiries (and honours TTL-1) holds it exactly."""
OFFSETS = (-0.1, 0.1)
"""Expiry scenario: session j's writers fire at its expiry instant plus an offset spread over this range."""
LONG = 3600.0


@dataclass(frozen=True, slots=True)
class Seen:
    """One call's outcome on one session: did it find the session live, and when did it run."""

    what: str
    live: bool
    invoke: float
    response: float


def _writes(id: str, atomic: bool, task: int) -> list[Call]:
    """save and touch (core); apply and append too when the store claims `atomic`."""
    calls = [Call("save", id, {"w": task}), Call("touch", id, ttl=KEEP)]
    if atomic:
        calls += [Call("apply", id, {f"w{task}": task}), Call("append", id, [task], key="log")]
    return calls


def _seen(record: Record) -> Seen | str:
    """The outcome as live/gone, or what was wrong with it (an error other than SessionNotFound)."""
    call, output = Call.from_json(record["call"]), record.get("output")
    what = f"{call} -> {output!r}"
    if call.f == "delete" and isinstance(output, bool):
        return Seen(what, False, record["invoke"], record["response"])  # True or False: it is gone from here on
    if call.f == "get" and (output is None or (isinstance(output, dict) and "id" in output)):
        return Seen(what, output is not None, record["invoke"], record["response"])
    if isinstance(output, dict) and output.get("error") == "SessionNotFound":
        return Seen(what, False, record["invoke"], record["response"])
    if isinstance(output, dict) and "id" in output:
        return Seen(what, True, record["invoke"], record["response"])
    return what


def _resurrection(history: Sequence[Seen]) -> str | None:
    """A live outcome invoked after a "gone" outcome had returned, told as the first such pair."""
    gone = min((s for s in history if not s.live), key=lambda s: s.response, default=None)
    if gone is None:
        return None
    back = [s for s in history if s.live and s.invoke > gone.response]
    if not back:
        return None
    first = min(back, key=lambda s: s.invoke)
    return (f"{gone.what} returned at {gone.response:.6f}; then {first.what} (invoked "
            f"{first.invoke - gone.response:+.6f} s later) found it live")


async def _final_reads(ctx: SuiteContext, ids: Sequence[str]) -> list[Record]:
    async def read(id: str) -> Record:
        with Stopwatch() as sw:
            got = await ctx.store.get(id)
        return {"call": Call("get", id).to_json(), "invoke": sw.span.start, "response": sw.span.end,
                "output": observe(got)}

    return list(await asyncio.gather(*(read(id) for id in ids)))


@overlapped(only={"topology": "one-instance"})
@clause("CC-8")
@pytest.mark.parametrize("topology", TOPOLOGIES)
async def test_writes_racing_a_delete_or_an_expiry_never_bring_a_session_back(ctx: SuiteContext,
                                                                           topology: str) -> None:
    atomic = ctx.claims("atomic")
    deleted = [f"cc8-d{i}" for i in range(SESSIONS)]
    expiring = [f"cc8-e{i}" for i in range(SESSIONS)]
    await asyncio.gather(*(ctx.store.create({"w": -1, "log": []}, id=id, ttl=LONG) for id in deleted))
    made = await asyncio.gather(*(timed(ctx.store.create({"w": -1, "log": []}, id=id, ttl=TTL)) for id in expiring))
    tasks: list[Task] = []
    for id in deleted:  # the writers start first, so on an in-process store they read before the delete lands
        for k in range(WRITERS):
            write = _writes(id, atomic, k)[k % (4 if atomic else 2)]
            tasks.append([step(write), step(Call("get", id))])
        tasks.append([step(Call("delete", id)), step(Call("get", id))])
    low, high = OFFSETS
    for j, (id, (_, span)) in enumerate(zip(expiring, made, strict=True)):
        at = span.end + TTL + low + (high - low) * j / (SESSIONS - 1)
        for k in range(WRITERS + 1):
            write = _writes(id, atomic, k)[k % (4 if atomic else 2)]
            tasks.append([step(write, at=at), step(Call("get", id))])
    results = await spread(ctx, topology, tasks)
    finals = await _final_reads(ctx, deleted + expiring)
    by_id: dict[str, list[Record]] = {}
    for record in [r for records in results for r in records] + finals:
        by_id.setdefault(record["call"]["id"], []).append(record)
    histories: dict[str, list[Seen]] = {}
    odd: list[str] = []
    for id, records in by_id.items():
        for outcome in map(_seen, records):
            if isinstance(outcome, str):
                odd.append(outcome)
            else:
                histories.setdefault(id, []).append(outcome)
    assert not odd, (
        f"CC-8: {len(odd)} calls ended in something other than success or SessionNotFound, e.g. {odd[0]}. Writes "
        "racing a delete or an expiry must either land (before it) or raise SessionNotFound (after it)."
    )
    back = {id: why for id, history in histories.items() if (why := _resurrection(history)) is not None}
    died = sum(1 for id in expiring if any(not s.live for s in histories[id]))
    ctx.attach("cc8", {"tasks": len(tasks), "sessions": len(histories), "expired_while_written": died,
                       "resurrected": len(back)})
    assert not back, (
        f"CC-8: {len(back)} of {len(histories)} sessions came back after a call had seen them deleted or expired "
        f"({sum(1 for id in back if id in set(deleted))} deleted, {sum(1 for id in back if id not in set(deleted))} "
        f"expired); e.g. {next(iter(back))}: {next(iter(back.values()))}. A write must check that the session is "
        "live in the same atomic step as it writes (a script, a conditional UPDATE), never read it, then write "
        "it back unconditionally (an upsert: cache.get then cache.set)."
    )

