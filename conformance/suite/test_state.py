"""ST-1, ST-1a, ST-2, ST-3: state is JSON, kept exactly, refused when it is not, and never aliased.

A store that changes data is worse than one that refuses it, so the round trips compare
JSON *types* as well as values (``True`` is not ``1``, ``1.0`` is not ``1``), and every
refusal must leave the stored session exactly as it was and say where the bad value is.
"""

from __future__ import annotations

import copy
import functools
from collections import ChainMap, OrderedDict, deque
from collections.abc import Awaitable, Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, date, datetime
from decimal import Decimal
from types import MappingProxyType
from typing import Any

import pytest

from sessionspec.conformance.clauses import clause
from sessionspec.conformance.context import SuiteContext
from sessionspec.conformance.contract import (
    DELETE,
    KEEP,
    InvalidState,
    Session,
    SessionStore,
)
from sessionspec.conformance.results import ClauseViolation
from sessionspec.conformance.validation import json_path

from ._values import (
    ROUND_TRIPS,
    RoundTrip,
    bullets,
    describe_change,
    json_diff,
    reads_slide,
    refusal,
    short,
    slid_by_reads,
    unless_reads_slide,
)

OUTAGE_CALL_LIMIT = 10.0


# ---------------------------------------------------------------- ST-1
def _round_trip_problem(where: str, expected: Mapping[str, Any], got: object) -> str | None:
    if type(got) is not dict:
        return f"{where}: state is a {type(got).__name__}, not a fresh dict"
    diff = json_diff(dict(expected), got)
    return f"{where}: {diff}" if diff else None


async def _round_trips(store: SessionStore, case: RoundTrip) -> list[str]:
    """Push ``case.state`` through create, save, apply (and append) and read it back each time."""
    state = case.state
    problems: list[str | None] = []
    created = await store.create(state)
    problems += [_round_trip_problem("create() returned", state, created.state)]
    blank = await store.create({})
    saved = await store.save(blank.id, state)
    problems += [_round_trip_problem("save() returned", state, saved.state)]
    empty = await store.create({})
    applied = await store.apply(empty.id, state)
    problems += [_round_trip_problem("apply() onto {} returned", state, applied.state)]
    for where, sid in (("get() after create", created.id), ("get() after save", blank.id),
                       ("get() after apply", empty.id)):
        got = await store.get(sid)
        problems += [_round_trip_problem(where, state, None if got is None else got.state)]
    if not case.at_limit:  # appended, the state sits two levels deeper: only within the limits when small
        log = await store.create({})
        await store.append(log.id, "items", [state, 1.0, True])
        got = await store.get(log.id)
        items = None if got is None else got.state.get("items")
        diff = json_diff([state, 1.0, True], items, "items")
        problems += [f"get() after append: {diff}" if diff else None]
    return [p for p in problems if p]


@clause("ST-1")
@pytest.mark.parametrize("case", ROUND_TRIPS, ids=repr)
async def test_state_round_trips_exactly_with_its_json_types(ctx: SuiteContext, case: RoundTrip) -> None:
    """Strings with NUL and astral characters, int64 edges, exact floats, 64 levels, 10,000 keys, 1 MiB."""
    try:
        problems = await _round_trips(ctx.store, case)
    except InvalidState as exc:
        pytest.fail(
            f"ST-1 ({case.name}): the store refused a state the contract requires it to hold: InvalidState: {exc}. "
            "Every str, every int64, every finite float, 64 levels, 10,000 keys and 1 MiB must round-trip.",
            pytrace=False,
        )
    assert not problems, (
        f"ST-1 ({case.name}): state must come back equal and with the same JSON types (True stays bool, 1.0 stays "
        f"float, int64 exact); a store that cannot hold a value must raise InvalidState, never change it:"
        + bullets(problems)
    )


# ---------------------------------------------------------------- refusals (ST-1a, ST-2)
@dataclass(frozen=True, slots=True)
class Bad:
    """Something that is not JSON: a value, or (``key=True``) an object key."""

    label: str
    value: Any
    key: bool = False
    apply_top_ok: bool = False
    """DELETE is *valid* as a top-level value of apply's changes."""
    inner: tuple[str | int, ...] = ()
    """Where inside ``value`` the offending part sits."""


BAD_VALUES: tuple[Bad, ...] = (
    Bad("NaN", float("nan")), Bad("inf", float("inf")), Bad("-inf", float("-inf")),
    Bad("tuple", (1, 2)), Bad("set", {1}), Bad("bytes", b"x"),
    Bad("datetime", datetime(2024, 1, 2, 3, 4, 5, tzinfo=UTC)), Bad("date", date(2024, 1, 2)),
    Bad("Decimal", Decimal("1.5")), Bad("complex", 1j), Bad("object()", object()),
    Bad("string with a lone surrogate", "a\ud800b"), Bad("int above int64", 2**63),
    Bad("int below int64", -(2**63) - 1),
    Bad("DELETE outside apply's top level", DELETE, apply_top_ok=True), Bad("KEEP", KEEP),
    Bad("int key", 1, key=True), Bad("None key", None, key=True), Bad("tuple key", (1, 2), key=True),
    Bad("float key", 1.5, key=True), Bad("bytes key", b"k", key=True), Bad("bool key", True, key=True),
    Bad("key with a lone surrogate", "k\udc00", key=True),
)


class _Mapping(Mapping[str, Any]):
    """A read-only Mapping that is not a dict (like a framework's state proxy)."""

    def __init__(self, data: Mapping[str, Any]) -> None:
        self._data = dict(data)

    def __getitem__(self, key: str) -> Any:
        return self._data[key]

    def __iter__(self) -> Iterator[str]:
        return iter(self._data)

    def __len__(self) -> int:
        return len(self._data)


class _Sequence(Sequence[Any]):
    """A Sequence that is not a list."""

    def __init__(self, *items: Any) -> None:
        self._items = list(items)

    def __getitem__(self, index: Any) -> Any:
        return self._items[index]

    def __len__(self) -> int:
        return len(self._items)


class _Dict(dict[str, Any]):
    pass


class _List(list[Any]):
    pass


OTHER_CONTAINERS: tuple[Bad, ...] = (
    Bad("tuple", (1, 2)), Bad("empty tuple", ()), Bad("set", {1, 2}), Bad("frozenset", frozenset({1})),
    Bad("bytes", b"ab"), Bad("bytearray", bytearray(b"ab")), Bad("MappingProxyType", MappingProxyType({"a": 1})),
    Bad("custom Mapping", _Mapping({"a": 1})), Bad("deque", deque([1])), Bad("range", range(2)),
    Bad("custom Sequence", _Sequence(1, 2)), Bad("list holding a tuple", [1, (2, 3)], inner=(1,)),
)

Path = tuple[str | int, ...]


def _placements(bad: Bad) -> Iterator[tuple[str, dict[Any, Any], Path]]:
    """The bad thing at several depths, with the path to it (to the object holding it, for a bad key)."""
    holder: Any = {bad.value: 1} if bad.key else bad.value
    if bad.key:
        yield "at the top", {"ok": 1, bad.value: 1}, ()
    else:
        yield "at the top", {"ok": 1, "bad": holder}, ("bad", *bad.inner)
    yield "in an object", {"ok": 1, "outer": {"fine": [1], "inner": holder}}, ("outer", "inner", *bad.inner)
    yield "in an array", {"outer": [0, {"x": 1}, holder]}, ("outer", 2, *bad.inner)
    yield "deep", {"a": {"b": [{"c": [None, holder]}]}}, ("a", "b", 0, "c", 1, *bad.inner)


def _render(path: Path) -> str:
    return functools.reduce(json_path, path, "$")


def _names_path(exc: InvalidState, candidates: list[Path], *, prefix: bool) -> bool:
    """Does the error point at the offending value? ``path`` as "$.a[3]" or as a tuple; else the message.

    ``prefix``: for append, where a pointer into the appended items may be given in several ways,
    it is enough that the path starts at the appended key.
    """
    path = getattr(exc, "path", None)
    if isinstance(path, list | tuple):
        got = tuple(path)
        return any(got == c or (prefix and got[:len(c)] == c) for c in candidates)
    texts = [_render(c) for c in candidates]
    if isinstance(path, str):
        return any(path == t or (prefix and path.startswith(t)) for t in texts)
    message = str(exc)
    return any(t in message for t in texts)


@dataclass(frozen=True, slots=True)
class Write:
    """One state-taking write, and where the state it takes ends up (for the expected path)."""

    call: Callable[[SessionStore, str, dict[Any, Any]], Awaitable[object]]
    base: Path = ()
    creates: bool = False


WRITES: dict[str, Write] = {
    "create": Write(lambda s, sid, st: s.create(st, id=f"{sid}-new"), creates=True),
    "save": Write(lambda s, sid, st: s.save(sid, st)),
    "apply": Write(lambda s, sid, st: s.apply(sid, st)),
    "append": Write(lambda s, sid, st: s.append(sid, "log", [0, st]), base=("log",)),
}


async def _refusals(store: SessionStore, operation: str, bads: Sequence[Bad], clause_id: str) -> list[str]:
    """Each bad thing at each depth through ``operation``: InvalidState, the path named, nothing changed."""
    write = WRITES[operation]
    session = await store.create({"log": ["old"], "keep": {"me": True}}, id="target", ttl=600)
    failures: list[str] = []
    for n, (bad, (where, state, path)) in enumerate((b, p) for b in bads for p in _placements(b)):
        if operation == "apply" and bad.apply_top_ok and where == "at the top":
            continue
        # each create case gets its own id: one wrongly accepted value must not turn every later case into
        # SessionExists (writes to the one existing session are checked against what it holds each time)
        sid = f"target-{n}" if write.creates else "target"
        what = f"{bad.label} {where}"
        try:
            result = await write.call(store, sid, state)
        except InvalidState as exc:
            candidates = [path] + ([(*path, bad.value)] if bad.key and isinstance(bad.value, str) else [])
            if write.base:  # appended items: enough that the pointer starts at the appended key
                candidates = [write.base]
            if not _names_path(exc, candidates, prefix=bool(write.base)):
                failures.append(f"{what}: InvalidState does not point at {_render(candidates[0])} "
                                f"(path={getattr(exc, 'path', '(none)')!r}, message {short(str(exc), 70)})")
        except Exception as exc:
            failures.append(f"{what}: raised {type(exc).__name__}: {short(str(exc), 70)}, not InvalidState")
        else:
            failures.append(f"{what}: accepted (returned {short(result, 60)}) instead of InvalidState")
        after = await store.get(f"{sid}-new" if write.creates else sid)
        want = None if write.creates else session
        if repr(after) != repr(want) and await reads_slide(store, want, after):
            raise slid_by_reads(clause_id, f"{what}: the session re-read after the refused {operation}")
        if repr(after) != repr(want):  # repr: a stored NaN equals itself here ("expected nan, got nan" is no news)
            failures.append(f"{what}: the refused {operation} changed the store: {describe_change(want, after)}"
                            + (CHANGED_MARK if operation in ALL_OR_NOTHING else ""))
            if after is not None and not write.creates:
                session = after
    return failures


CHANGED_MARK = " [partial write]"
ALL_OR_NOTHING = {"apply": "MG-1", "append": "MG-5"}
"""A refused apply/append that still wrote part of its change breaks its own all-or-nothing clause first."""


def _refusal_message(clause_id: str, operation: str, rule: str, failures: list[str]) -> str:
    partial = [f.removesuffix(CHANGED_MARK) for f in failures if f.endswith(CHANGED_MARK)]
    if partial and len(partial) == len(failures):  # refused as it must, but half-written: apply/append's own rule
        owner = ALL_OR_NOTHING[operation]
        raise ClauseViolation(owner, f"{owner}: {operation}() refused the value with InvalidState as it must, but "
                              "had already written part of the change; it must be all or nothing:"
                              + bullets(partial), (clause_id,))
    return f"{clause_id}: {operation}() {rule}:" + bullets([f.removesuffix(CHANGED_MARK) for f in failures])


@clause("ST-2")
@pytest.mark.parametrize("operation", list(WRITES))
async def test_non_json_values_are_refused_naming_their_path(ctx: SuiteContext, operation: str) -> None:
    """NaN, ±inf, non-str keys, tuple, set, bytes, datetime, objects, lone surrogates, sentinels: InvalidState."""
    failures = await _refusals(ctx.store, operation, BAD_VALUES, "ST-2")
    assert not failures, _refusal_message(
        "ST-2", operation, "must raise InvalidState naming the offending path for every value that is not JSON "
        "(coercing with default=str, stringifying keys or allow_nan silently changes data), and leave the "
        "stored session unchanged", failures)


@clause("ST-2")
async def test_non_json_state_is_refused_before_any_backend_call(ctx: SuiteContext) -> None:
    """With the backend down, a NaN still raises InvalidState: validation comes first."""
    ctx.require_backend_control()
    await ctx.store.create({}, id="target")
    await ctx.stop_backend()
    found = [await refusal(operation, write.call(ctx.store, "target", {"bad": float("nan")}), InvalidState,
                           limit=OUTAGE_CALL_LIMIT) for operation, write in WRITES.items()]
    failures = [f for f in found if f]
    assert not failures, "ST-2: invalid state must raise InvalidState before any backend call:" + bullets(failures)


# ---------------------------------------------------------------- ST-1a
MAPPINGS: dict[str, Callable[[dict[str, Any]], Mapping[str, Any]]] = {
    "OrderedDict": OrderedDict,
    "MappingProxyType": MappingProxyType,
    "custom Mapping": _Mapping,
    "dict subclass": _Dict,
    "ChainMap": ChainMap,
}


@clause("ST-1a")
@pytest.mark.parametrize("kind", list(MAPPINGS))
async def test_any_mapping_is_accepted_as_state_and_as_changes(ctx: SuiteContext, kind: str) -> None:
    """A read-only view or custom Mapping at the top is copied into a plain dict, by create, save and apply."""
    store = ctx.store
    data = {"a": 1, "nested": {"b": [1, 2.5]}}
    wrap = MAPPINGS[kind]
    problems: list[str | None] = []
    try:
        created = await store.create(wrap(data))
        saved = await store.save(created.id, wrap({**data, "a": 2}))
        applied = await store.apply(created.id, wrap({"c": 3}))
    except Exception as exc:
        pytest.fail(f"ST-1a: a {kind} as state or changes must be accepted (the store takes a copy); it raised "
                    f"{type(exc).__name__}: {exc}", pytrace=False)
    problems.append(_round_trip_problem(f"create({kind})", data, created.state))
    problems.append(_round_trip_problem(f"save({kind})", {**data, "a": 2}, saved.state))
    problems.append(_round_trip_problem(f"apply({kind})", {**data, "a": 2, "c": 3}, applied.state))
    got = await store.get(created.id)
    problems.append(_round_trip_problem("get() afterwards", {**data, "a": 2, "c": 3}, got and got.state))
    found = [p for p in problems if p]
    assert not found, f"ST-1a: a {kind} must be stored as an equal plain dict:" + bullets(found)


@clause("ST-1a")
async def test_dict_and_list_subclasses_inside_are_stored_plain(ctx: SuiteContext) -> None:
    """Nested dict/list subclasses are accepted, and what comes back is plain dict and list."""
    state = {"od": OrderedDict(b=2, a=1), "sub": _Dict(x=_List([1, _Dict(y=2)]))}
    created = await ctx.store.create(state)
    got = await ctx.store.get(created.id)
    assert got is not None, "ST-1a: the session created with nested dict/list subclasses cannot be read back."
    nested = [got.state["od"], got.state["sub"], got.state["sub"]["x"], got.state["sub"]["x"][1]]
    assert [type(v) for v in nested] == [dict, dict, list, dict], (
        f"ST-1a: nested dict/list subclasses must be stored as plain dict/list; got types "
        f"{[type(v).__name__ for v in nested]}"
    )
    diff = json_diff({"od": {"b": 2, "a": 1}, "sub": {"x": [1, {"y": 2}]}}, got.state)
    assert diff is None, f"ST-1a: nested dict/list subclasses did not round-trip: {diff}"


async def _coerces_non_json(store: SessionStore, operation: str) -> bool:
    """Does ``operation`` accept a datetime (no container at all)? Then its container failures are ST-2's bug."""
    write = WRITES[operation]
    sid = "st1a-coerces"
    if not write.creates:
        await store.create({"log": []}, id=sid, ttl=600)
    try:
        await write.call(store, sid, {"when": datetime(2020, 1, 1, tzinfo=UTC)})
    except Exception:
        return False
    finally:
        await store.delete(f"{sid}-new" if write.creates else sid)
    return True


@clause("ST-1a")
@pytest.mark.parametrize("operation", list(WRITES))
async def test_other_containers_inside_are_refused(ctx: SuiteContext, operation: str) -> None:
    """tuple, set, frozenset, bytes, MappingProxyType, custom Mapping/Sequence, deque, range inside: InvalidState."""
    failures = await _refusals(ctx.store, operation, OTHER_CONTAINERS, "ST-1a")
    if failures and await _coerces_non_json(ctx.store, operation):
        raise ClauseViolation("ST-2", f"could not check ST-1a on {operation}(): it also accepts a plain non-JSON "
                              "value (a datetime), so it coerces whatever it is given (json.dumps(default=str) "
                              "and the like), containers included — see ST-2:" + bullets(failures), ("ST-1a",))
    assert not failures, _refusal_message(
        "ST-1a", operation, "must raise InvalidState for any container other than dict and list inside the state "
        "(converting a tuple to a list silently breaks round-trip equality), and leave the session unchanged",
        failures)


ITEM_SEQUENCES: dict[str, Callable[[], Sequence[Any]]] = {
    "tuple": lambda: ("a", {"b": 1}),
    "deque": lambda: deque(["a", {"b": 1}]),  # type: ignore[arg-type]
    "custom Sequence": lambda: _Sequence("a", {"b": 1}),
}


@clause("ST-1a")
async def test_append_takes_any_sequence_of_items_but_not_a_string(ctx: SuiteContext) -> None:
    """Items may be any Sequence; a str, bytes or bytearray is not a list of items."""
    store = ctx.store
    session = await store.create({})
    expected: list[Any] = []
    problems: list[str] = []
    for kind, make in ITEM_SEQUENCES.items():
        try:
            await store.append(session.id, "log", make())
            expected += ["a", {"b": 1}]
        except Exception as exc:
            problems.append(f"items as a {kind}: raised {type(exc).__name__}: {short(str(exc), 60)}")
    for text in ("abc", b"abc", bytearray(b"abc")):
        try:
            await store.append(session.id, "log", text)  # type: ignore[arg-type]
            problems.append(f"items={text!r}: accepted (a string is not a sequence of items)")
        except InvalidState:
            pass
        except Exception as exc:
            problems.append(f"items={text!r}: raised {type(exc).__name__}, not InvalidState")
    got = await store.get(session.id)
    diff = json_diff(expected, got and got.state.get("log"), "log")
    assert not problems and diff is None, (
        "ST-1a: append's items may be any Sequence (tuple, deque, ...), each item a JSON value, but a str/bytes/"
        "bytearray must raise InvalidState and append nothing:" + bullets(problems + ([diff] if diff else []))
    )


# ---------------------------------------------------------------- ST-3
BASE: dict[str, Any] = {"cart": ["book"], "profile": {"name": "ada", "tags": ["x"]}, "n": 1}


def _vandalise(state: Any) -> None:
    """Change a state at every depth, whatever shape it has by now."""
    if not isinstance(state, dict):
        return
    cart = state.setdefault("cart", [])
    if isinstance(cart, list):
        cart.append("stolen")
    profile = state.get("profile")
    if isinstance(profile, dict):
        profile["name"] = "mallory"
        tags = profile.get("tags")
        if isinstance(tags, list):
            tags.clear()
    state.pop("n", None)
    state["injected"] = True


@clause("ST-3")
async def test_mutating_returned_state_changes_nothing_stored(ctx: SuiteContext) -> None:
    """The state of every returned Session is the caller's own: editing it, at any depth, is not a write."""
    store = ctx.store
    created = await store.create(copy.deepcopy(BASE))
    returned: list[tuple[str, Session | None]] = [
        ("create()", created),
        ("get()", await store.get(created.id)),
        ("save()", await store.save(created.id, copy.deepcopy(BASE))),
        ("apply()", await store.apply(created.id, {})),
        ("get() again", await store.get(created.id)),
    ]
    first, second = returned[1][1], returned[4][1]
    assert first is not None and second is not None, "ST-3: the session vanished while it was being read."
    assert first.state is not second.state and first.state["cart"] is not second.state["cart"], (
        "ST-3: two get() calls returned the same state object (or share nested lists); each returned state must "
        "be a fresh copy the caller owns."
    )
    final = await store.get(created.id)
    for label, session in returned:
        if session is not None:
            _vandalise(session.state)
        got = await store.get(created.id)
        diff = json_diff(BASE, got and got.state)
        if diff is None:
            await unless_reads_slide(store, "ST-3", f"editing the state that {label} returned", final, got)
        assert diff is None and got == final, (
            f"ST-3: editing the state that {label} returned changed the stored session ({diff or 'metadata'}): "
            "returned state must be a deep copy; only a write may change a session (and bump its version)."
        )
    blank = await store.create()
    blank.state["leak"] = True
    other = await store.create()
    stored = await store.get(blank.id)
    assert other.state == {} and stored is not None and stored.state == {}, (
        "ST-3: editing the state of a session created without state changed what is stored (or what the next "
        "state-less create returns): state-less sessions must not share one default dict."
    )


@clause("ST-3")
async def test_mutating_what_was_passed_in_changes_nothing_stored(ctx: SuiteContext) -> None:
    """The store copies the mapping and items it is given: editing them after the call changes nothing."""
    store = ctx.store
    given = copy.deepcopy(BASE)
    created = await store.create(given)
    _vandalise(given)
    saved_from = copy.deepcopy(BASE)
    saved = await store.create({})
    await store.save(saved.id, saved_from)
    _vandalise(saved_from)
    changes: dict[str, Any] = {"profile": {"name": "ada", "tags": ["x"]}}
    applied = await store.create({})
    await store.apply(applied.id, changes)
    changes["profile"]["tags"].append("y")
    changes["extra"] = 1
    items: list[Any] = [{"m": [1]}]
    appended = await store.create({})
    await store.append(appended.id, "log", items)
    items[0]["m"].append(2)
    items.append("extra")
    expected = {
        f"the mapping passed to create() ({created.id})": (created.id, BASE),
        f"the mapping passed to save() ({saved.id})": (saved.id, BASE),
        f"the changes passed to apply() ({applied.id})": (applied.id, {"profile": {"name": "ada", "tags": ["x"]}}),
        f"the items passed to append() ({appended.id})": (appended.id, {"log": [{"m": [1]}]}),
    }
    problems: list[str] = []
    for label, (sid, want) in expected.items():
        got = await store.get(sid)
        diff = json_diff(want, got and got.state)
        if diff:
            problems.append(f"editing {label} after the call changed the stored state: {diff}")
    assert not problems, "ST-3: the store must keep a copy of what it is given, not the caller's objects:" + bullets(
        problems)


@clause("ST-2")
@pytest.mark.parametrize("operation", ["save", "apply", "append"])
async def test_invalid_state_is_refused_before_the_session_is_looked_up(ctx: SuiteContext, operation: str) -> None:
    """Spec §4.6: validation comes before existence, so a NaN for a missing id is InvalidState, not SessionNotFound."""
    write = WRITES[operation]
    try:
        result = await write.call(ctx.store, "st2-missing", {"bad": float("nan")})
    except InvalidState:
        return
    except Exception as exc:
        pytest.fail(f"ST-2: {operation}() of non-JSON state (NaN) to a missing id raised {type(exc).__name__}, not "
                    "InvalidState: validate the arguments first, then look the session up (spec §4.6 — the "
                    "caller must learn that its data is invalid, whatever the id)", pytrace=False)
    pytest.fail(f"ST-2: {operation}() of non-JSON state (NaN) to a missing id was accepted (returned "
                f"{short(result, 60)}); it must raise InvalidState", pytrace=False)
