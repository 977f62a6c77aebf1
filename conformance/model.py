"""The executable sequential model of the contract, for one namespace.

This is docs/spec.md as code: given the sessions a namespace holds, a call, and the
interval of (monotonic) time in which the call ran, :func:`predict` lists every outcome
the contract allows, each a next state plus the output the store must give. The
Hypothesis machine (test_stateful) and the linearizability check (CC-6) both read it.

Three things are deliberately not exact, and the model branches instead of guessing:

* **Versions are opaque.** The store picks v0 and the increments; the model only knows
  a write's version must exceed the previous one (VER-1) and differ from every version
  of earlier incarnations of the id (VER-2). An observed version pins it down.
* **Expiry is uncertain near a deadline.** A session must be visible while even the
  widest gap between its last write and the read is below ttl, and invisible once even
  the narrowest gap reaches ttl + GRACE (TTL-1); in between both outcomes are allowed.
* **Generated ids** are any id not live in the namespace (ID-1 is checked elsewhere).

Outputs are plain JSON (:func:`observe` turns a store's answer or exception into one),
so histories can be stored and replayed. Errors are outputs too, ``{"error": "SessionNotFound"}``:
the model never raises the contract's errors, it predicts them.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field, replace
from typing import Any, Final

from .contract import (
    DELETE,
    KEEP,
    BackendUnavailable,
    Delete,
    InvalidSessionId,
    InvalidState,
    InvalidTtl,
    Keep,
    Session,
    SessionExists,
    SessionInfo,
    SessionNotFound,
    SessionStoreError,
    VersionConflict,
)
from .linearizability import UNKNOWN, Operation
from .results import ClauseViolation
from .validation import (
    validate_changes,
    validate_expected_version,
    validate_id,
    validate_items,
    validate_key,
    validate_owner,
    validate_state,
    validate_ttl,
)

__all__ = [
    "GRACE",
    "Call",
    "ModelMismatch",
    "Namespace",
    "Tracker",
    "describe_operation",
    "is_failure",
    "observe",
    "predict",
    "step",
    "step_operation",
]

GRACE: Final = 0.25
"""TTL-1: a session may linger this long past its deadline (store clocks, lazy expiry)."""

Interval = tuple[float, float]
"""When a call ran: (invoked, returned) on the caller's monotonic clock."""

ERRORS: Final = (SessionNotFound, SessionExists, VersionConflict, InvalidSessionId, InvalidState, InvalidTtl,
                 BackendUnavailable, SessionStoreError)
_NEW: Final = "\x00new"  # where a create without id keeps its session until the store names it


# -- calls and outputs -----------------------------------------------------------------
@dataclass(frozen=True, slots=True)
class Call:
    """One store operation's input as plain data. ``list`` means the whole listing, all pages."""

    f: str
    id: Any = None
    value: Any = None
    """The state (create, save), the changes (apply) or the items (append)."""
    key: Any = None
    owner: Any = None
    ttl: Any = KEEP
    expected_version: Any = None

    def __str__(self) -> str:
        args = [repr(a) for a in (self.id, self.key, self.value) if a is not None]
        args += [f"{k}={v!r}" for k, v in (("owner", self.owner), ("expected_version", self.expected_version))
                 if v is not None]
        args += [] if self.ttl is KEEP else [f"ttl={self.ttl!r}"]
        return f"{self.f}({', '.join(args)})"

    def to_json(self) -> dict[str, Any]:
        """JSON for history files (DELETE and KEEP become ``{"$sentinel": ...}``)."""
        defaults = Call(self.f)
        return {name: _encode(getattr(self, name)) for name in self.__slots__
                if name == "f" or getattr(self, name) is not getattr(defaults, name)}

    @classmethod
    def from_json(cls, data: Mapping[str, Any]) -> Call:
        return cls(**{name: _decode(value) for name, value in data.items()})


def _encode(value: Any) -> Any:
    if isinstance(value, Delete | Keep):
        return {"$sentinel": repr(value)}
    if isinstance(value, Mapping):
        return {k: _encode(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [_encode(v) for v in value]
    return value


def _decode(value: Any) -> Any:
    if isinstance(value, dict):
        if value.keys() == {"$sentinel"}:
            return {"DELETE": DELETE, "KEEP": KEEP}[value["$sentinel"]]
        return {k: _decode(v) for k, v in value.items()}
    if isinstance(value, list):
        return [_decode(v) for v in value]
    return value


_EXPECTABLE: Final = frozenset(cls.__name__ for cls in ERRORS if cls is not SessionStoreError)
"""Errors the contract names for a situation (the model predicts them; outputs stay exactly comparable).
Anything else, the bare SessionStoreError included, is never a predicted output and keeps its message."""
MESSAGE_LIMIT: Final = 300


def _clip(text: str) -> str:
    return text if len(text) <= MESSAGE_LIMIT else text[:MESSAGE_LIMIT - 1] + "…"


def _error_name(exc: BaseException) -> str:
    return next((cls.__name__ for cls in ERRORS if isinstance(exc, cls)), type(exc).__name__)


def observe(result: object) -> Any:
    """A store's answer, or the exception it raised, as the model spells outputs (plain JSON)."""
    if isinstance(result, BaseException):
        out: dict[str, Any] = {"error": _error_name(result)}
        if isinstance(result, VersionConflict):
            out |= {"expected": result.expected, "actual": result.actual}
        elif out["error"] not in _EXPECTABLE:  # no model predicts it: keep what it said, for the failure message
            out["message"] = _clip(f"{type(result).__name__}: {result}")
        return out
    if isinstance(result, SessionInfo):
        info = {"id": result.id, "owner": result.owner, "version": result.version, "ttl": result.ttl}
        return info | {"state": result.state} if isinstance(result, Session) else info
    if isinstance(result, list):
        return [observe(item) for item in result]
    return result


def is_failure(output: Any) -> bool:
    """An error output: the call took no effect (except BackendUnavailable, which the model treats as unknown)."""
    return isinstance(output, dict) and "error" in output and output["error"] != "BackendUnavailable"


# -- matchers: the parts of an expected output the model leaves open -------------------------
class Matcher:
    def match(self, observed: Any, bindings: dict[str, Any]) -> bool:
        raise NotImplementedError


@dataclass(frozen=True, slots=True)
class Version(Matcher):
    """The version of session ``key``: exactly ``value``, or (not exact) any int above it; never a retired one."""

    key: str
    value: int | None
    exact: bool
    retired: frozenset[int] = frozenset()

    def allows(self, v: object) -> bool:
        if not isinstance(v, int) or isinstance(v, bool):
            return False
        if self.exact:
            return v == self.value
        return (self.value is None or v > self.value) and v not in self.retired

    def match(self, observed: Any, bindings: dict[str, Any]) -> bool:
        if not self.allows(observed):
            return False
        bindings[self.key] = observed
        return True

    def __repr__(self) -> str:
        if self.exact:
            return f"{self.value}"
        bound = "any int" if self.value is None else f"an int > {self.value}"
        return bound + (f" not in {sorted(self.retired)} (earlier incarnations)" if self.retired else "")


@dataclass(frozen=True, slots=True)
class FreshId(Matcher):
    """A generated id: any str that names no live session."""

    taken: frozenset[str]

    def match(self, observed: Any, bindings: dict[str, Any]) -> bool:
        if not isinstance(observed, str) or observed in self.taken:
            return False
        bindings["$id"] = observed
        return True

    def __repr__(self) -> str:
        return "<an id no live session has>"


@dataclass(frozen=True, slots=True)
class OneOf(Matcher):
    options: frozenset[Any]

    def match(self, observed: Any, bindings: dict[str, Any]) -> bool:
        return observed in self.options

    def __repr__(self) -> str:
        return " or ".join(sorted(map(repr, self.options)))


@dataclass(frozen=True, slots=True)
class AtMost(Matcher):
    limit: int

    def match(self, observed: Any, bindings: dict[str, Any]) -> bool:
        return isinstance(observed, int) and not isinstance(observed, bool) and 0 <= observed <= self.limit

    def __repr__(self) -> str:
        return f"<0..{self.limit}>"


def _match(expected: Any, observed: Any, bindings: dict[str, Any]) -> bool:
    if isinstance(expected, Matcher):
        return expected.match(observed, bindings)
    if isinstance(expected, dict):
        return (isinstance(observed, dict) and expected.keys() == observed.keys()
                and all(_match(v, observed[k], bindings) for k, v in expected.items()))
    if isinstance(expected, list):
        return (isinstance(observed, list) and len(expected) == len(observed)
                and all(_match(e, o, bindings) for e, o in zip(expected, observed, strict=True)))
    if isinstance(expected, bool) or isinstance(observed, bool):
        return expected is observed
    return bool(expected == observed)


# -- the namespace ---------------------------------------------------------------------------
@dataclass(frozen=True, slots=True)
class Rec:
    """One live incarnation. ``state`` is canonical JSON text, so records are hashable."""

    state: str
    owner: str | None
    version: int | None
    """The version if ``exact``, else a bound it is above (None: no bound yet)."""
    exact: bool
    ttl: float | None
    written: Interval
    """When the last write ran (its effect lies somewhere inside)."""
    seen: frozenset[int] = frozenset()
    """Every version this incarnation has shown (VER-2 retires them with it)."""

    def data(self) -> dict[str, Any]:
        loaded: dict[str, Any] = json.loads(self.state)
        return loaded

    def alive(self, at: Interval) -> bool | None:
        """TTL-1 seen from a call that ran during ``at``: True, False, or None (either is allowed)."""
        if self.ttl is None:
            return True
        if at[1] - self.written[0] < self.ttl:
            return True
        if at[0] - self.written[1] >= self.ttl + GRACE:
            return False
        return None


def _when(at: Interval, ttl: float | None) -> Interval:
    """A permanent session's write time matters to nothing: forget it, so equal states compare equal."""
    return at if ttl is not None else (0.0, 0.0)


def _canon(state: Mapping[str, Any]) -> str:
    return json.dumps(state, sort_keys=True, ensure_ascii=False, allow_nan=False)


@dataclass(frozen=True)
class Namespace:
    """What one namespace holds; immutable (every operation makes a new one)."""

    default_ttl: float | None = None
    """The store's ttl for create(ttl=KEEP); read it from a probe session, never assume it (TTL-3)."""
    sessions: Mapping[str, Rec] = field(default_factory=dict)
    retired: Mapping[str, frozenset[int]] = field(default_factory=dict)
    """Per id, the versions of its dead incarnations (VER-2)."""
    expired: frozenset[str] = frozenset()
    """Ids that expired since the last purge: purge_expired may count at most these (TTL-5)."""
    unique_versions: bool = True
    """Hold the store to VER-2 (an `atomic` clause); off, a new incarnation may reuse old versions."""

    def __hash__(self) -> int:
        return hash((self.default_ttl, frozenset(self.sessions.items()),
                     frozenset(self.retired.items()), self.expired, self.unique_versions))

    def taken(self, id: str) -> frozenset[int]:
        """Versions ``id`` must never show again (VER-2)."""
        return self.retired.get(id, frozenset()) if self.unique_versions else frozenset()

    def put(self, id: str, rec: Rec) -> Namespace:
        return replace(self, sessions={**self.sessions, id: rec}, expired=self.expired - {id})

    def without(self, id: str, *, expired: bool = False) -> Namespace:
        sessions = dict(self.sessions)
        rec = sessions.pop(id)
        retired = {**self.retired, id: self.retired.get(id, frozenset()) | rec.seen}
        return replace(self, sessions=sessions, retired=retired,
                       expired=self.expired | {id} if expired else self.expired)

    def describe(self, id: str, *, state: bool = True, shown_id: Any = None) -> dict[str, Any]:
        """The Session (or, without state, SessionInfo) a store must return for ``id``."""
        rec = self.sessions[id]
        out = {"id": id if shown_id is None else shown_id, "owner": rec.owner,
               "version": Version(id, rec.version, rec.exact, self.taken(id)), "ttl": rec.ttl}
        return out | {"state": rec.data()} if state else out


Outcome = tuple[Namespace, Any]


def _error(name: Any, **attrs: Any) -> dict[str, Any]:
    return {"error": name, **attrs}


# -- the operations --------------------------------------------------------------------------
def _create(ns: Namespace, c: Call, at: Interval) -> list[Outcome]:
    if c.id is not None and c.id in ns.sessions:
        return [(ns, _error("SessionExists"))]
    key = _NEW if c.id is None else c.id
    ttl = ns.default_ttl if c.ttl is KEEP else c.ttl
    rec = Rec(_canon(c.value), c.owner, None, False, ttl, _when(at, ttl))
    after = ns.put(key, rec)
    shown = FreshId(frozenset(ns.sessions)) if c.id is None else None
    return [(after, after.describe(key, shown_id=shown))]


def _get(ns: Namespace, c: Call, at: Interval) -> list[Outcome]:
    return [(ns, ns.describe(c.id) if c.id in ns.sessions else None)]


def _delete(ns: Namespace, c: Call, at: Interval) -> list[Outcome]:
    return [(ns.without(c.id), True)] if c.id in ns.sessions else [(ns, False)]


def _version_check(ns: Namespace, c: Call, rec: Rec) -> list[tuple[Rec, Any]]:
    """MG-2: (the record to write on, None) if the write may go ahead; (rec, conflict) if it may conflict."""
    wanted = c.expected_version
    if wanted is None:
        return [(rec, None)]
    actual = Version(c.id, rec.version, rec.exact, ns.taken(c.id))
    conflict = _error("VersionConflict", expected=wanted, actual=actual)
    if rec.exact:
        return [(rec, None if wanted == rec.version else conflict)]
    # the version is unknown (an UNKNOWN write happened): it may or may not be the expected one
    maybe = [(replace(rec, version=wanted, exact=True), None)] if actual.allows(wanted) else []
    return [(rec, conflict), *maybe]


def _write(ns: Namespace, c: Call, at: Interval, change: Callable[[dict[str, Any]], dict[str, Any]], *,
           bump: bool = True, full: bool = True) -> list[Outcome]:
    """save/apply/append/touch: existence (LC-3), then version (MG-2), then the change (all or nothing)."""
    rec = ns.sessions.get(c.id)
    if rec is None:
        return [(ns, _error("SessionNotFound"))]
    outcomes: list[Outcome] = []
    for base, conflict in _version_check(ns, c, rec):
        if conflict is not None:
            outcomes.append((ns, conflict))
            continue
        try:
            state = change(base.data())
        except InvalidState:
            outcomes.append((ns.put(c.id, base), _error("InvalidState")))
            continue
        ttl = base.ttl if c.ttl is KEEP else c.ttl
        new = replace(base, state=_canon(state), exact=base.exact and not bump, ttl=ttl, written=_when(at, ttl))
        after = ns.put(c.id, new)
        outcomes.append((after, after.describe(c.id, state=full)))
    return outcomes


def _save(ns: Namespace, c: Call, at: Interval) -> list[Outcome]:
    return _write(ns, c, at, lambda old: dict(c.value))


def _apply(ns: Namespace, c: Call, at: Interval) -> list[Outcome]:
    def merge(old: dict[str, Any]) -> dict[str, Any]:
        kept = {k: v for k, v in old.items() if k not in c.value}
        return kept | {k: v for k, v in c.value.items() if v is not DELETE}

    return _write(ns, c, at, merge)


def _append(ns: Namespace, c: Call, at: Interval) -> list[Outcome]:
    def extend(old: dict[str, Any]) -> dict[str, Any]:
        current = old.get(c.key, [])
        if not isinstance(current, list):
            raise InvalidState("not a list")
        return old | {c.key: current + c.value}

    return _write(ns, c, at, extend, full=False)


def _touch(ns: Namespace, c: Call, at: Interval) -> list[Outcome]:
    return _write(ns, c, at, lambda old: old, bump=False, full=False)


def _count(ns: Namespace, c: Call, at: Interval) -> list[Outcome]:
    return [(ns, sum(1 for rec in ns.sessions.values() if c.owner is None or rec.owner == c.owner))]


def _list(ns: Namespace, c: Call, at: Interval) -> list[Outcome]:
    ids = sorted(i for i, rec in ns.sessions.items() if c.owner is None or rec.owner == c.owner)
    return [(ns, [ns.describe(i, state=False) for i in ids])]


def _purge(ns: Namespace, c: Call, at: Interval) -> list[Outcome]:
    return [(replace(ns, expired=frozenset()), AtMost(len(ns.expired)))]


_OPERATIONS: Final[dict[str, Callable[[Namespace, Call, Interval], list[Outcome]]]] = {
    "create": _create, "get": _get, "save": _save, "apply": _apply, "append": _append, "touch": _touch,
    "delete": _delete, "list": _list, "count": _count, "purge_expired": _purge,
}
_WHOLE_NAMESPACE: Final = frozenset({"list", "count", "purge_expired"})


def _checked(c: Call) -> tuple[Call, frozenset[str]]:
    """Validation first (ID-3, ST-2, TTL-0): the normalised call, or every error its arguments allow."""
    fixed, bad = _validated(c)
    return fixed, frozenset(bad.values())


def _validated(c: Call) -> tuple[Call, dict[str, str]]:
    """The normalised call, and per invalid argument the error it must raise."""
    bad: dict[str, str] = {}
    fixed: dict[str, Any] = {}

    def run(name: str, check: Callable[[Any], Any], value: Any) -> None:
        try:
            fixed[name] = check(value)
        except Exception as exc:
            bad[name] = _error_name(exc)

    if c.f not in _OPERATIONS:
        raise ValueError(f"unknown operation {c.f!r}; the model knows {sorted(_OPERATIONS)}")
    if c.f not in _WHOLE_NAMESPACE and (c.f != "create" or c.id is not None):
        run("id", validate_id, c.id)
    if c.f in ("create", "list", "count"):
        run("owner", validate_owner, c.owner)
    if c.f in ("create", "save", "touch"):
        run("ttl", validate_ttl, c.ttl)
    if c.f in ("save", "apply", "append"):
        run("expected_version", validate_expected_version, c.expected_version)
    if c.f in ("create", "save"):
        run("value", validate_state, {} if c.f == "create" and c.value is None else c.value)
    if c.f == "apply":
        run("value", validate_changes, c.value)
    if c.f == "append":
        run("key", validate_key, c.key)
        run("value", lambda items: validate_items(fixed.get("key", ""), items), c.value)
    return replace(c, **fixed), bad


def _resolve_expiry(ns: Namespace, ids: list[str], at: Interval) -> list[Namespace]:
    """The namespaces the call may see: each uncertain session alive in some, expired in others."""
    worlds = [ns]
    for id in ids:
        rec = ns.sessions.get(id)
        alive = None if rec is None else rec.alive(at)
        if rec is None or alive is True:
            continue
        gone = [w.without(id, expired=True) for w in worlds]
        worlds = gone if alive is False else worlds + gone
    return worlds


def predict(ns: Namespace, call: Call, at: Interval) -> list[Outcome]:
    """Every (next namespace, expected output) the contract allows for ``call`` run during ``at``."""
    fixed, errors = _checked(call)
    if errors:
        return [(ns, _error(next(iter(errors))) if len(errors) == 1 else _error(OneOf(errors)))]
    ids = sorted(ns.sessions) if call.f in _WHOLE_NAMESPACE else [] if fixed.id is None else [fixed.id]
    return [outcome for world in _resolve_expiry(ns, ids, at) for outcome in _OPERATIONS[call.f](world, fixed, at)]


def _settle(ns: Namespace, bindings: dict[str, Any]) -> Namespace:
    """Adopt what the store showed: versions it chose, and the id it generated."""
    new_id = bindings.pop("$id", None)
    for id, version in bindings.items():
        rec = ns.sessions[id]
        ns = ns.put(id, replace(rec, version=version, exact=True, seen=rec.seen | {version}))
    if _NEW in ns.sessions:  # a create without id: keep it under the id the store gave (unknown: lose it)
        rec = ns.sessions[_NEW]
        ns = replace(ns, sessions={k: v for k, v in ns.sessions.items() if k != _NEW})
        ns = ns if new_id is None else ns.put(new_id, rec)
    return ns


def _hashable(value: Any) -> Any:
    try:
        hash(value)
    except TypeError:
        return repr(value)
    return value


def _unseen(output: Any) -> bool:
    """UNKNOWN, or BackendUnavailable: the call may or may not have taken effect."""
    return output is UNKNOWN or (isinstance(output, dict) and output.get("error") == "BackendUnavailable")


def step(ns: Namespace, call: Call, at: Interval, output: Any) -> list[Namespace]:
    """The namespaces the store may be in after ``call`` gave ``output`` (empty: the contract forbids it).

    ``output`` UNKNOWN (or BackendUnavailable: the write may or may not have landed) accepts
    every outcome; a linearizability search may also place such a call last, i.e. never.
    """
    if _unseen(output):
        return [_settle(after, {}) for after, _ in predict(ns, call, at)]
    worlds = []
    for after, expected in predict(ns, call, at):
        bindings: dict[str, Any] = {}
        if _match(expected, output, bindings):
            worlds.append(_settle(after, bindings))
    return worlds


def step_operation(ns: Namespace, op: Operation) -> list[Namespace]:
    """:func:`step` for the linearizability checker (an UNKNOWN call may land until forever)."""
    return step(ns, op.input, (op.invoke, op.deadline), op.output)


def describe_operation(op: Operation) -> str:
    output = "UNKNOWN (timed out or cancelled)" if op.output is UNKNOWN else repr(op.output)
    end = "…" if op.output is UNKNOWN else f"{op.response:.6f}"
    return f"process {op.process}: {op.input} -> {output}  [{op.invoke:.6f} .. {end}]"


# -- following a store -------------------------------------------------------------------------
class ModelMismatch(ClauseViolation):
    """The store gave an output no state of the model allows; ``clause`` names the rule it breaks."""

    def __init__(self, message: str, clause: str = "LC-1", alternatives: tuple[str, ...] = ()) -> None:
        super().__init__(clause, message, alternatives)


LOG_DEPTH: Final = 12
"""Calls remembered per id, to tell which rule a mismatch breaks (the last write, an earlier state)."""


class Tracker:
    """Follows one namespace through observed calls, keeping every model state still possible.

    Usually one state; near a ttl deadline two (expired or not) until a read tells them apart.
    """

    def __init__(self, default_ttl: float | None = None, *, unique_versions: bool = True) -> None:
        self.states: frozenset[Namespace] = frozenset({Namespace(default_ttl, unique_versions=unique_versions)})
        self.log: dict[Any, list[Call]] = {}
        self.seen: dict[Any, list[Any]] = {}

    def observe(self, call: Call, at: Interval, output: Any) -> None:
        """Narrow the model to what ``output`` shows, or raise ModelMismatch naming the clause it breaks."""
        after = frozenset(s for ns in self.states for s in step(ns, call, at, output))
        if _unseen(output):
            after |= self.states  # followed one call at a time, an unseen outcome may also be "never happened"
        if not after:
            from .blame import assign

            allowed = {repr(expected) for ns in self.states for _, expected in predict(ns, call, at)}
            key = _hashable(call.id)
            blame = assign(call, output, at, sorted(self.states, key=repr), self.log.get(key, []),
                           self.seen.get(key, []))
            raise ModelMismatch(f"{blame.clause}: {blame.why}.\n{call} returned {output!r}, but the contract "
                                "allows only: " + " | ".join(sorted(allowed)), blame.clause, blame.alternatives)
        self.states = after
        self._remember(call, output)

    def _remember(self, call: Call, output: Any) -> None:
        key = _hashable(call.id)
        if call.f in _WHOLE_NAMESPACE or key is None:
            return
        self.log.setdefault(key, []).append(call)
        del self.log[key][:-LOG_DEPTH]
        if isinstance(output, dict) and "state" in output:
            self.seen.setdefault(key, []).append(output["state"])
            del self.seen[key][:-LOG_DEPTH]

    def ids(self) -> set[str]:
        """Every id that may be live."""
        return {id for ns in self.states for id in ns.sessions}

    def versions(self, id: str) -> set[int]:
        """The versions ``id`` is known to have in some possible state (unknown ones left out)."""
        return {rec.version for ns in self.states if (rec := ns.sessions.get(id)) is not None
                and rec.exact and rec.version is not None}

    def history_versions(self, id: str) -> set[int]:
        """Every version ``id`` has shown, in this and earlier incarnations."""
        return {v for ns in self.states for v in ns.retired.get(id, frozenset())
                | (ns.sessions[id].seen if id in ns.sessions else frozenset())}

