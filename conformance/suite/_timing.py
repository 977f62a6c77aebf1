"""Measured time windows for the expiry clauses: verdicts from timestamps, never from sleep and hope.

A write takes effect somewhere inside its call, ``[start, end]`` on ``time.monotonic``, and
so does a read (docs/spec.md §6). So a session written with period ``ttl``

- MUST be seen by a read that *returned* before ``write.start + ttl`` (even the latest read
  instant is inside the period), and
- MUST NOT be seen by a read that *began* at or after ``write.end + ttl + GRACE``.

A read in between is inconclusive: the trial raises :class:`Inconclusive` and
:func:`retrying` runs it again with a 4x longer period, up to three trials; inconclusive
every time is "not checked" (a skip naming how slow the calls were), never a pass or a
failure. Only durations are compared, so clock offset between the suite and the backend
never matters. Waiting *for* a deadline is fine;
what this module never does is sleep and hope a race went one way.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Awaitable, Callable, Iterable
from dataclasses import dataclass
from datetime import datetime, timedelta
from types import TracebackType
from typing import Final, TypeVar

import pytest

from sessionspec.conformance.contract import Session, SessionInfo, SessionNotFound, SessionStore
from sessionspec.conformance.results import ClauseViolation

from ._values import reads_slide, slid_by_reads

__all__ = [
    "CLOCK_TOLERANCE",
    "GRACE",
    "RETRY_FACTOR",
    "SHORT_TTL",
    "TRIALS",
    "Inconclusive",
    "Span",
    "Stopwatch",
    "check_stamps",
    "dead_from",
    "gather_all",
    "judge",
    "look",
    "retrying",
    "sleep_until",
    "timed",
    "verdict",
    "within",
    "write_while_live",
]

T = TypeVar("T")

GRACE: Final = 0.25
"""TTL-1: a session must be invisible from ttl + 0.25 s after its last write on."""
RETRY_FACTOR: Final = 4.0
"""An inconclusive trial is repeated with periods this many times longer than the last."""
TRIALS: Final = 3
"""Trials before an expiry check gives up as "not checked" (0.4 s, 1.6 s, 6.4 s for TTL-1)."""
SHORT_TTL: Final = 0.3
"""The period for sessions a test only needs *certainly expired* (no visibility window to hit)."""
CLOCK_TOLERANCE: Final = 60.0
"""§6 coarse clock sanity: store timestamps agree with the suite's wall clock within 60 s.
That catches any time-zone error (the smallest offset is far larger) but not ordinary skew."""
STAMP_RESOLUTION: Final = 0.001
"""§4.7: timestamps may be as coarse as 1 ms; expires_at == updated_at + ttl holds to within it."""
_WAKE_MARGIN: Final = 0.001
_FLOAT_SLACK: Final = 2e-6  # datetime has microseconds; two roundings of a float timestamp


class Inconclusive(Exception):
    """A measured call landed outside the window it was meant to probe (a slow call, a busy machine)."""


@dataclass(frozen=True, slots=True)
class Span:
    """Where a call ran: monotonic ``start``/``end`` for durations, wall clock for timestamp sanity."""

    start: float
    end: float
    wall_start: float
    wall_end: float

    @property
    def seconds(self) -> float:
        return self.end - self.start

    @staticmethod
    def cover(spans: Iterable[Span]) -> Span:
        """The smallest span containing all of ``spans`` (a group of concurrent writes)."""
        items = list(spans)
        return Span(min(s.start for s in items), max(s.end for s in items),
                    min(s.wall_start for s in items), max(s.wall_end for s in items))


class Stopwatch:
    """``with Stopwatch() as sw: await call`` records the call's interval, even when it raises."""

    def __enter__(self) -> Stopwatch:
        self._wall_start = time.time()
        self._start = time.monotonic()
        return self

    def __exit__(self, exc_type: type[BaseException] | None, exc: BaseException | None,
                 tb: TracebackType | None) -> None:
        self._end = time.monotonic()
        self._wall_end = time.time()

    @property
    def span(self) -> Span:
        return Span(self._start, self._end, self._wall_start, self._wall_end)


async def timed(awaitable: Awaitable[T]) -> tuple[T, Span]:
    """Await ``awaitable`` and return its result with the interval it ran in."""
    with Stopwatch() as sw:
        result = await awaitable
    return result, sw.span


async def sleep_until(deadline: float) -> None:
    """Wait until ``time.monotonic()`` has passed ``deadline`` (a hair over: the loop may wake a hair early).

    Verdicts never trust this wait; they use the measured span of the call that follows it.
    """
    await asyncio.sleep(max(0.0, deadline - time.monotonic()) + _WAKE_MARGIN)


def dead_from(write: Span, ttl: float) -> float:
    """The monotonic instant from which a session last written in ``write`` must be invisible."""
    return write.end + ttl + GRACE


def verdict(write: Span, ttl: float, read: Span) -> bool | None:
    """True: the read must see the session; False: it must not; None: inconclusive."""
    if read.end < write.start + ttl:
        return True
    if read.start >= dead_from(write, ttl):
        return False
    return None


EARLY_HINT: Final = ("Periods rounded down to whole seconds (EXPIRE with int(ttl)) or an application clock mixed "
                      "with the database clock cause this.")
LATE_HINT: Final = ("Expired data must be filtered on every read, not left to a lazy sweep or native expiry "
                     "alone; a period rounded up to whole seconds also causes this.")


def judge(clause: str, what: str, write: Span, ttl: float, read: Span, seen: bool, *, want: bool | None,
          hint: str = "") -> None:
    """Fail if a conclusive read contradicts the period; raise Inconclusive if it was not the probe wanted.

    ``want`` is which side of the window the caller meant to probe (None: either is fine);
    ``hint`` says what usually causes a failure of this particular probe.
    """
    must = verdict(write, ttl, read)
    if must is True and not seen:
        pytest.fail(
            f"{clause}: {what}: the session (ttl={ttl:g} s) was already invisible "
            f"{read.end - write.start:.3f} s after its last write began; it must stay visible until ttl "
            f"after its last write. {hint or EARLY_HINT}",
            pytrace=False,
        )
    if must is False and seen:
        pytest.fail(
            f"{clause}: {what}: the session (ttl={ttl:g} s) was still visible {read.start - write.end:.3f} s "
            f"after its last write returned; it must be invisible from ttl + {GRACE:g} s on. {hint or LATE_HINT}",
            pytrace=False,
        )
    if want is not None and must is not want:
        side = "inside the period" if want else f"past ttl + {GRACE:g} s"
        raise Inconclusive(
            f"{what}: the probe meant to land {side} ran {read.start - write.end:.3f}..{read.end - write.start:.3f} s "
            f"after the write (ttl {ttl:g} s); calls took up to {max(read.seconds, write.seconds):.3f} s"
        )


async def look(store: SessionStore, id: str, write: Span, ttl: float, *, at: float, want: bool | None,
               clause: str, what: str, hint: str = "") -> Session | None:
    """``get`` the session at monotonic time ``at`` and judge the answer against the period."""
    await sleep_until(at)
    got, read = await timed(store.get(id))
    if got is not None and clause != "TTL-2" and verdict(write, ttl, read) is False \
            and await reads_slide(store, got, await store.get(id)):
        raise slid_by_reads(clause, f"{what}: the session (ttl={ttl:g} s) was still visible "
                            f"{read.start - write.end:.3f} s after its last write returned")
    # HY-2 keeps its own: there the period is right and the read compares it on the wrong clock (its very bug)
    if got is not None and clause not in ("TTL-1", "HY-2") and verdict(write, ttl, read) is False \
            and got.expires_at is not None and got.expires_at.timestamp() + GRACE <= read.wall_start:
        # the store's own expires_at had passed: the period was right, the read showed an expired session
        late = read.wall_start - got.expires_at.timestamp()
        raise ClauseViolation("TTL-1", f"{clause}: {what}: get() returned a session whose own expires_at "
                              f"({got.expires_at.isoformat()}) had passed {late:.3f} s before: an expired session "
                              "must be invisible from ttl + 0.25 s on — see TTL-1", (clause,))
    judge(clause, what, write, ttl, read, got is not None, want=want, hint=hint)
    return got


async def write_while_live(clause: str, what: str, call: Awaitable[T], since: Span, ttl: float) -> tuple[T, Span]:
    """Await a write on a session last written in ``since`` with period ``ttl``, and measure it.

    SessionNotFound fails the test only if the session was certainly still live; a write that
    may have started after the deadline makes the trial inconclusive instead.
    """
    sw = Stopwatch()
    try:
        with sw:
            result = await call
    except SessionNotFound:
        judge(clause, f"{what} raised SessionNotFound", since, ttl, sw.span, seen=False, want=True,
              hint="A write to a live session must succeed.")
        raise Inconclusive(f"{clause}: {what} ran when the session may already have expired") from None
    return result, sw.span


def within(clause: str, what: str, span: Span, deadline: float) -> None:
    """Raise Inconclusive unless ``span`` ended before ``deadline`` (a check that only holds until then)."""
    if span.end >= deadline:
        raise Inconclusive(f"{clause}: {what} ended {span.end - deadline:.3f} s after the window it had to fit in")


async def retrying(clause: str, trial: Callable[[float], Awaitable[None]], ttl: float) -> None:
    """Run ``trial(ttl)``; while inconclusive, again with periods RETRY_FACTOR times longer, up to
    TRIALS in all. Inconclusive every time is "not checked" (a skip), never a failure (spec §6:
    a sample that decides nothing is never counted): a correct store on a busy machine, its calls
    slowed by the run's own concurrent traffic, must not be failed for being slow."""
    seen: list[str] = []
    for attempt in range(TRIALS):
        period = ttl * RETRY_FACTOR**attempt
        try:
            await trial(period)
            return
        except Inconclusive as exc:
            seen.append(f"ttl {period:g} s: {exc}")
    pytest.skip(
        f"not checked: {clause}: the timing was inconclusive {TRIALS} times ("
        + "; then ".join(seen)
        + "). The store's calls (or this machine) were too slow for the suite to decide whether expiry is "
        "on time; calls that answer in well under 0.1 s let it decide."
    )


async def gather_all(*aws: Awaitable[object]) -> None:
    """Run concurrent scenarios to the end; a failure beats an inconclusive one, and all failures are told.

    Unlike a bare ``gather`` no scenario is left running when another fails, and a real failure in
    one scenario is never hidden behind another's Inconclusive.
    """
    results = await asyncio.gather(*aws, return_exceptions=True)
    errors = [r for r in results if isinstance(r, BaseException)]
    failures = [e for e in errors if not isinstance(e, Inconclusive)]
    failures = [e for e in failures if not isinstance(e, ClauseViolation)] or failures  # own failures first
    if not failures:
        if errors:
            raise errors[0]
        return
    outcome_types = (AssertionError, pytest.fail.Exception)
    if all(isinstance(e, outcome_types) and not isinstance(e, ClauseViolation) for e in failures) \
            and len(failures) > 1:
        pytest.fail("\n".join(str(e).removeprefix("AssertionError: ") for e in failures), pytrace=False)
    first = failures[0]
    for other in failures[1:]:
        first.add_note(f"also: {type(other).__name__}: {other}")
    raise first


def check_stamps(info: SessionInfo, call: Span, *, clause: str, what: str) -> None:
    """§4.7 on the SessionInfo a write returned: aware UTC, ordered, expires_at = updated_at + ttl, near now."""
    stamps: dict[str, datetime | None] = {
        "created_at": info.created_at, "updated_at": info.updated_at, "expires_at": info.expires_at,
    }
    for name, moment in stamps.items():
        if moment is None and name == "expires_at":
            continue
        if not (isinstance(moment, datetime) and moment.tzinfo is not None and moment.utcoffset() == timedelta(0)):
            # one rule for every SessionInfo (§4.7), checked first on create's (LC-1): the verdict goes there
            raise ClauseViolation(
                "LC-1", f"{clause}: {what}: {name}={moment!r} is not a timezone-aware UTC datetime. Every timestamp "
                "must be aware with utcoffset() == 0; naive or local-time datetimes break expiry as soon as the "
                "server and the client disagree on the zone (google/adk-python#1848).", (clause,))
    assert info.created_at <= info.updated_at, (
        f"{clause}: {what}: created_at {info.created_at} is after updated_at {info.updated_at}; updated_at is "
        "the last write, which can never precede the create."
    )
    if info.ttl is None:
        assert info.expires_at is None, (
            f"{clause}: {what}: ttl is None (never expires) but expires_at is {info.expires_at}; the two must agree."
        )
    else:
        assert info.expires_at is not None, (
            f"{clause}: {what}: ttl is {info.ttl!r} but expires_at is None; expires_at must be updated_at + ttl."
        )
        gap = (info.expires_at - info.updated_at).total_seconds()
        assert abs(gap - info.ttl) <= STAMP_RESOLUTION + _FLOAT_SLACK, (
            f"{clause}: {what}: expires_at - updated_at is {gap:.6f} s but ttl is {info.ttl!r}; expires_at must "
            "be the last write plus the period, to within 1 ms (a period rounded to seconds, or expiry "
            "computed from created_at, shows up here)."
        )
    stamp = info.updated_at.timestamp()
    assert call.wall_start - CLOCK_TOLERANCE <= stamp <= call.wall_end + CLOCK_TOLERANCE, (
        f"{clause}: {what}: updated_at {info.updated_at.isoformat()} is {stamp - call.wall_end:+.1f} s away from "
        f"this process's UTC clock at the time of the call; a write's timestamp must be the (UTC) time it took "
        f"effect. Off by about a time-zone offset means local time was labelled as UTC."
    )
