"""ID-1, ID-2, ID-3, TTL-0: ids are random and literal, and bad ids and periods never reach the backend.

A session id is a bearer credential and a piece of every backend command the store builds
(Redis keys and glob patterns, SQL LIKE, file paths), so these tests attack it: they look
for predictable ids, ids that act as patterns on their neighbours, and invalid ids or
periods that get "fixed up" and written instead of refused.
"""

from __future__ import annotations

import asyncio
import itertools
import math
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any

import pytest

from sessionspec.conformance.clauses import clause
from sessionspec.conformance.context import SuiteContext
from sessionspec.conformance.contract import (
    InvalidSessionId,
    InvalidTtl,
    Session,
    SessionExists,
    SessionStore,
)
from sessionspec.conformance.validation import GENERATED_ID_PATTERN

from ._values import (
    HUGE_TTLS,
    INVALID_IDS,
    INVALID_TTLS,
    OWNER_COUNTS,
    TRICKY_IDS,
    UNUSED_OWNERS,
    bullets,
    count_unchanged,
    disturbed,
    owners_kept,
    refusal,
    setting_up,
    short,
)

GENERATED = 1000
REQUIRED_BITS = 128
ESTIMATE_SLACK = 1.0
"""Bits the per-position estimate may fall short by sampling alone (an unseen symbol costs ~0.02 bit)."""
MAX_SHARED_PREFIX = 16
"""Random ids generated together share a few leading characters at most; time-based ones share many."""
OUTAGE_CALL_LIMIT = 10.0
NEIGHBOUR_CHECK_EVERY = 6
"""ID-2 re-reads every session after this many ids' writes (or deletes): O(n²/6) reads, not O(n²)."""


# ---------------------------------------------------------------- helpers
def _estimated_bits(ids: list[str]) -> float:
    """Randomness as seen from outside: sum over positions of log2(distinct characters seen there).

    Fixed, sequential or clock-derived positions show few distinct characters and add little,
    so a counter or timestamp padded to the right length cannot pass for random.
    """
    width = max(len(i) for i in ids)
    return sum(math.log2(len({i[p] for i in ids if len(i) > p})) for p in range(width))


def _longest_shared_prefix(ids: list[str]) -> tuple[int, str, str]:
    """The longest prefix two of ``ids`` share (neighbours in sorted order), and the two ids."""
    ordered = sorted(ids)
    best = (0, "", "")
    for a, b in itertools.pairwise(ordered):
        shared = next((n for n, (x, y) in enumerate(zip(a, b, strict=False)) if x != y), min(len(a), len(b)))
        if shared > best[0]:
            best = (shared, a, b)
    return best


def _batches(items: tuple[str, ...], size: int) -> list[tuple[str, ...]]:
    return [items[i:i + size] for i in range(0, len(items), size)]


# ---------------------------------------------------------------- ID-1
@clause("ID-1")
async def test_generated_ids_are_random_url_safe_and_short(ctx: SuiteContext) -> None:
    """1000 generated ids: the alphabet, the length, no repeats, >= 128 bits, no shared (time) prefix."""
    ids: list[str] = []
    for batch in range(GENERATED // 100):
        made = await asyncio.gather(*(ctx.store.create({"n": batch * 100 + i}) for i in range(100)),
                                    return_exceptions=True)
        for result in made:
            if isinstance(result, SessionExists):
                pytest.fail("ID-1: create() without an id raised SessionExists: a generated id collided with an "
                            "earlier one among only a few hundred creates, so ids carry far fewer than 128 random "
                            "bits. Use a CSPRNG, e.g. secrets.token_urlsafe(16) or more.", pytrace=False)
            if isinstance(result, BaseException):
                raise result
            ids.append(result.id)
    malformed = [i for i in ids if not isinstance(i, str) or not GENERATED_ID_PATTERN.fullmatch(i)]
    assert not malformed, (
        f"ID-1: generated ids must be 1..64 characters of [A-Za-z0-9_-] (safe in URLs, cookies, keys, file "
        f"names); {len(malformed)} of {GENERATED} are not, e.g. {short(malformed[:3])}."
    )
    assert len(set(ids)) == len(ids), (
        f"ID-1: {len(ids) - len(set(ids))} of {GENERATED} generated ids repeat an earlier one; ids must be unique "
        "and carry >= 128 random bits."
    )
    bits = _estimated_bits(ids)
    assert bits >= REQUIRED_BITS - ESTIMATE_SLACK, (
        f"ID-1: the generated ids carry about {bits:.0f} bits of randomness (estimated per character position "
        f"over {GENERATED} ids, e.g. {short(ids[:3])}); at least {REQUIRED_BITS} are required, from a CSPRNG "
        "(secrets.token_urlsafe(16) gives 128). Counters, timestamps and short random parts make ids guessable."
    )
    shared, a, b = _longest_shared_prefix(ids)
    assert shared <= MAX_SHARED_PREFIX, (
        f"ID-1: generated ids {a!r} and {b!r} share their first {shared} characters; random ids created together "
        f"share only a few. A sequential or time-derived prefix makes ids predictable."
    )


# ---------------------------------------------------------------- ID-2
async def _write_everything(store: SessionStore, sid: str) -> Session:
    """Every write on one id; what it must read back afterwards."""
    await store.save(sid, {"me": sid, "saved": True})
    await store.apply(sid, {"applied": sid})
    await store.append(sid, "log", [sid])
    await store.touch(sid)
    got = await store.get(sid)
    want = {"me": sid, "saved": True, "applied": sid, "log": [sid]}
    assert got is not None and got.state == want, (
        f"ID-2: after save/apply/append/touch on id {sid!r} it reads back as {short(got)}, not {short(want)}: "
        "the id is not used literally (escaped, normalised, trimmed or matched as a pattern)."
    )
    return got


@clause("ID-2")
async def test_tricky_ids_never_reach_another_session(ctx: SuiteContext) -> None:
    """Pattern, injection, case, space and normalisation lookalikes are each their own session."""
    store = ctx.store
    await owners_kept(store, "ID-2")
    expected: dict[str, Session | None] = {}
    for sid in reversed(TRICKY_IDS):  # victims first: a create that matches patterns would refuse the pattern
        try:
            expected[sid] = await store.create({"me": sid}, id=sid, owner=sid)
        except SessionExists:
            pytest.fail(f"ID-2: create(id={sid!r}) raised SessionExists though no session has exactly that id "
                        f"(existing: {short(list(expected))}); ids must be compared literally, never as patterns, "
                        "case-insensitively or after normalisation.", pytrace=False)
    wrong = [f"{sid!r} reads back as {short(s)}" for sid, s in expected.items()
             if s is None or s.id != sid or s.state != {"me": sid} or s.owner != sid]
    assert not wrong, "ID-2: create() did not keep the id/owner literally:" + bullets(wrong)
    changed = await disturbed(store, expected, "ID-2")
    assert not changed, "ID-2: get() of a tricky id returned another session's data:" + bullets(changed)

    # Patterns first, a few at a time: if one acts on its neighbours, they are still there to notice, and
    # the state each write leaves ({"applied": <writer's id>}) names the culprit.
    for batch in _batches(TRICKY_IDS, NEIGHBOUR_CHECK_EVERY):
        for sid in batch:
            expected[sid] = await _write_everything(store, sid)
        changed = await disturbed(store, expected, "ID-2")
        assert not changed, (
            f"ID-2: save/apply/append/touch on the ids {short(list(batch), 100)} changed other sessions; ids must "
            f"be literal (no glob, LIKE, regex, path or hash-tag meaning):" + bullets(changed)
        )
    for batch in _batches(TRICKY_IDS, NEIGHBOUR_CHECK_EVERY):
        for sid in batch:
            assert await store.delete(sid) is True, (
                f"ID-2: delete({sid!r}) of a live session returned False: an earlier delete of a pattern-like id "
                f"among {short(list(batch), 100)} removed it too, or the id is not matched literally."
            )
            expected[sid] = None
        changed = await disturbed(store, expected, "ID-2")
        assert not changed, (
            f"ID-2: delete() of the ids {short(list(batch), 100)} removed or changed other sessions, or not its "
            f"own; delete must match the id exactly (a glob/LIKE delete takes every matching session with it):"
            + bullets(changed)
        )


async def _all_pages(store: SessionStore, owner: str) -> list[str]:
    ids: list[str] = []
    cursor: str | None = None
    for _ in range(100):
        page = await store.list(owner=owner, limit=100, cursor=cursor)
        ids += [info.id for info in page.items if info.owner == owner] + [
            f"{info.id} (owner {info.owner!r})" for info in page.items if info.owner != owner]
        cursor = page.next_cursor
        if cursor is None:
            return ids
    pytest.fail(f"ID-2: list(owner={owner!r}) never returned a last page (next_cursor None).", pytrace=False)


@clause("ID-2")
async def test_owner_filters_match_exactly(ctx: SuiteContext) -> None:
    """Owners are literal too: "a*", "a%", "a_", "A", "a " and NFC/NFD "é" each count only their own."""
    store = ctx.store
    await owners_kept(store, "ID-2")
    made: dict[str, list[str]] = {}
    for owner, n in OWNER_COUNTS:
        sessions = await asyncio.gather(*(store.create({"owner": owner}, owner=owner) for _ in range(n)))
        made[owner] = sorted(s.id for s in sessions)
    wrong: list[str] = []
    for owner, ids in made.items():
        for sid in ids:
            got = await store.get(sid)
            if got is None or got.owner != owner:
                wrong.append(f"{sid}: expected owner {owner!r}, got {short(got and got.owner)}")
    assert not wrong, "ID-2: get() does not return the owner exactly as given:" + bullets(wrong)
    if not ctx.claims("listing"):
        return
    problems: list[str] = []
    for owner, ids in made.items():
        counted = await store.count(owner=owner)
        if counted != len(ids):
            problems.append(f"count(owner={owner!r}) = {counted}, expected {len(ids)}")
        listed = sorted(await _all_pages(store, owner))
        if listed != ids:
            problems.append(f"list(owner={owner!r}) gave {len(listed)} sessions, expected exactly its {len(ids)}: "
                            f"extra {short(sorted(set(listed) - set(ids)))}")
    for owner in UNUSED_OWNERS:
        counted = await store.count(owner=owner)
        listed = await _all_pages(store, owner)
        if counted or listed:
            problems.append(f"owner {owner!r} has no sessions, but count() = {counted} and list() gave {len(listed)}")
    assert not problems, (
        "ID-2: owner filters must match exactly, never by prefix, pattern (glob/LIKE) or collation "
        "(case, trailing space, Unicode normalisation):" + bullets(problems)
    )


# ---------------------------------------------------------------- ID-3
@dataclass(frozen=True, slots=True)
class IdOperation:
    call: Callable[[SessionStore, Any], Awaitable[object]]
    none_is_invalid: bool = True
    """``id=None`` on create and ``owner=None`` mean "generate" and "no owner"; elsewhere None is invalid."""
    listing: bool = False


ID_OPERATIONS: dict[str, IdOperation] = {
    "get": IdOperation(lambda s, bad: s.get(bad)),
    "save": IdOperation(lambda s, bad: s.save(bad, {"x": 1})),
    "apply": IdOperation(lambda s, bad: s.apply(bad, {"x": 1})),
    "append": IdOperation(lambda s, bad: s.append(bad, "log", [1])),
    "touch": IdOperation(lambda s, bad: s.touch(bad)),
    "delete": IdOperation(lambda s, bad: s.delete(bad)),
    "create(id=...)": IdOperation(lambda s, bad: s.create({"x": 1}, id=bad), none_is_invalid=False),
    "create(owner=...)": IdOperation(lambda s, bad: s.create({"x": 1}, owner=bad), none_is_invalid=False),
    "list(owner=...)": IdOperation(lambda s, bad: s.list(owner=bad), none_is_invalid=False, listing=True),
    "count(owner=...)": IdOperation(lambda s, bad: s.count(owner=bad), none_is_invalid=False, listing=True),
}
SENTINEL_IDS = ("a", "ab", "abc", "x", "_", "x" * 256)
"""What a store that strips, truncates or replaces bad characters would write to instead."""


async def _sentinels(store: SessionStore) -> dict[str, Session | None]:
    """Valid ids (256 characters included) that ID-3's checks watch: a store that cannot create them
    breaks ID-2, and ID-3 reports that as its setup, not as its own failure."""
    return {sid: await setting_up("ID-3", f"create(id={short(sid, 12)})",
                                  store.create({"sentinel": sid}, id=sid), ("ID-2",))
            for sid in SENTINEL_IDS}


@clause("ID-3")
@pytest.mark.parametrize("operation", list(ID_OPERATIONS))
async def test_invalid_ids_and_owners_are_refused_and_nothing_is_written(ctx: SuiteContext, operation: str) -> None:
    """Empty, too long, control characters, NUL, surrogates and non-str ids raise InvalidSessionId."""
    op = ID_OPERATIONS[operation]
    if op.listing:
        ctx.require("listing", f"{operation} is a listing operation")
    store = ctx.store
    expected = await _sentinels(store)
    count_before = await store.count() if ctx.claims("listing") else None
    values = [*INVALID_IDS, *([("None", None)] if op.none_is_invalid else [])]
    found = [await refusal(f"{label} {short(bad, 24)}", op.call(store, bad), InvalidSessionId,
                           wrong_type=not isinstance(bad, str)) for label, bad in values]
    failures = [f for f in found if f]
    assert not failures, (
        f"ID-3: {operation} must raise InvalidSessionId (a ValueError) for every invalid id/owner, before any "
        f"backend call; instead:" + bullets(failures)
    )
    changed = await disturbed(store, expected, "ID-3")
    assert not changed, (
        f"ID-3: a refused {operation} still wrote something: the invalid id was sanitised (stripped, truncated "
        f"or replaced) and written under another id:" + bullets(changed)
    )
    await count_unchanged(store, count_before, f"ID-3: refused {operation} calls must leave nothing behind")


@clause("ID-3")
async def test_invalid_ids_are_refused_before_any_backend_call(ctx: SuiteContext) -> None:
    """With the backend down, an invalid id still raises InvalidSessionId: validation comes first."""
    ctx.require_backend_control()
    await ctx.stop_backend()
    found = [await refusal(f"{operation} with {bad!r}", op.call(ctx.store, bad), InvalidSessionId,
                           limit=OUTAGE_CALL_LIMIT)
             for operation, op in ID_OPERATIONS.items() if ctx.claims("listing") or not op.listing
             for bad in ("", "a\x00b", 42)]
    failures = [f for f in found if f]
    assert not failures, (
        "ID-3: invalid ids must raise InvalidSessionId before any backend call (so even with the backend "
        "down):" + bullets(failures)
    )


# ---------------------------------------------------------------- TTL-0
TtlCall = Callable[[SessionStore, str, Any], Awaitable[object]]
TTL_OPERATIONS: dict[str, TtlCall] = {
    "create": lambda s, sid, bad: s.create({"x": 1}, id=f"{sid}-new", ttl=bad),
    "save": lambda s, sid, bad: s.save(sid, {"x": 2}, ttl=bad),
    "touch": lambda s, sid, bad: s.touch(sid, ttl=bad),
}


@clause("TTL-0")
@pytest.mark.parametrize("operation", list(TTL_OPERATIONS))
async def test_invalid_ttls_are_refused_and_nothing_changes(ctx: SuiteContext, operation: str) -> None:
    """0, negatives, NaN, ±inf, strings, bools, lists and timedeltas raise InvalidTtl; the session is untouched."""
    store = ctx.store
    session = await store.create({"x": 0}, id="ttl0", ttl=600)
    expected: dict[str, Session | None] = {"ttl0": session, "ttl0-new": None}
    found = [await refusal(f"ttl={label}", TTL_OPERATIONS[operation](store, "ttl0", bad), InvalidTtl,
                           wrong_type=isinstance(bad, bool) or not isinstance(bad, int | float))
             for label, bad in INVALID_TTLS]
    failures = [f for f in found if f]
    assert not failures, (
        f"TTL-0: {operation}(ttl=...) must raise InvalidTtl (a ValueError) unless ttl is KEEP, None or a finite "
        f"number > 0 (not a bool); instead:" + bullets(failures)
    )
    changed = await disturbed(store, expected, "TTL-0")
    assert not changed, f"TTL-0: a refused {operation} still changed something:" + bullets(changed)


async def _huge_ttl_outcome(store: SessionStore, operation: str, label: str, ttl: float | int) -> list[str]:
    """What went wrong when ``operation`` got a period beyond a datetime's range (empty: nothing)."""
    sid = f"huge-{operation}-{len(label)}-{int(math.log10(ttl))}"
    before = await store.create({"x": 0}, id=sid, ttl=600)
    expected: dict[str, Session | None] = {sid: before, f"{sid}-new": None}
    try:
        await TTL_OPERATIONS[operation](store, sid, ttl)
    except InvalidTtl:
        return [f"ttl={label}: refused, but {line}" for line in await disturbed(store, expected, "TTL-0")]
    except NotImplementedError:
        raise
    except Exception as exc:  # an untyped error: the caller cannot tell a bad argument from an outage
        changed = await disturbed(store, expected, "TTL-0")
        return [f"ttl={label}: raised {type(exc).__name__}: {short(str(exc), 60)}, not InvalidTtl"
                + (" — and still changed the session" if changed else "")]
    target = f"{sid}-new" if operation == "create" else sid
    try:
        kept = await store.get(target)
    except Exception as exc:
        return [f"ttl={label}: accepted, then get({target!r}) raised {type(exc).__name__}: {short(str(exc), 60)}"]
    if kept is None:
        return [f"ttl={label}: accepted, then get({target!r}) found nothing"]
    return []


@clause("TTL-0")
@pytest.mark.parametrize("operation", list(TTL_OPERATIONS))
async def test_periods_beyond_a_datetime_are_refused_cleanly_or_kept_readable(
        ctx: SuiteContext, operation: str) -> None:
    """ttl=1e12 or 3.4e38 is a number > 0: a store may refuse it (InvalidTtl, nothing changed) or keep a
    readable session — never write first and fail after, leaving a session nothing can read."""
    found = [line for label, ttl in HUGE_TTLS
             for line in await _huge_ttl_outcome(ctx.store, operation, label, ttl)]
    assert not found, (
        f"TTL-0: {operation}() with a period whose expiry lies beyond year 9999 must either raise InvalidTtl and "
        "change nothing, or keep a session get() can read (the reference stores refuse ttl > 1e10 s):"
        + bullets(found)
    )


@clause("TTL-0")
async def test_invalid_ttls_are_refused_before_any_backend_call(ctx: SuiteContext) -> None:
    """With the backend down, a bad ttl still raises InvalidTtl: validation comes first."""
    ctx.require_backend_control()
    await ctx.store.create({"x": 0}, id="ttl0", ttl=600)
    await ctx.stop_backend()
    found = [await refusal(f"{operation}(ttl={bad!r})", call(ctx.store, "ttl0", bad), InvalidTtl,
                           limit=OUTAGE_CALL_LIMIT)
             for operation, call in TTL_OPERATIONS.items() for bad in (0, -1, "5")]
    failures = [f for f in found if f]
    assert not failures, (
        "TTL-0: an invalid ttl must raise InvalidTtl before any backend call (so even with the backend "
        "down):" + bullets(failures)
    )
