"""Which clause a step the sequential model cannot explain breaks.

The model (model.py) knows every output the contract allows for a call; when a store's
output is none of them, this module names the one rule that output breaks, so the
model-based test fails one clause, not the nine it exercises. It compares the output
with the closest allowed one (same kind: both errors of one name, both sessions, ...)
and reads the difference in the contract's terms: a missing ``SessionNotFound`` on a
deleted id is LC-3, a version that moved on ``touch`` is VER-1, an expired session still
readable is TTL-1, a refused valid value is ST-1, an accepted invalid one ST-2, and so on.

One observation can fit more than one rule (a session read back after its ttl breaks
TTL-1, or TTL-2 if reads slid it); the others go in ``alternatives`` and the results
model prefers one that also fails its own dedicated tests.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from .model import Call, Namespace

__all__ = ["Blame", "assign"]


@dataclass(frozen=True, slots=True)
class Blame:
    clause: str
    why: str
    """What the store did wrong, in the clause's terms (one sentence, no final stop)."""
    alternatives: tuple[str, ...] = ()


_ERROR_CLAUSE = {"InvalidSessionId": "ID-3", "InvalidTtl": "TTL-0"}
_EXISTENCE_ERRORS = frozenset({"SessionNotFound", "SessionExists", "VersionConflict"})
"""Errors that need the stored session: raised for an invalid argument, they show validation came after a lookup."""
_ARGUMENT_CLAUSE = {"id": "ID-3", "ttl": "TTL-0", "owner": "ID-2", "expected_version": "MG-2", "key": "ST-2"}


def _error(output: Any) -> str | None:
    if isinstance(output, dict) and "error" in output and "id" not in output:
        name = output["error"]
        return name if isinstance(name, str) else "?"
    return None


def _kind(output: Any) -> str:
    error = _error(output)
    if error is not None:
        return "error:" + error
    if output is None:
        return "none"
    return type(output).__name__


def _containers(value: Any) -> bool:
    """Tuples and sets somewhere inside: ST-1a's subject (other containers refused), not ST-2's."""
    if isinstance(value, tuple | set | frozenset):
        return True
    if isinstance(value, Mapping):
        return any(_containers(v) for v in value.values())
    if isinstance(value, list):
        return any(_containers(v) for v in value)
    return False


def _invalid_value_clause(call: Call) -> tuple[str, tuple[str, ...]]:
    if _containers(call.value):
        return "ST-1a", ("ST-2",)
    return "ST-2", ("ST-1a",)


def _validation(call: Call, bad: Mapping[str, str], output: Any) -> Blame:
    """The call had an invalid argument: it must raise that argument's error, before any backend call (§4.6)."""
    field = "value" if "value" in bad else sorted(bad)[0]
    clause, alternatives = (_invalid_value_clause(call) if field == "value"
                            else (_ARGUMENT_CLAUSE.get(field, "ST-2"), ()))
    wanted = " or ".join(sorted(set(bad.values())))
    got = _error(output)
    if got is None:
        return Blame(clause, f"{call.f} accepted an invalid {field} (it must raise {wanted}, and write nothing)",
                     alternatives)
    if field == "value":  # an ordering bug (validation after the lookup), whatever the value: ST-2's rule
        clause, alternatives = "ST-2", ("ST-1a",)
    elif got in _EXISTENCE_ERRORS:  # the same ordering bug met through another argument: ST-2 owns the suite's
        clause, alternatives = "ST-2", (clause,)  # dedicated "validation before existence" test (§4.6)
    return Blame(clause, f"{call.f} with an invalid {field} raised {got}, not {wanted}: arguments are validated "
                 "before anything else, existence included (spec §4.6)", alternatives)


def _expired(states: Iterable[Namespace], id: Any) -> bool:
    """The id still has a record in some model state: it is gone (in this world) by expiry, not by delete."""
    return any(id in ns.sessions for ns in states)


def _ttl_of(states: Iterable[Namespace], id: Any) -> float | None:
    return next((ns.sessions[id].ttl for ns in states if id in ns.sessions), None)


def _vanished(call: Call, states: Sequence[Namespace], log: Sequence[Call]) -> Blame:
    """The store lost a session the model holds live."""
    from .model import _validated

    refused = _validated(log[-1])[1] if log and log[-1].f == "create" else {}
    if refused:  # an invalid create is refused whatever the id holds, so it cannot be what made the session
        errors = ", ".join(sorted(set(refused.values())))
        return Blame("LC-2", f"{call.f}({call.id!r}) found no session right after a create of that live id with an "
                     f"invalid {', '.join(sorted(refused))}: the create must raise {errors} and leave the live "
                     "session as it was, never delete or replace it",
                     ("TTL-1", *(_ARGUMENT_CLAUSE.get(f, "ST-2") for f in sorted(refused))))
    if _ttl_of(states, call.id) is None:
        return Blame("TTL-3", f"{call.f}({call.id!r}) found no session although it was made permanent (ttl=None) "
                     "and never deleted", ("LC-3", "TTL-1"))
    written = [c for c in log if c.f in ("save", "apply", "append", "touch")]
    if written:
        return Blame("TTL-2", f"{call.f}({call.id!r}) found no session although a write "
                     f"({written[-1]}) restarted its period and the new period had not run out", ("TTL-1", "TTL-3"))
    return Blame("TTL-1", f"{call.f}({call.id!r}) found no session before its ttl ran out", ("TTL-2", "TTL-3"))


def _lingered(call: Call, what: str) -> Blame:
    return Blame("TTL-1" if call.f == "get" else "TTL-4",
                 f"{what}: its ttl ran out (plus the 0.25 s grace) before the call", ("TTL-4", "TTL-2", "TTL-1"))


def _numbers_only_differ(expected: Any, observed: Any) -> bool:
    """Same shape and keys, and every difference is between two numbers (a float rounded, 1.0 turned into 1)."""
    if isinstance(expected, bool) or isinstance(observed, bool):  # a bool is no number here: True == 1 differs
        return type(expected) is type(observed) and expected == observed
    if isinstance(expected, int | float) and isinstance(observed, int | float):
        return True
    if isinstance(expected, dict) and isinstance(observed, dict):
        return expected.keys() == observed.keys() and all(_numbers_only_differ(expected[k], observed[k])
                                                          for k in expected)
    if isinstance(expected, list) and isinstance(observed, list):
        return len(expected) == len(observed) and all(_numbers_only_differ(e, o)
                                                      for e, o in zip(expected, observed, strict=True))
    return bool(expected == observed)


def _state_of(output: Any) -> Any:
    return output.get("state") if isinstance(output, dict) else None


def _session_fields(call: Call, expected: Mapping[str, Any], observed: Mapping[str, Any],
                    world: Namespace, log: Sequence[Call], seen: Sequence[Any]) -> Blame:
    from .model import Matcher, Version, _match

    def same(key: str) -> bool:
        return _match(expected.get(key), observed.get(key), {}) if key in expected else key not in observed

    if not same("id"):
        return Blame("ID-1", f"create() without an id returned {observed.get('id')!r}, an id a live session "
                     "already has (generated ids must be new)", ("CC-1",))
    if not same("owner"):
        return Blame("LC-1", f"{call} returned owner {observed.get('owner')!r}, not {expected.get('owner')!r}")
    if not same("ttl"):
        return Blame("TTL-3", f"{call} returned ttl {observed.get('ttl')!r}, not {expected.get('ttl')!r} "
                     "(KEEP keeps the period, None makes permanent, a number sets a new one)", ("LC-1",))
    if "state" in expected and not same("state"):
        state = observed.get("state")
        if any(state == rec.data() for other, rec in world.sessions.items() if other != call.id and rec.data()):
            return Blame("CC-5", f"{call} returned another session's state {state!r}: sessions must stay "
                         "isolated", ("ST-3",))
        if state in seen and state != expected["state"]:
            return Blame("CC-6", f"{call} returned {state!r}, a state the session had before its last write "
                         "(a stale read: every read must see the last write)", ("LC-1", "ST-1"))
        if _numbers_only_differ(expected["state"], state):
            return Blame("ST-1", f"{call} returned state {state!r}, not {expected['state']!r}: numbers changed on the "
                         "way through the store (JSON numbers must round-trip exactly: int64, floats to the last "
                         "bit)", ("LC-1",))
        last = call if call.f != "get" else next((c for c in reversed(log) if c.f != "get"), call)
        if last.f == "apply":
            return Blame("MG-1", f"{call} returned state {state!r}, not {expected['state']!r}, after {last} "
                         "(apply sets and deletes top-level keys, all or nothing)", ("ST-2",))
        if last.f == "append":
            return Blame("MG-5", f"{call} returned state {state!r}, not {expected['state']!r}, after {last} "
                         "(append extends one list, all or nothing)", ("ST-2",))
        return Blame("ST-1", f"{call} returned state {state!r}, not {expected['state']!r} as written by {last} "
                     "(JSON state must round-trip exactly)", ("LC-1", "ST-2"))
    version = expected.get("version")
    if isinstance(version, Matcher) and not same("version"):
        got = observed.get("version")
        if isinstance(version, Version) and got in version.retired:
            return Blame("VER-2", f"{call} returned version {got!r}, which an earlier incarnation of "
                         f"{call.id!r} already had (versions never repeat across incarnations)", ("VER-1",))
        rule = "touch keeps the version" if call.f == "touch" else \
            "a write's version must exceed the previous one" if call.f in ("save", "apply", "append") else \
            "a read returns the version of the last write"
        return Blame("VER-1", f"{call} returned version {got!r}, not {version!r} ({rule})")
    return Blame("LC-1", f"{call} returned {observed!r}, not {expected!r}")


def _classify(call: Call, expected: Any, observed: Any, world: Namespace, states: Sequence[Namespace],
              log: Sequence[Call], seen: Sequence[Any]) -> Blame:
    from .model import OneOf

    want, got = _error(expected), _error(observed)
    if isinstance(expected, dict) and isinstance(expected.get("error"), OneOf):
        want = "?"
    if call.f in ("list", "count", "purge_expired"):
        clause = {"list": "LS-1", "count": "LS-2", "purge_expired": "TTL-5"}[call.f]
        return Blame(clause, f"{call} returned {observed!r}, but the sessions the namespace holds give {expected!r}",
                     ("TTL-4", "LS-1", "LS-2", "ID-2"))
    if want == "SessionExists":
        return Blame("LC-2", f"create({call.id!r}) on a live id did not raise SessionExists (it must never "
                     "overwrite a live session)", ("CC-2",))
    if got == "SessionExists" and call.f == "create":
        if _expired(states, call.id):
            return _lingered(call, f"create({call.id!r}) raised SessionExists for an expired session")
        return Blame("LC-2", f"create({call.id!r}) raised SessionExists for an id whose session was deleted (a "
                     "dead id starts a new incarnation)", ("LC-4",))
    if want == "SessionNotFound":
        if _expired(states, call.id):
            return Blame("TTL-4", f"{call} on an expired session did not raise SessionNotFound (expired sessions "
                         "are invisible to writes; no upsert)", ("LC-3", "TTL-1"))
        return Blame("LC-3", f"{call} on a missing or deleted id did not raise SessionNotFound (no upsert)",
                     ("TTL-4",))
    if want == "VersionConflict" or got == "VersionConflict":
        did = "did not raise VersionConflict" if got != "VersionConflict" else "raised VersionConflict"
        return Blame("MG-2", f"{call} {did}, but the session's version is "
                     f"{world.describe(call.id)['version'] if call.id in world.sessions else '?'}", ("VER-1",))
    if want == "InvalidState" and call.f == "append":
        return Blame("MG-5", f"{call} onto a non-list did not raise InvalidState", ("ST-2",))
    if got == "InvalidState":
        clause = {"apply": "MG-1", "append": "MG-5"}.get(call.f, "ST-1")
        return Blame(clause, f"{call} raised InvalidState for a valid JSON value", ("ST-1", "ST-1a"))
    if got in _ERROR_CLAUSE:
        return Blame(_ERROR_CLAUSE[got], f"{call} raised {got} for a valid argument")
    if got == "SessionNotFound" or (call.f in ("get", "delete") and observed in (None, False) and want is None
                                    and expected not in (None, False)):
        return _vanished(call, states, log)
    if call.f == "get" and expected is None and observed is not None:
        if _expired(states, call.id):
            return _lingered(call, f"get({call.id!r}) returned a session that had expired")
        return Blame("LC-4", f"get({call.id!r}) returned a session that was deleted", ("LC-3",))
    if call.f == "delete" and expected is False and observed is True:
        if _expired(states, call.id):
            return _lingered(call, f"delete({call.id!r}) returned True for an expired session")
        return Blame("LC-4", f"delete({call.id!r}) returned True, but no live session had that id")
    if isinstance(expected, dict) and isinstance(observed, dict) and want is None and got is None:
        return _session_fields(call, expected, observed, world, log, seen)
    return Blame("LC-1", f"{call} returned {observed!r}, not {expected!r}")


def assign(call: Call, output: Any, at: tuple[float, float], states: Iterable[Namespace],
           log: Sequence[Call] = (), seen: Sequence[Any] = ()) -> Blame:
    """The clause ``output`` breaks, given the model ``states`` the store may have been in.

    ``log`` lists the earlier calls on this id (oldest first), ``seen`` the states it returned.
    """
    from .model import _resolve_expiry, _validated, predict

    fixed, bad = _validated(call)
    if bad:
        return _validation(call, bad, output)
    got = _error(output)
    if got == "InvalidState" and call.f in ("create", "save"):
        return Blame("ST-1", f"{call} raised InvalidState for valid JSON state", ("ST-1a", "ST-2"))
    pool = list(states)
    pairs = []
    for ns in pool:
        ids = sorted(ns.sessions) if call.f in ("list", "count", "purge_expired") else \
            [] if fixed.id is None else [fixed.id]
        for world in _resolve_expiry(ns, ids, at):
            for _after, expected in predict(world, call, at):
                pairs.append((world, expected))
    if not pairs:
        return Blame("LC-1", f"{call} returned {output!r}, which no model state allows")
    kind = _kind(output)
    world, expected = next(((w, e) for w, e in pairs if _kind(e) == kind), pairs[0])
    return _classify(fixed, expected, output, world, pool, log, seen)
