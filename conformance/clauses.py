"""The clause registry: every clause ID with its capability, spec version and one line.

The pytest marker, the capability skips, the report and ``sessionspec check --list``
all read this table, so a clause is declared once. IDs are stable forever; a new
clause gets ``since`` of the spec version that introduced it, so a user who pins
``--spec-version`` never sees their CI gate change underneath them.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import Any, Final, Literal, TypeVar

import pytest

__all__ = [
    "CLAUSES",
    "SPEC_VERSIONS",
    "Clause",
    "clause",
    "clauses_for",
    "get_clause",
]

SPEC_VERSIONS: Final = ("1.0",)

Status = Literal["active", "planned"]


@dataclass(frozen=True, slots=True)
class Clause:
    id: str
    capability: str
    title: str
    since: str = "1.0"
    status: Status = "active"
    """``planned`` clauses are in the spec but their tests arrive with a later release."""

    @property
    def family(self) -> str:
        return self.id.split("-", 1)[0]


def _c(id: str, capability: str, title: str, status: Status = "active") -> Clause:
    return Clause(id, capability, title, status=status)


CLAUSES: Final[tuple[Clause, ...]] = (
    # identity and input
    _c("ID-1", "core", "generated ids: >= 128 random bits, [A-Za-z0-9_-], <= 64 chars"),
    _c("ID-2", "core", "client ids and owners are literal: no pattern, prefix or escape leaks"),
    _c("ID-3", "core", "invalid ids raise InvalidSessionId before any write"),
    _c("ST-1", "core", "JSON state round-trips exactly (strings, int64, floats, depth, size)"),
    _c("ST-1a", "core", "any Mapping in, plain dict/list inside; other containers refused"),
    _c("ST-2", "core", "non-JSON state raises InvalidState naming the path; nothing changes"),
    _c("ST-3", "core", "returned and passed-in state are copies"),
    _c("TTL-0", "core", "ttl is None, KEEP or a finite number > 0; else InvalidTtl"),
    # lifecycle and expiry
    _c("LC-1", "core", "create returns v0; get returns the same state, owner, ttl"),
    _c("LC-2", "core", "create on a live id raises SessionExists; on a dead id it is a new incarnation"),
    _c("LC-3", "core", "writes to a missing/deleted/expired id raise SessionNotFound (no upsert)"),
    _c("LC-4", "core", "delete returns True only for a live session; then get is None"),
    _c("TTL-1", "core", "visible until ttl after the last write, invisible 0.25 s later"),
    _c("TTL-2", "core", "every write slides the expiry; get does not"),
    _c("TTL-3", "core", "KEEP keeps the period, None makes permanent, a number sets a new one"),
    _c("TTL-4", "core", "expired sessions are invisible to get, list, count and writes"),
    _c("TTL-5", "listing", "purge_expired removes only expired sessions and counts them"),
    _c("VER-1", "core", "version strictly increases on save/apply/append; touch keeps it"),
    _c("VER-2", "atomic", "versions never repeat across incarnations (no ABA)"),
    # merge semantics
    _c("MG-1", "atomic", "apply sets and deletes top-level keys, all or nothing"),
    _c("MG-2", "atomic", "a stale expected_version raises VersionConflict; nothing changes"),
    _c("MG-3", "atomic", "parallel branches merge their own changes, in branch order"),
    _c("MG-4", "atomic", "a racing merge commit retries and loses nothing"),
    _c("MG-5", "atomic", "append extends a list atomically; a non-list raises InvalidState"),
    # the reference SessionManager on the store (conformance/manager_support.py)
    _c("MG-6", "core", "get_or_create by composite key: one session for 1000 concurrent callers"),
    _c("MG-7", "atomic", "manager update: 1000 concurrent increments end at exactly 1000"),
    _c("MG-8", "atomic", "per-owner limit: exactly max_active_sessions under 1000 concurrent creates"),
    _c("MG-9", "atomic", "chats: one active chat after concurrent switches; histories lose nothing"),
    _c("MG-10", "core", "the absolute lifetime ends a session however active it is"),
    _c("MG-11", "core", "expiry callbacks run once per ended session per manager instance"),
    _c("MG-12", "atomic", "scoped state: app:/user: shared across sessions, temp: never stored"),
    _c("MG-13", "atomic", "a lease's fencing token stops a holder that outlived its lease"),
    _c("MG-14", "listing", "a sweep costs O(expired), not O(stored): reference stores, by bench/manager.py", "planned"),
    # scenarios: the workflows applications run on a store, through the manager
    _c("SC-1", "core", "chat app: keyed sessions, idle expiry, cleanup loop, resources, shutdown"),
    _c("SC-2", "listing", "conversation store: 1-hour TTL, extend_ttl, listing every session"),
    _c("SC-3", "atomic", "workflow: shared steps, then parallel branches merged deterministically"),
    _c("SC-4", "listing", "SQL-style sessions: expires_at, last_activity, exact request_count, active count"),
    _c("SC-5", "atomic", "a user's sessions, each with chats and one active chat, capped at N"),
    # concurrency
    _c("CC-1", "core", "1000 concurrent creates: 1000 distinct live sessions"),
    _c("CC-2", "core", "1000 concurrent creates of one id: exactly one wins"),
    _c("CC-3", "atomic", "1000 concurrent applies of distinct keys: none lost"),
    _c("CC-4", "atomic", "1000 concurrent CAS increments with retry: final value 1000"),
    _c("CC-5", "core", "1000 sessions under mixed traffic stay isolated"),
    _c("CC-6", "atomic", "a concurrent history on one session is linearizable"),
    _c("CC-7", "atomic", "1000 concurrent appends: every item once, per-task order kept"),
    _c("CC-8", "core", "writes racing a delete or an expiry never bring a session back"),
    # listing
    _c("LS-1", "listing", "list pages through live sessions exactly once; owner filter exact"),
    _c("LS-2", "listing", "count equals the number of live sessions"),
    # failure
    _c("FL-1", "core", "backend down: BackendUnavailable within the timeout, no fallback"),
    _c("FL-2", "core", "backend back: the same store instance works again"),
    _c("FL-3", "durable", "live sessions survive a backend restart"),
    _c("FL-4", "core", "a cancelled operation leaves all or nothing; the store keeps working"),
    # hygiene probes: run when the suite can see the server behind the store
    _c("HY-1", "listing", "list/count use indexes: no KEYS and no unbounded SCAN (Redis)"),
    _c("HY-2", "core", "expiry holds when the database time zone differs from the client's"),
    _c("HY-3", "core", "data and its expiry are written in one step (no immortal leftovers)"),
)

_BY_ID: Final = {c.id: c for c in CLAUSES}


def get_clause(clause_id: str) -> Clause:
    """The registered clause, or KeyError naming the known IDs."""
    try:
        return _BY_ID[clause_id]
    except KeyError:
        raise KeyError(f"unknown clause {clause_id!r}; known: {', '.join(_BY_ID)}") from None


def clauses_for(spec_version: str = SPEC_VERSIONS[-1]) -> Iterator[Clause]:
    """The clauses a given spec version defines, in spec order."""
    if spec_version not in SPEC_VERSIONS:
        raise ValueError(f"unknown spec version {spec_version!r}; known: {', '.join(SPEC_VERSIONS)}")
    order = SPEC_VERSIONS.index(spec_version)
    return (c for c in CLAUSES if SPEC_VERSIONS.index(c.since) <= order)


F = TypeVar("F", bound=Callable[..., Any])


def clause(*clause_ids: str) -> Callable[[F], F]:
    """Mark a suite test with the clause(s) it checks: ``@clause("CC-3")``.

    Unknown IDs fail at import time, so a typo can never silently un-gate a clause.
    """
    for cid in clause_ids:
        get_clause(cid)
    mark = pytest.mark.sessionspec_clause(*clause_ids)

    def decorate(fn: F) -> F:
        return mark(fn)  # type: ignore[no-any-return]

    return decorate
