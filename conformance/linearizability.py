"""A linearizability checker for the history of one object (CC-6), and Jepsen-style history files.

The search is Wing & Gong's, with Lowe's memoisation, as in Porcupine: walk the history's
call and return events in time order; at a call, try to linearize that operation now
(the model must accept its output); at a return of an operation not yet linearized,
backtrack. A configuration (set of linearized operations, model state) is explored at
most once. The model may be nondeterministic (``step`` returns every possible next
state); the search then runs over *sets* of model states, Porcupine's power-set trick.

An operation whose output is :data:`UNKNOWN` (timed out, cancelled) may take effect at
any point after its call, or never: it has no return event, so it is never forced into
place, and the model must accept any output for it.

Histories also travel as Jepsen/Knossos JSON (``invoke`` then ``ok``/``fail``/``info``),
so they can be kept in a report, re-checked later, or read by elle-cli and knossos.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Hashable, Iterable, Sequence
from dataclasses import dataclass, field
from typing import Any, Final, TypeVar

__all__ = [
    "UNKNOWN",
    "CheckResult",
    "Operation",
    "Unknown",
    "check",
    "from_jepsen",
    "to_jepsen",
]

S = TypeVar("S", bound=Hashable)


class Unknown:
    """The type of :data:`UNKNOWN`: the output of a call whose fate nobody saw."""

    _instance: Unknown | None = None

    def __new__(cls) -> Unknown:
        if cls._instance is None:
            cls._instance = super().__new__(cls)
        return cls._instance

    def __repr__(self) -> str:
        return "UNKNOWN"


UNKNOWN: Final = Unknown()


@dataclass(frozen=True, slots=True)
class Operation:
    """One call in a history: who made it, what it asked, what came back and when (monotonic seconds)."""

    process: int
    input: Any
    output: Any
    """What the call returned or raised (as the model spells it), or UNKNOWN."""
    invoke: float
    response: float
    """When the caller got the answer, or gave up (for UNKNOWN)."""

    @property
    def known(self) -> bool:
        return self.output is not UNKNOWN

    @property
    def deadline(self) -> float:
        """The latest instant the operation can have taken effect."""
        return self.response if self.known else math.inf


Step = Callable[[S, Operation], Iterable[S]]
"""The sequential model: every state the object may be in after ``op`` from ``state``
(empty when the model cannot produce ``op.output`` there)."""


@dataclass(slots=True)
class CheckResult:
    """The verdict. ``ok`` is True, False, or None when the search bound was hit."""

    ok: bool | None
    order: list[int] = field(default_factory=list)
    """On success a linearization; otherwise the longest linearizable prefix found (indices)."""
    stuck: int | None = None
    """On failure: the operation that could not be placed after ``order``."""
    explored: int = 0
    """Model steps taken."""
    reason: str = ""

    def explain(self, history: Sequence[Operation], describe: Callable[[Operation], str] = repr) -> str:
        """A human account of the verdict: the prefix that works and the operation that does not."""
        if self.ok:
            return f"linearizable ({len(history)} operations, {self.explored} model steps)"
        if self.ok is None:
            return f"undecided: {self.reason}"
        lines = [f"not linearizable: {self.reason}",
                 f"longest linearizable prefix ({len(self.order)} of {len(history)} operations):"]
        lines += [f"  #{i}: {describe(history[i])}" for i in self.order]
        if self.stuck is not None:
            lines.append(f"then no order could place #{self.stuck}: {describe(history[self.stuck])}")
        return "\n".join(lines)


@dataclass(eq=False, slots=True)
class _Entry:
    """A call or return event in the doubly linked event list."""

    op: int
    is_call: bool
    time: float
    match: _Entry | None = None  # call -> its return (None when the output is UNKNOWN)
    prev: _Entry | None = None
    next: _Entry | None = None


def _events(history: Sequence[Operation]) -> _Entry:
    """The event list in time order (calls before returns on ties), behind a sentinel head."""
    entries: list[_Entry] = []
    for i, op in enumerate(history):
        call = _Entry(i, True, op.invoke)
        entries.append(call)
        if op.known:
            call.match = _Entry(i, False, op.response)
            entries.append(call.match)
    entries.sort(key=lambda e: (e.time, not e.is_call))
    head = _Entry(-1, True, -math.inf)
    last = head
    for entry in entries:
        last.next, entry.prev, last = entry, last, entry
    return head


def _lift(call: _Entry) -> None:
    """Take a call (and its return) out of the list."""
    for entry in (call, call.match):
        if entry is not None:
            assert entry.prev is not None
            entry.prev.next = entry.next
            if entry.next is not None:
                entry.next.prev = entry.prev


def _unlift(call: _Entry) -> None:
    """Put them back, in reverse order."""
    for entry in (call.match, call):
        if entry is not None:
            assert entry.prev is not None
            entry.prev.next = entry
            if entry.next is not None:
                entry.next.prev = entry


def check(history: Sequence[Operation], init: S, step: Step[S], *, max_steps: int = 200_000) -> CheckResult:
    """Is ``history`` linearizable from ``init`` under ``step``? At most ``max_steps`` model steps.

    One pruning beyond Porcupine's: an operation that fits the current states *without changing
    them* (a read, a refused write) is never a choice point. If any linearization exists from
    here, one exists that places it now (moving a state-preserving operation earlier, to a point
    its call had already reached, breaks neither the model nor real-time order); so if placing
    it leads nowhere, neither does anything else from here. Without this, k concurrent reads
    multiply the failed search by 2**k and a non-linearizable history could not be decided.
    """
    for i, op in enumerate(history):
        if op.known and op.response < op.invoke:
            raise ValueError(f"operation #{i} returned before it was invoked: {op!r}")
    head = _events(history)
    states: frozenset[S] = frozenset({init})
    linearized = 0  # bit i set: operation i is placed
    stack: list[tuple[_Entry, frozenset[S], bool]] = []  # (call placed, states before it, state-preserving)
    seen: set[tuple[int, frozenset[S]]] = set()
    best: list[int] = []
    stuck: int | None = None
    explored = 0
    entry = head.next
    while head.next is not None:
        if entry is not None and entry.is_call:
            explored += 1
            if explored > max_steps:
                return CheckResult(None, best, None, explored,
                                   f"search bound of {max_steps} model steps reached "
                                   f"({len(history)} operations; record fewer or less concurrent ones)")
            after = frozenset(s for state in states for s in step(state, history[entry.op]))
            key = (linearized | 1 << entry.op, after)
            if after and key not in seen:
                seen.add(key)
                stack.append((entry, states, after == states))
                states, linearized = after, key[0]
                _lift(entry)
                entry = head.next
                continue
            if after != states:  # did not fit (or was tried from here before): try the next candidate
                entry = entry.next
                continue
            # a state-preserving fit whose configuration already failed: this configuration fails too
        elif len(stack) >= len(best):  # an operation returned unplaced (or only unplaceable UNKNOWN calls remain)
            best, stuck = [e.op for e, _, _ in stack], None if entry is None else entry.op
        while True:  # undo choices, skipping state-preserving placements (they were never choices)
            if not stack:
                return CheckResult(False, best, stuck, explored, "no order of the operations explains the outputs")
            call, states, preserving = stack.pop()
            linearized &= ~(1 << call.op)
            _unlift(call)
            if not preserving:
                break
        entry = call.next
    return CheckResult(True, [e.op for e, _, _ in stack], None, explored)


# -- Jepsen / Knossos history files ------------------------------------------------------
def _identity(value: Any) -> Any:
    return value


def to_jepsen(history: Sequence[Operation], *, f: Callable[[Any], str],
              encode: Callable[[Any], Any] = _identity,
              failed: Callable[[Any], bool] = lambda output: False) -> list[dict[str, Any]]:
    """Events ``{"process","type","f","value","time"}`` (time in ns from the first call).

    ``f`` names an input's function, ``encode`` makes it JSON, ``failed`` tells a definite
    failure (``fail``) from a success (``ok``); UNKNOWN outputs become ``info``. A process
    that saw ``info`` is retired, as Jepsen requires: its later calls get a fresh process number.
    """
    if not history:
        return []
    origin = min(op.invoke for op in history)
    next_free = max(op.process for op in history) + 1
    alias: dict[int, int] = {}
    events: list[tuple[float, int, dict[str, Any]]] = []
    for op in sorted(history, key=lambda o: o.invoke):
        process = alias.get(op.process, op.process)
        name = f(op.input)
        events.append((op.invoke, 0, {"process": process, "type": "invoke", "f": name,
                                      "value": encode(op.input), "time": round((op.invoke - origin) * 1e9)}))
        kind = "info" if not op.known else ("fail" if failed(op.output) else "ok")
        value = None if not op.known else op.output
        events.append((op.response, 1, {"process": process, "type": kind, "f": name, "value": value,
                                        "time": round((op.response - origin) * 1e9)}))
        if not op.known:
            alias[op.process], next_free = next_free, next_free + 1
    events.sort(key=lambda e: (e[0], e[1]))
    for index, (_, _, event) in enumerate(events):
        event["index"] = index
    return [event for _, _, event in events]


def from_jepsen(events: Iterable[dict[str, Any]], *,
                decode: Callable[[Any], Any] = _identity) -> list[Operation]:
    """The operations of a Jepsen history: each invoke paired with its process's next completion.

    The completion's value is the output (for ``fail`` too); ``info`` and a missing
    completion mean UNKNOWN. ``decode`` turns an invoke's value back into an input.
    """
    history: list[Operation] = []
    open_calls: dict[Any, tuple[Any, float]] = {}
    for event in sorted(events, key=lambda e: (e["time"], e.get("index", 0))):
        process, time = event["process"], event["time"] / 1e9
        if event["type"] == "invoke":
            if process in open_calls:
                raise ValueError(f"process {process} invoked twice without a completion")
            open_calls[process] = (decode(event["value"]), time)
            continue
        if process not in open_calls:
            raise ValueError(f"process {process} completed an operation it never invoked: {event}")
        inp, start = open_calls.pop(process)
        output = UNKNOWN if event["type"] == "info" else event["value"]
        history.append(Operation(int(process), inp, output, start, time))
    history += [Operation(int(p), inp, UNKNOWN, start, math.inf) for p, (inp, start) in open_calls.items()]
    return history
