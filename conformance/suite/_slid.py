"""LS-1, LS-2 after sliding expiry: a session kept alive by writes is still listed and counted.

Run by the LS-1 and LS-2 tests of ``test_listing`` beside their own checks (the waits overlap),
on a store of a namespace of its own, so neither disturbs the other's exact listings.

The usual Redis design keeps a sorted set per owner scored by expiry; a store that scores it
only on create drops a session from ``list`` and ``count`` once its *first* deadline passes,
although every write since slid it (TTL-2). Each kind of write (save, touch; apply and
append when ``atomic`` is claimed) keeps sessions of its own owner, and one of no owner,
alive past their first deadline; one more session per owner is left to expire. The probe runs
after the first deadline has certainly passed and before the slid one can have.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Awaitable, Callable
from dataclasses import dataclass

import pytest

from sessionspec.conformance.context import SuiteContext, new_namespace
from sessionspec.conformance.contract import SessionStore
from sessionspec.conformance.results import ClauseViolation

from ._timing import Span, dead_from, retrying, sleep_until, timed, within, write_while_live
from ._values import bullets

TTL = 1.0
"""Whole seconds: a store that keeps only whole-second expiries (and honours TTL-1) holds it exactly."""
WRITE_AT = 0.55
"""The writes start this share of the period after the creates: late, yet certainly before expiry."""


@dataclass(frozen=True, slots=True)
class Slid:
    """Who must be listed: live (slid) session ids by owner (None: no owner), and the expired ones."""

    live: dict[str | None, set[str]]
    dead: set[str]

    @property
    def owners(self) -> list[str]:
        return sorted(o for o in self.live if o is not None)

    @property
    def everyone(self) -> set[str]:
        return set().union(*self.live.values())


Probe = Callable[[SessionStore, Slid], Awaitable[list[str]]]


def _write(store: SessionStore, kind: str, id: str) -> Awaitable[object]:
    if kind == "save":
        return store.save(id, {"kept": "save"})
    if kind == "apply":
        return store.apply(id, {"kept": "apply"})
    if kind == "append":
        return store.append(id, "log", ["kept"])
    return store.touch(id)


async def _slid_trial(store: SessionStore, ttl: float, kinds: tuple[str, ...], probe: Probe, clause_id: str) -> None:
    tag = f"{ttl:g}"
    plan: list[tuple[str, str | None, int]] = [  # two owned sessions per kind of write, and one of no owner
        (kind, owner, n) for kind in kinds for owner, n in ((f"slide-{kind}-{tag}", 0), (f"slide-{kind}-{tag}", 1),
                                                              (None, 2))]
    made = await asyncio.gather(*(timed(store.create({"log": []}, owner=owner, ttl=ttl)) for _, owner, _ in plan))
    left = await asyncio.gather(*(timed(store.create({}, owner=f"slide-{kind}-{tag}", ttl=ttl)) for kind in kinds))
    created = Span.cover(span for _, span in made + left)
    await sleep_until(created.start + WRITE_AT * ttl)
    wrote = await asyncio.gather(*(write_while_live(clause_id, f"{kind} keeping a session alive",
                                                    _write(store, kind, session.id), span, ttl)
                                   for (kind, _, _), (session, span) in zip(plan, made, strict=True)))
    writes = Span.cover(span for _, span in wrote)
    within(clause_id, "the sliding writes", writes, created.start + ttl)
    live: dict[str | None, set[str]] = {}
    for (_, owner, _), (session, _) in zip(plan, made, strict=True):
        live.setdefault(owner, set()).add(session.id)
    slid = Slid(live, {session.id for session, _ in left})
    await sleep_until(dead_from(created, ttl))  # every first deadline has passed, and the unwritten are gone
    problems, probed = await timed(probe(store, slid))
    within(clause_id, "the listing after the first deadline", probed, writes.start + ttl)
    if problems:
        await _gone_for_get_too(store, slid, clause_id, writes.start + ttl)
        pytest.fail(
            f"{clause_id}: sessions kept alive by writes (each kind: {', '.join(kinds)}) past their first deadline "
            f"(ttl {ttl:g} s) must still be {'listed' if clause_id == 'LS-1' else 'counted'}, by owner and in "
            "total; an index scored with the expiry only on create (a sorted set written by create alone) drops "
            "them although they are live "
            "(TTL-2):" + bullets(problems), pytrace=False)


async def _gone_for_get_too(store: SessionStore, slid: Slid, clause_id: str, deadline: float) -> None:
    """The premise of a listing failure here: the written sessions are live. If get() finds some gone too
    (before the slid deadline), the writes did not slide their expiry: TTL-2's bug, and ``clause_id``'s
    listing was not what failed — it is not checked."""
    ids = sorted(slid.everyone)
    got, read = await timed(asyncio.gather(*(store.get(i) for i in ids)))
    within(clause_id, "the get() after the listing", read, deadline)
    gone = [i for i, s in zip(ids, got, strict=True) if s is None]
    if gone:
        raise ClauseViolation("TTL-2", f"could not check {clause_id}: {len(gone)} of {len(ids)} sessions written "
                              "late in their period were gone for get() too, past their first deadline (e.g. "
                              f"{gone[:3]}): the writes did not slide the expiry — see TTL-2", (clause_id,))


async def _listed(store: SessionStore, owner: str | None) -> list[str]:
    ids: list[str] = []
    cursor: str | None = None
    for _ in range(100):
        page = await store.list(owner=owner, limit=100, cursor=cursor)
        ids += [info.id for info in page.items]
        if page.next_cursor is None:
            break
        cursor = page.next_cursor
    return ids


async def _probe_list(store: SessionStore, slid: Slid) -> list[str]:
    problems = []
    for owner in [*slid.owners, None]:
        want = slid.everyone if owner is None else slid.live[owner]
        got = set(await _listed(store, owner))
        if got != want:
            missing, extra = sorted(want - got), sorted(got - want)
            problems.append(f"list(owner={owner!r}): {len(missing)} live sessions missing {missing[:3]}"
                            + (f", {len(extra)} expired ones listed {extra[:3]}" if extra else ""))
    return problems


async def _probe_count(store: SessionStore, slid: Slid) -> list[str]:
    problems = []
    for owner in [*slid.owners, None]:
        want = len(slid.everyone if owner is None else slid.live[owner])
        got = await store.count(owner=owner)
        if got != want:
            problems.append(f"count(owner={owner!r}) = {got}, but {want} sessions of it are live (kept alive by "
                            f"{owner.split('-')[1] if owner else 'every kind of write'})")
    return problems


def _kinds(ctx: SuiteContext) -> tuple[str, ...]:
    return ("save", "touch", "apply", "append") if ctx.claims("atomic") else ("save", "touch")


async def _kept_alive(ctx: SuiteContext, probe: Probe, clause_id: str) -> None:
    namespace = new_namespace()
    store = await ctx.another_store(namespace)
    kinds = _kinds(ctx)
    try:
        await retrying(clause_id, lambda ttl: _slid_trial(store, ttl, kinds, probe, clause_id), TTL)
    finally:
        if ctx.target.drop_namespace is not None:
            with contextlib.suppress(Exception):
                await ctx.target.drop_namespace(store, namespace)


async def listed_after_sliding(ctx: SuiteContext) -> None:
    """LS-1: sessions kept alive past their first deadline by each kind of write are listed, by owner and all."""
    await _kept_alive(ctx, _probe_list, "LS-1")


async def counted_after_sliding(ctx: SuiteContext) -> None:
    """LS-2: the same sessions are counted, by owner and in total."""
    await _kept_alive(ctx, _probe_count, "LS-2")
