"""Shared test data for the input clauses, and the small checks that go with it.

The tricky ids and owners (ID-2), the invalid ones (ID-3, TTL-0), the round-trip states
(ST-1); a JSON comparison that also compares *types* (``True`` is not ``1``, ``1.0`` is
not ``1``); :func:`disturbed`, which re-reads sessions and says what changed; and
:func:`raises`/:func:`refusal`, which explain a missing error in the clause's terms
instead of pytest's bare "DID NOT RAISE".
"""

from __future__ import annotations

import asyncio
import unicodedata
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import replace
from datetime import datetime, timedelta
from typing import Any, Final, TypeVar

import pytest

from sessionspec.conformance.contract import BackendUnavailable, Session, SessionInfo, SessionStore
from sessionspec.conformance.results import ClauseViolation
from sessionspec.conformance.validation import INT64_MAX, INT64_MIN, dump_json

__all__ = [
    "INVALID_IDS",
    "INVALID_TTLS",
    "MEBIBYTE",
    "OWNER_COUNTS",
    "ROUND_TRIPS",
    "TRICKY_IDS",
    "UNUSED_OWNERS",
    "RoundTrip",
    "bullets",
    "count_unchanged",
    "describe_change",
    "disturbed",
    "json_diff",
    "moved_by_reads",
    "raises",
    "reads_slide",
    "refusal",
    "require_aware",
    "short",
    "slid_by_reads",
    "unless_reads_slide",
]

E = TypeVar("E", bound=BaseException)
T = TypeVar("T")

# ---------------------------------------------------------------- ID-2: literal ids and owners
_NFC_E = "\u00e9"  # é, one code point
_NFD_E = unicodedata.normalize("NFD", _NFC_E)  # e + combining acute: a different id
_NFD_HANGUL = unicodedata.normalize("NFD", "세션")

TRICKY_IDS: Final[tuple[str, ...]] = (
    # glob / LIKE / regex metacharacters first: if one of them acts as a pattern, its victims still exist
    "*", "?", "%", "_", "[x]", "{t}", "a*", "a?", "a%", "a_", "a\\*", "*:*", "a:*", ".*", "^a$",
    # what the patterns above could match
    "a", "ab", "A", "x", "t", "a:b",
    # injection and path lookalikes
    "' OR '1'='1", "\" OR 1=1 --", "$1", "%s", "{{x}}", "../x", "..", ".", "/", "\\",
    # case, space and normalisation: every one of these is its own session
    "Case", "case", "CASE", "alice", "alice ", " alice", "ß", "ss", "İ", "i",
    _NFC_E, _NFD_E, "세션", _NFD_HANGUL, "세션 ",
    # emoji and the edges of Unicode (format characters are allowed; controls are not)
    "😀", "👨\u200d👩\u200d👧", "a\u200db", "\u200b", "\uffff", "\U0010ffff",
    # lengths: the longest id and its own prefix
    "x" * 256, "x" * 255,
    # words a store might treat specially
    "null", "None", "__proto__", "a b",
)

OWNER_COUNTS: Final[tuple[tuple[str, int], ...]] = (
    # distinct counts, so a filter that matches the wrong owners gives the wrong number
    ("a", 1), ("a*", 2), ("ab", 3), ("A", 4), ("a%", 5), ("a_", 6), ("a ", 7),
    (_NFC_E, 8), (_NFD_E, 9), ("*", 10),
)
UNUSED_OWNERS: Final[tuple[str, ...]] = ("?", "%", "_", "a?", "[a]", "a\\*", "a.*", "a[b]", "\u00c9", " a")

# ---------------------------------------------------------------- ID-3 / TTL-0: invalid arguments
INVALID_IDS: Final[tuple[tuple[str, object], ...]] = (
    ("empty", ""),
    ("257 characters", "x" * 257),
    ("NUL", "\x00"),
    ("embedded NUL", "a\x00b"),
    ("newline", "\n"),
    ("trailing newline", "abc\n"),
    ("tab", "a\tb"),
    ("DEL", "\x7f"),
    ("C1 control NEL", "\x85"),
    ("C1 control U+009F", "a\x9f"),
    ("lone high surrogate", "\ud800"),
    ("lone low surrogate inside", "a\udfffb"),
    ("bytes", b"abc"),
    ("int", 42),
    ("float", 1.5),
    ("bool", True),
    ("list", ["a"]),
)

INVALID_TTLS: Final[tuple[tuple[str, object], ...]] = (
    ("0", 0),
    ("0.0", 0.0),
    ("-0.0", -0.0),
    ("-1", -1),
    ("-0.5", -0.5),
    ("nan", float("nan")),
    ("inf", float("inf")),
    ("-inf", float("-inf")),
    ('"5"', "5"),
    ("True", True),
    ("False", False),
    ("[]", []),
    ("timedelta", timedelta(seconds=5)),
    ("bytes", b"5"),
)

HUGE_TTLS: Final[tuple[tuple[str, float | int], ...]] = (
    # valid numbers whose expiry lies beyond year 9999 (a datetime's range): refused, or kept readable
    ("1e12 (~31,700 years)", 1e12),
    ("3.4e38", 3.4e38),
    ("1.7e308", 1.7e308),
    ("10**400 (an int past a float's range)", 10**400),
)

# ---------------------------------------------------------------- ST-1: round trips
MEBIBYTE: Final = 1024 * 1024


def _nested(levels: int, make: Callable[[Any], Any], leaf: Any) -> Any:
    value = leaf
    for _ in range(levels):
        value = make(value)
    return value


def _mebibyte_state() -> dict[str, Any]:
    """Exactly 1 MiB of compact UTF-8 JSON (§ST-1's limit), mostly multi-byte text like a chat history."""
    turn = {"role": "user", "content": "Grüße, 世界! 😀 " * 8 + "\n\"quoted\" \\ tab\t"}
    state: dict[str, Any] = {"history": [], "pad": ""}
    size = len(dump_json(state).encode())
    step = len(dump_json(turn).encode()) + 1  # the comma
    state["history"] = [turn] * ((MEBIBYTE - size - 64) // step)
    state["pad"] = "x" * (MEBIBYTE - len(dump_json(state).encode()))
    assert len(dump_json(state).encode()) == MEBIBYTE
    return state


class RoundTrip:
    """One ST-1 case. ``at_limit`` cases sit on a spec limit: not also nested deeper by ``append``."""

    def __init__(self, name: str, state: dict[str, Any], *, at_limit: bool = False) -> None:
        self.name = name
        self.state = state
        self.at_limit = at_limit

    def __repr__(self) -> str:
        return self.name


def _round_trips() -> tuple[RoundTrip, ...]:
    return (
        RoundTrip("strings", {
            "empty": "", "nul": "\u0000", "nul inside": "a\u0000b", "astral": "😀\U0010ffff\U0001d11e",
            "backslash": "\\", "quotes": "\"'`", "line separator": "\u2028", "paragraph separator": "\u2029",
            "bom": "\ufeff", "escape lookalikes": "\\u0000 \\n \\\" \\\\", "controls": "\x01\x1f\x7f\x85\x9f",
            "whitespace": "\r\n\t \u00a0", "nfc": _NFC_E, "nfd": _NFD_E, "bidi": "\u202eabc",
            "html": "</script><!--", "sql": "'; DROP TABLE sessions; --", "format": "%s %d {0} ${x}",
            "noncharacters": "\uffff\ufffe", "long": "ab" * 50_000,
        }),
        RoundTrip("special keys", {
            "": "empty key", "$": 1, "..": 2, ".": 3, "__proto__": {"polluted": True}, "constructor": 4,
            "null": None, "true": True, "1": "one", "01": "zero-one", "-0": "minus zero", "a.b": 5, "a[0]": 6,
            "$where": 7, "\u0000": 8, "😀": 9, " ": 10, "key with spaces": 11, _NFC_E: 12, _NFD_E: 13,
            "\\": 14, '"': 15, "\u2028": 16, "id": "not the session id", "version": "not the version",
        }),
        RoundTrip("int64", {
            "zero": 0, "one": 1, "minus one": -1, "2^31": 2**31, "2^32": 2**32, "2^53+1": 2**53 + 1,
            "-(2^53+1)": -(2**53 + 1), "max": INT64_MAX, "min": INT64_MIN, "max-1": INT64_MAX - 1,
            "list": [INT64_MIN, -1, 0, 1, INT64_MAX],
        }),
        RoundTrip("floats", {
            "tenth": 0.1, "one": 1.0, "minus zero": -0.0, "subnormal": 1e-320, "smallest": 5e-324,
            "smallest normal": 2.2250738585072014e-308, "max": 1.7976931348623157e308,
            "-max": -1.7976931348623157e308, "1e16": 1e16, "third": 1 / 3, "2^53 as float": 9007199254740992.0,
            "2^63 as float": 9.223372036854776e18, "negative": -2.5, "pi": 3.141592653589793,
            "0.1+0.2": 0.1 + 0.2,
        }),
        RoundTrip("types kept apart", {
            "true": True, "false": False, "null": None, "int zero": 0, "float zero": 0.0, "int one": 1,
            "float one": 1.0, "string one": "1", "mixed": [0, 0.0, False, None, "", "0", [], {}, 1, 1.0, True],
            "empty dict": {}, "empty list": [], "nested empties": {"a": {}, "b": [[]], "c": [{}]},
        }),
        RoundTrip("64 levels of objects", {"d": _nested(62, lambda v: {"d": v}, {"bottom": 1.0, "flag": True})},
                  at_limit=True),
        RoundTrip("64 levels of arrays", {"l": _nested(62, lambda v: [v], ["bottom"])}, at_limit=True),
        RoundTrip("10,000 keys", {f"k{i}": (i if i % 3 else f"v{i}") for i in range(10_000)}),
        RoundTrip("1 MiB", _mebibyte_state(), at_limit=True),
    )


ROUND_TRIPS: Final = _round_trips()


# ---------------------------------------------------------------- comparisons
def short(value: object, limit: int = 80) -> str:
    text = repr(value)
    return text if len(text) <= limit else f"{text[:limit - 3]}..."


def _kind(value: object) -> str:
    if value is None:
        return "null"
    for name, kind in (("bool", bool), ("int", int), ("float", float), ("str", str), ("array", list),
                       ("object", dict)):
        if isinstance(value, kind):
            return name
    return type(value).__name__


def json_diff(expected: Any, actual: Any, path: str = "$") -> str | None:
    """The first place ``actual`` differs from ``expected`` in value *or JSON type*, or None if equal.

    ``-0.0`` and ``0.0`` count as equal (ST-1 allows it); everything else must be exact.
    """
    want, got = _kind(expected), _kind(actual)
    if want != got:
        return f"at {path}: expected {want} {short(expected)}, got {got} {short(actual)}"
    if isinstance(expected, dict):
        missing = expected.keys() - actual.keys()
        extra = actual.keys() - expected.keys()
        if missing or extra:
            return (f"at {path}: keys differ: missing {short(sorted(missing, key=repr))}, "
                    f"unexpected {short(sorted(extra, key=repr))}")
        for key in expected:
            diff = json_diff(expected[key], actual[key], f"{path}[{key!r}]")
            if diff:
                return diff
        return None
    if isinstance(expected, list):
        if len(expected) != len(actual):
            return f"at {path}: expected {len(expected)} items, got {len(actual)}"
        for i, (a, b) in enumerate(zip(expected, actual, strict=True)):
            diff = json_diff(a, b, f"{path}[{i}]")
            if diff:
                return diff
        return None
    if expected != actual:
        return f"at {path}: expected {short(expected)}, got {short(actual)}"
    return None


def describe_change(want: Session | None, got: Session | None) -> str:
    """What differs between two reads of one session, in a few words."""
    if want is None or got is None:
        return f"expected {'no session' if want is None else 'the session'}, got {short(got)}"
    diff = json_diff(want.state, got.state, "state")
    fields = [f for f in ("id", "owner", "version", "ttl", "created_at", "updated_at", "expires_at")
              if getattr(want, f) != getattr(got, f)]
    return "; ".join(([diff] if diff else []) + [f"{f} {_plain(getattr(want, f))} -> {_plain(getattr(got, f))}"
                                                  for f in fields]) or "changed"


def _plain(value: object) -> str:
    return value.isoformat() if isinstance(value, datetime) else repr(value)


READ_STAMPS: Final = ("updated_at", "expires_at")
"""What a ``get`` that slides the expiry (TTL-2's bug) moves: a re-read cannot tell a change of these apart."""


def _stamps_only(want: Session, got: Session) -> bool:
    """``got`` is ``want`` with updated_at/expires_at moved later, and nothing else changed."""
    if got.updated_at <= want.updated_at:
        return False
    same = replace(got, updated_at=want.updated_at, expires_at=want.expires_at)
    return same == want or repr(same) == repr(want)


async def reads_slide(store: SessionStore, want: Session | None, got: Session | None) -> bool:
    """Two reads of one session differ only in updated_at/expires_at, and ``get`` alone moves them again.

    Then the re-read that was to show "nothing changed" was itself a write (TTL-2: reads must not slide the
    expiry), and the difference says nothing about the call under test."""
    if want is None or got is None or not _stamps_only(want, got):
        return False
    last = got
    for _ in range(3):  # a coarse clock may give two quick reads one stamp: look a few times
        again = await store.get(got.id)
        if again is None:
            return False
        if again.updated_at > last.updated_at and _stamps_only(last, again):
            return True
        last = again
    return False


async def moved_by_reads(store: SessionStore, info: SessionInfo, got: Session | None) -> bool:
    """``got`` shows later updated_at/expires_at than the write that returned ``info``, and reads move them."""
    if got is None or got.updated_at <= info.updated_at:
        return False
    return await reads_slide(store, replace(got, updated_at=info.updated_at, expires_at=info.expires_at), got)


def require_aware(clause_id: str, what: str, *infos: SessionInfo | None) -> None:
    """Premise of comparing timestamps: they are aware UTC datetimes (§4.7, first checked by LC-1). A naive one
    cannot be compared with an aware one at all: that is LC-1's failure, and ``clause_id`` is not checked."""
    for info in infos:
        naive = [f"{name}={moment!r}" for name in ("created_at", "updated_at", "expires_at")
                 if isinstance(moment := getattr(info, name, None), datetime) and moment.tzinfo is None]
        if naive:
            raise ClauseViolation("LC-1", f"could not check {clause_id}: {what} carries naive datetimes "
                                  f"({naive[0]}); every timestamp must be timezone-aware UTC — see LC-1", (clause_id,))


def slid_by_reads(clause_id: str, what: str) -> ClauseViolation:
    """The verdict for a check a read-sliding store made impossible: not checked, see TTL-2."""
    return ClauseViolation("TTL-2", f"could not check {clause_id}: {what}, and get() itself moves updated_at and "
                           "expires_at (a read slid the expiry), so no read can show what the check needs — see "
                           "TTL-2 (reads must not extend the period)", (clause_id,))


async def unless_reads_slide(store: SessionStore, clause_id: str, what: str, want: Session | None,
                             got: Session | None) -> None:
    """Before failing ``clause_id`` on ``want != got``: raise TTL-2's failure instead if reads slide the expiry
    and that is all that differs (a store whose ``get`` is a write fails TTL-2, not every "nothing changed")."""
    if want != got and await reads_slide(store, want, got):
        raise slid_by_reads(clause_id, what)


async def disturbed(store: SessionStore, expected: Mapping[str, Session | None],
                    clause_id: str | None = None) -> list[str]:
    """Every id in ``expected`` that no longer reads back exactly as recorded (None: must be absent).

    ``clause_id``: when every difference is only the read stamps moved by reads themselves, raise
    TTL-2's failure ("could not check ``clause_id``") instead of returning them."""
    got = await asyncio.gather(*(store.get(i) for i in expected))
    changed = [(i, want, have) for (i, want), have in zip(expected.items(), got, strict=True) if have != want]
    if clause_id is not None and changed:
        slid = [await reads_slide(store, want, have) for _, want, have in changed]
        if all(slid):
            raise slid_by_reads(clause_id, f"{len(changed)} sessions re-read with only updated_at/expires_at moved")
    return [f"{i!r}: {describe_change(want, have)}" for i, want, have in changed]


def bullets(lines: list[str], limit: int = 12) -> str:
    """Failure lines as an indented list for an assertion message (the first ``limit`` of them)."""
    shown = "\n  ".join(lines[:limit])
    return f"\n  {shown}" + (f"\n  ... and {len(lines) - limit} more" if len(lines) > limit else "")


async def refusal(label: str, call: Awaitable[object], error: type[BaseException], *,
                  limit: float | None = None, wrong_type: bool = False) -> str | None:
    """None if ``call`` raised ``error`` (within ``limit`` seconds); else one line saying what it did instead.

    ``wrong_type``: the argument is of the wrong type altogether (bytes for an id, a list for a ttl), so a
    TypeError is as clear a refusal as ``error`` (a ValueError). A BackendUnavailable is called out: the
    argument reached the backend before it was validated.
    """
    try:
        async with asyncio.timeout(limit):
            result = await call
    except error:
        return None
    except NotImplementedError:
        raise  # a missing operation is one verdict for the whole run (the plugin says so), not a refusal
    except TypeError as exc:
        if wrong_type:
            return None
        return f"{label}: raised TypeError: {short(str(exc), 60)}, not {error.__name__}"
    except BackendUnavailable:
        return f"{label}: BackendUnavailable, so it reached the backend before being validated"
    except Exception as exc:
        return f"{label}: raised {type(exc).__name__}: {short(str(exc), 60)}, not {error.__name__}"
    return f"{label}: accepted, returned {short(result, 60)}"


async def count_unchanged(store: SessionStore, before: int | None, explain: str, *, no_more: bool = False) -> None:
    """If a count was taken before (``listing`` is claimed), fail with ``explain`` unless count() still gives it.

    ``no_more``: only a rise is this clause's failure (a drop, e.g. expired records swept on access by a
    count that wrongly included them, is LS-2's and TTL-4's business)."""
    if before is not None:
        after = await store.count()
        assert (after <= before) if no_more else (after == before), f"{explain}: count() went from {before} to {after}."


async def raises(error: type[E], call: Awaitable[object], explain: str) -> E:
    """Await ``call`` and return the ``error`` it raised; otherwise fail with ``explain`` and what happened."""
    try:
        result = await call
    except error as exc:
        return exc
    except Exception as exc:
        pytest.fail(f"{explain} It raised {type(exc).__name__}: {exc} instead of {error.__name__}.", pytrace=False)
    pytest.fail(f"{explain} It returned {short(result)} instead of raising {error.__name__}.", pytrace=False)


async def setting_up(clause_id: str, what: str, call: Awaitable[T], see: tuple[str, ...]) -> T:
    """A step that only prepares ``clause_id``'s check: if it fails, the report says so and names the
    clause(s) ``see`` that own the failing behaviour ("could not set up LC-2: ... — see TTL-1"), and
    the verdict goes to them, never to ``clause_id``, whose check did not run."""
    try:
        return await call
    except Exception as exc:
        raise ClauseViolation(see[0], f"could not set up {clause_id}: {what} raised {type(exc).__name__}"
                              f"{': ' + short(str(exc), 80) if str(exc) else ''} — see {' / '.join(see)}",
                              see[1:]) from exc


async def owners_kept(store: SessionStore, clause_id: str, *, listing: bool = False) -> None:
    """Premise of checks that find sessions by owner: create(owner=...) then get() (and count(owner=...), when
    ``listing``) give the owner back. If not, that is LC-1's (or LS-2's) failure, reported as this clause's
    setup: "could not check TTL-2: ... — see LC-1", not a second verdict for the same bug."""
    probe = await store.create({"premise": clause_id}, owner="premise-owner", ttl=600)
    try:
        got = await store.get(probe.id)
        if got is None or got.owner != "premise-owner" or probe.owner != "premise-owner":
            shown = None if got is None else got.owner
            raise ClauseViolation("LC-1", f"could not check {clause_id}, which finds sessions by owner: "
                                  f"create(owner='premise-owner') then get() gives owner {shown!r} — see LC-1")
        if listing and await store.count(owner="premise-owner") != 1:
            raise ClauseViolation("LS-2", f"could not check {clause_id}, which counts sessions by owner: "
                                  "count(owner='premise-owner') right after one create is not 1 — see LS-2",
                                  ("LC-1",))
    finally:
        await store.delete(probe.id)
