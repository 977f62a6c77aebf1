"""LS-1, LS-2, HY-1: list pages through live sessions exactly once, count counts them, neither walks Redis.

The listing is attacked where real stores break: page boundaries (a cursor that skips or
repeats), sessions created, written and deleted while a listing is in progress, ids whose
code-point order differs from a database collation or from UTF-16, dead sessions an index
still holds, owner filters, and KEYS/SCAN over the whole Redis keyspace.
"""

from __future__ import annotations

import asyncio
import itertools
from collections import Counter
from collections.abc import Awaitable, Callable, Mapping
from typing import Any

import pytest

from sessionspec.conformance.clauses import clause
from sessionspec.conformance.context import SuiteContext
from sessionspec.conformance.contract import Page, Session, SessionInfo, SessionStore
from sessionspec.conformance.results import NOT_APPLICABLE

from ._overlap import overlapped
from ._slid import counted_after_sliding, listed_after_sliding
from ._timing import SHORT_TTL, Inconclusive, Span, dead_from, gather_all, retrying, sleep_until, timed
from ._values import bullets, owners_kept, require_aware, short

MAX_PAGES = 500
CHURN_CREATES = 12
OWNERS = ("alice", "al", "Alice", "bob", None)  # "al" is a prefix of "alice", "Alice" its case twin
ORDER_IDS = (
    # code-point order, which differs from collations ("a" < "B"), from UTF-16 ("😀" < "\uffff") and from
    # numeric order ("10" < "9")
    "A", "B", "Zz", "a", "a b", "a-b", "a.b", "a_b", "b", "10", "9", "~", "!", "\u00e9", "e\u0301", "\ue000",
    "\uffff", "😀", "\U0001d11ex", "\U0010ffff",
)
Between = Callable[[int, Page], Awaitable[None]]


async def _page_through(store: SessionStore, owner: str | None, limit: int,
                        between: Between | None = None) -> tuple[list[SessionInfo], list[str]]:
    """Every item of a complete listing, and what was wrong with its pages."""
    items: list[SessionInfo] = []
    problems: list[str] = []
    cursor: str | None = None
    for n in range(MAX_PAGES):
        page = await store.list(owner=owner, limit=limit, cursor=cursor)
        ids = [info.id for info in page.items]
        if len(ids) > limit:
            problems.append(f"page {n} holds {len(ids)} items, more than limit={limit}")
        if ids != sorted(ids):
            problems.append(f"page {n} is not in id (code point) order: {short(ids)}")
        items += page.items
        if page.next_cursor is None:
            return items, problems
        if not isinstance(page.next_cursor, str):
            problems.append(f"next_cursor {page.next_cursor!r} is not a str")
            return items, problems
        if between is not None:
            await between(n, page)
        cursor = page.next_cursor
    problems.append(f"no last page (next_cursor None) after {MAX_PAGES} pages")
    return items, problems


def _exactly_once(listed: list[str], expected: set[str], dead: set[str], *, only: bool) -> list[str]:
    """What is wrong with ``listed`` against the sessions that must appear (and, if ``only``, nothing else)."""
    counts = Counter(listed)
    problems = [f"listed {n} times: {sid!r}" for sid, n in counts.items() if n > 1]
    problems += [f"missing: {sid!r}" for sid in sorted(expected - counts.keys())]
    problems += [f"deleted or expired, yet listed: {sid!r}" for sid in sorted(dead & counts.keys())]
    if only:
        problems += [f"not a session of this listing: {sid!r}" for sid in sorted(counts.keys() - expected - dead)]
    if any(a >= b for a, b in itertools.pairwise(listed)):
        problems.append("the pages together are not in strictly increasing id (code point) order")
    return problems


async def _populate(store: SessionStore) -> tuple[dict[str, Session], set[str]]:
    """About 28 live sessions under 3 owners and none, plus deleted and expired ones that must never show."""
    live: dict[str, Session] = {}
    for i, sid in enumerate(ORDER_IDS):
        live[sid] = await store.create({"i": i}, id=sid, owner=OWNERS[i % len(OWNERS)], ttl=None if i % 2 else 600)
    for i in range(8):
        session = await store.create({"g": i}, owner=OWNERS[i % len(OWNERS)])
        live[session.id] = session
    for i in range(3):
        doomed = await store.create({"d": i}, id=f"deleted-{i}", owner=OWNERS[i])
        await store.delete(doomed.id)
    made = [await timed(store.create({"x": i}, id=f"expired-{i}", owner=OWNERS[i], ttl=SHORT_TTL))
            for i in range(3)]
    await sleep_until(dead_from(Span.cover(span for _, span in made), SHORT_TTL))
    dead = {f"deleted-{i}" for i in range(3)} | {f"expired-{i}" for i in range(3)}
    return live, dead


@overlapped
@clause("LS-1")
async def test_paging_lists_every_live_session_once_in_id_order(ctx: SuiteContext) -> None:
    """Per owner and overall, pages of 1, 2, 7, 100 and 1000: each live session once, in order, no dead ones.

    Beside it (the waits overlap), in a namespace of its own: sessions kept alive past their first
    deadline by each kind of write are still listed (see ``_slid``)."""
    await owners_kept(ctx.store, "LS-1")
    await gather_all(_paging_everyone(ctx.store), listed_after_sliding(ctx))


async def _paging_everyone(store: SessionStore) -> None:
    live, dead = await _populate(store)
    failures: list[str] = []
    for limit, owner in itertools.product((1, 2, 7, 100, 1000), (*OWNERS, "nobody")):
        expected = {sid for sid, s in live.items() if owner is None or s.owner == owner}
        items, problems = await _page_through(store, owner, limit)
        problems += _exactly_once([i.id for i in items], expected, dead, only=True)
        problems += [f"{i.id!r} is listed as {short(i)}, but get() gives {short(live[i.id].info())}"
                     for i in items if i.id in live and i != live[i.id].info()]
        failures += [f"list(owner={owner!r}, limit={limit}): {p}" for p in problems]
    if failures:
        require_aware("LS-1", "a session create() returned", *live.values())
    assert not failures, (
        "LS-1: paging from cursor=None to next_cursor=None must return every live session exactly once, in id "
        "(code point) order, at most `limit` per page, with exactly the owner asked for, the same SessionInfo as "
        "get(), and never a deleted or expired session:" + bullets(failures)
    )


@clause("LS-1")
@pytest.mark.parametrize("limit", [1, 2, 7])
async def test_changes_during_a_listing_never_duplicate_or_hide_stable_sessions(ctx: SuiteContext,
                                                                                limit: int) -> None:
    """Creates, deletes and writes between pages: sessions live throughout are still listed exactly once."""
    store = ctx.store
    stable = [f"k{i:02d}" for i in range(25)]
    volatile = [f"k{i:02d}v" for i in range(0, 25, 2)]  # each sorts right after a stable one
    for n, sid in enumerate(stable + volatile):
        await store.create({"n": n}, id=sid, owner="pager" if n % 3 else None)
    gone_before: set[str] = set()
    for sid in volatile[::4]:
        await store.delete(sid)
        gone_before.add(sid)
    remaining = [sid for sid in volatile if sid not in gone_before]

    async def churn(n: int, page: Page) -> None:
        if n < CHURN_CREATES:  # a bounded number, or a listing that keeps finding new sessions never ends
            last = page.items[-1].id if page.items else "k"
            await store.create({"new": n}, id=f"{last[:64]}+{n}")  # sorts right after the cursor
            await store.create({"new": n}, id=f"!{n}")  # sorts before everything listed so far
            await store.create({"new": n}, id=f"~{n}")  # sorts after everything
        if remaining:
            await store.delete(remaining.pop(0 if n % 2 else -1))  # behind and ahead of the cursor
        await store.apply(stable[(n * 7) % len(stable)], {"written": n})
        await store.touch(stable[(n * 11) % len(stable)])

    items, problems = await _page_through(store, None, limit, churn)
    listed = [i.id for i in items]
    problems += _exactly_once(listed, set(stable), gone_before, only=False)
    assert not problems, (
        f"LS-1 (limit={limit}): while sessions were created, deleted and written between pages, every session "
        "live for the whole listing must still be listed exactly once and nothing twice; order by the immutable "
        "id (not updated_at, not an OFFSET) so writes cannot move sessions between pages:" + bullets(problems)
    )


BAD_LIST_ARGS: tuple[tuple[str, dict[str, Any]], ...] = (
    ("limit=0", {"limit": 0}), ("limit=-1", {"limit": -1}), ("limit=1001", {"limit": 1001}),
    ("limit=10**6", {"limit": 10**6}), ("limit=1.5", {"limit": 1.5}), ("limit='10'", {"limit": "10"}),
    ("limit=True", {"limit": True}), ("limit=None", {"limit": None}), ("cursor=5", {"cursor": 5}),
    ("cursor=b'x'", {"cursor": b"x"}),
)


@clause("LS-1")
async def test_limit_outside_1_to_1000_and_non_str_cursors_raise_value_error(ctx: SuiteContext) -> None:
    """``limit`` is an int in 1..1000 and ``cursor`` a str from a previous page; anything else is a ValueError."""
    await ctx.store.create({})
    failures: list[str] = []
    for label, kwargs in BAD_LIST_ARGS:
        try:
            page = await ctx.store.list(**kwargs)
            failures.append(f"list({label}) returned {len(page.items)} items")
        except ValueError:
            pass
        except Exception as exc:
            failures.append(f"list({label}) raised {type(exc).__name__}: {short(str(exc), 60)}")
    for limit in (1, 1000):
        try:
            await ctx.store.list(limit=limit)
        except Exception as exc:
            failures.append(f"list(limit={limit}) raised {type(exc).__name__}: it is a valid limit")
    assert not failures, "LS-1: list() must raise ValueError for a limit outside 1..1000 (or not an int) and for a " \
                         "cursor that is not a str:" + bullets(failures)


# ---------------------------------------------------------------- LS-2
async def _counts(store: SessionStore, owners: Mapping[str | None, int]) -> list[str]:
    problems = []
    for owner, want in owners.items():
        got = await store.count(owner=owner)
        if got != want:
            problems.append(f"count(owner={owner!r}) = {got}, expected {want}")
    return problems


async def _count_trial(store: SessionStore, ttl: float) -> None:
    base = await store.count()
    tag = f"{ttl:g}"
    plan = {f"alice{tag}": 3, f"Alice{tag}": 2, f"bob{tag}": 4}
    made = {owner: [await store.create({"o": owner}, owner=owner) for _ in range(n)] for owner, n in plan.items()}
    anonymous = [await store.create({}) for _ in range(2)]
    created = [await timed(store.create({"e": i}, owner=f"alice{tag}", ttl=ttl)) for i in range(3)]
    expiring = Span.cover(span for _, span in created)
    live = sum(plan.values()) + len(anonymous)
    expected: dict[str | None, int] = {None: base + live + 3, f"alice{tag}": 6, f"Alice{tag}": 2, f"bob{tag}": 4,
                                       f"nobody{tag}": 0}
    problems, read = await timed(_counts(store, expected))
    if problems and read.end < expiring.start + ttl:
        pytest.fail("LS-2: right after the creates, count() must equal the number of live sessions, overall and "
                    "per owner (matched exactly):" + bullets(problems), pytrace=False)
    if problems:
        # the next trial counts from this namespace's count() again: it must not include sessions of this one
        # that are still about to expire (count() would drop by them in the middle of the next trial)
        ours = [x.id for group in made.values() for x in group] + [x.id for x in anonymous]
        await asyncio.gather(*(store.delete(id) for id in ours + [x.id for x, _ in created]))
        raise Inconclusive(f"LS-2: the counts right after the creates ended {read.end - expiring.start:.3f} s after "
                           f"the expiring sessions were created (ttl {ttl:g} s)")
    await store.delete(made[f"alice{tag}"][0].id)
    await store.delete(made[f"bob{tag}"][0].id)
    await store.delete(anonymous[0].id)
    await sleep_until(dead_from(expiring, ttl))
    expected = {None: base + live - 3, f"alice{tag}": 2, f"Alice{tag}": 2, f"bob{tag}": 3, f"nobody{tag}": 0}
    problems = await _counts(store, expected)
    assert not problems, (
        "LS-2: after deleting 3 sessions and 3 more expiring, count() must equal the live sessions, overall and "
        "per owner (an index that still holds deleted or expired ids, or DBSIZE/SCARD of a stale set, is "
        "wrong):" + bullets(problems)
    )
    items, _ = await _page_through(store, None, 1000)
    total = await store.count()
    assert total == len(items), f"LS-2: count() = {total}, but list() pages through {len(items)} live sessions."


@overlapped
@clause("LS-2")
async def test_count_equals_the_live_sessions_overall_and_per_owner(ctx: SuiteContext) -> None:
    """Through creates, deletes and expiries; and, in a namespace of its own, sessions kept alive past their
    first deadline by each kind of write (see ``_slid``)."""
    await owners_kept(ctx.store, "LS-2")
    await gather_all(retrying("LS-2", lambda ttl: _count_trial(ctx.store, ttl), SHORT_TTL),
                     counted_after_sliding(ctx))


# ---------------------------------------------------------------- HY-1
HY1_ATTEMPTS = 3
HY1_RETRIES = 4
"""Extra attempts allowed, each only after an attempt that met foreign traffic."""
HY1_QUIET = 0.1
"""Seconds of each quiet window (at least as long as the workload it brackets)."""
WALKING_COMMANDS = ("keys", "scan")
OWN_READS = ("info",)
"""What the suite itself sends while it watches: INFO commandstats."""


async def _listing_workload(store: SessionStore, owners: list[str]) -> None:
    await _page_through(store, None, 7)
    for owner in owners:
        await _page_through(store, owner, 7)
        await store.count(owner=owner)
    await store.count()


def _delta(before: Mapping[str, int], after: Mapping[str, int], skip: tuple[str, ...] = ()) -> dict[str, int]:
    return {c: n - before.get(c, 0) for c, n in after.items() if c not in skip and n != before.get(c, 0)}


def judge_attempt(quiet_start: Mapping[str, int], before: Mapping[str, int], after: Mapping[str, int],
                  quiet_end: Mapping[str, int]) -> tuple[dict[str, int], dict[str, int]]:
    """(KEYS/SCAN counted during the workload, commands of other clients counted in the quiet windows around it)."""
    walked = {c: n for c, n in _delta(before, after).items() if c in WALKING_COMMANDS}
    return walked, {**_delta(quiet_start, before, OWN_READS), **_delta(after, quiet_end, OWN_READS)}


@clause("HY-1")
async def test_list_and_count_never_run_keys_or_scan(ctx: SuiteContext) -> None:
    """INFO commandstats around a series of list/count calls: no KEYS, no keyspace SCAN, in every attempt.

    Each attempt is bracketed by two quiet windows in which the store makes no call: a command
    counted there came from another client of the server. Only then may an attempt that saw
    KEYS/SCAN be repeated; without such evidence the KEYS/SCAN were the store's.
    """
    hook = ctx.target.command_counts
    if hook is None:
        pytest.skip(f"{NOT_APPLICABLE}: the target reports no server command counts (no command_counts hook; "
                    "HY-1 is for Redis-backed stores)")
    store = ctx.store

    async def counts() -> dict[str, int]:
        return {k.lower().removeprefix("cmdstat_"): int(v) for k, v in (await hook(store)).items()}

    owners = [f"owner{i}" for i in range(5)]
    await asyncio.gather(*(store.create({"i": i}, owner=owners[i % 5]) for i in range(50)))
    clean, foreign_seen = 0, list[str]()
    for _ in range(HY1_ATTEMPTS + HY1_RETRIES):
        quiet_start = await counts()
        await asyncio.sleep(HY1_QUIET)
        before = await counts()
        _, span = await timed(_listing_workload(store, owners))
        after = await counts()
        await asyncio.sleep(max(HY1_QUIET, span.seconds))
        quiet_end = await counts()
        walked, foreign = judge_attempt(quiet_start, before, after, quiet_end)
        if walked and not foreign:
            pytest.fail(
                f"HY-1: list() and count() ran {', '.join(f'{c.upper()} x{n}' for c, n in walked.items())} on the "
                f"Redis server (attempt {clean + len(foreign_seen) + 1}; {clean} clean before it), and no other "
                "client was active around it. Every listing must stay off KEYS/SCAN, not most of them: KEYS "
                "blocks Redis while it walks the whole keyspace (tj/connect-redis#203) and any SCAN visits every "
                "key of the database; keep an index of the namespace (a sorted set per owner) and read that "
                "(ZRANGE/ZCARD).", pytrace=False)
        if walked:
            foreign_seen.append(", ".join(f"{c} +{n}" for c, n in sorted(foreign.items())[:5]))
            continue
        clean += 1
        if clean == HY1_ATTEMPTS:
            return
    pytest.fail(
        f"HY-1: could not get {HY1_ATTEMPTS} clean attempts: {len(foreign_seen)} attempts saw KEYS/SCAN while other "
        f"clients were busy on the server ({'; '.join(foreign_seen)}), so the calls could not be told apart. Run "
        "HY-1 against a Redis server of its own.", pytrace=False)
