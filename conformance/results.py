"""One result model for a conformance run: test outcomes rolled up into clause verdicts.

The terminal table, JSON, JUnit and Markdown writers all read a :class:`RunResult`,
so they can never disagree. The verdict rules (docs/spec.md, "Verdicts"):
a clause fails if any of its tests fails; passes if at least one passed and none
failed or was kept from checking it by another clause's failure (then it is not checked,
naming that clause); is skipped when all its tests were skipped (``n/a`` when the reason says it
does not apply). A clause in the divergence ledger that fails is a known divergence;
one that passes is a stale entry and fails the run.
"""

from __future__ import annotations

import tomllib
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any, Literal

from .clauses import Clause, clauses_for, get_clause

__all__ = [
    "NOT_APPLICABLE",
    "ClauseResult",
    "ClauseVerdict",
    "ClauseViolation",
    "LedgerError",
    "RunResult",
    "TestOutcome",
    "load_divergences",
]

NOT_APPLICABLE = "not applicable"
NOT_CHECKED = "not checked: "
"""The message of a test outcome kept from checking its clause by another clause's failure."""
"""Skip reasons starting with this mark a clause that cannot apply to the target (FL-1 on memory)."""

TestStatus = Literal["passed", "failed", "skipped", "error"]
ClauseVerdict = Literal[
    "pass", "fail", "skip", "n/a", "divergence", "stale-divergence", "planned", "not-run"
]
FAILING: frozenset[str] = frozenset({"fail", "stale-divergence"})
PARTIAL_LEVEL = "not determined (partial run)"
LEVEL_CAPABILITIES: dict[str, set[str]] = {
    "core": {"core"}, "core+atomic": {"core", "atomic"}, "full": {"core", "atomic", "listing", "shared", "durable"}}
"""What each level vouches for: its not-checked clauses are named beside it."""
MANAGER_CLAUSES: frozenset[str] = frozenset(
    {"MG-3", "MG-4", *(f"MG-{n}" for n in range(6, 15)), *(f"SC-{n}" for n in range(1, 6))})
"""The clauses of the reference SessionManager on the store (test_manager, test_scenarios): not the store's own."""
CATCH_ALL: frozenset[str] = frozenset({"CC-6"})
"""Clauses whose check shows the symptom of many bugs (a non-linearizable history): listed after the clauses
whose own tests name the bug (a lost append is CC-7's, and also leaves a history CC-6 cannot explain)."""
SHARED_RUN = "[shared"
"""The parameter id of the CC tests' cross-process variant (test_concurrency.TOPOLOGIES)."""


class ClauseViolation(AssertionError):
    """A failed check that knows which clause it breaks: the verdict goes to that clause only.

    ``alternatives`` are the other clauses the same observation may break, most likely first
    (an expired session read back breaks TTL-1, or TTL-2 if reads slid it): when one of them
    also fails its own tests, the failure is counted there instead, so one bug is blamed once.
    """

    def __init__(self, clause: str, message: str, alternatives: tuple[str, ...] = ()) -> None:
        super().__init__(message)
        self.clause = clause
        self.alternatives = alternatives

    @property
    def blame(self) -> tuple[str, ...]:
        return (self.clause, *(c for c in self.alternatives if c != self.clause))


class LedgerError(Exception):
    """The divergence ledger file is unreadable or names unknown clauses."""


@dataclass(slots=True)
class TestOutcome:
    """One suite test as it ran."""

    __test__ = False  # a record, not a pytest test class

    nodeid: str
    name: str
    clauses: tuple[str, ...]
    status: TestStatus
    duration: float
    message: str = ""
    """The failure's short explanation, or the skip reason."""
    details: str = ""
    """The longer failure text (assertion diff, traceback tail)."""
    artifacts: dict[str, Any] = field(default_factory=dict)
    blame: tuple[str, ...] = ()
    """For a failure that named the clause it breaks (a ClauseViolation): that clause, then the
    others the same observation may break. Empty: the failure counts against the test's clauses."""


@dataclass(slots=True)
class ClauseResult:
    clause: Clause
    verdict: ClauseVerdict
    tests: list[TestOutcome]
    reason: str = ""
    claimed: bool = True

    @property
    def failing(self) -> bool:
        return self.verdict in FAILING


@dataclass(slots=True)
class RunResult:
    target: str
    description: str
    capabilities: frozenset[str]
    spec_version: str
    tests: list[TestOutcome]
    duration: float
    started_at: str
    divergences: Mapping[str, str] = field(default_factory=dict)
    selected: frozenset[str] | None = None
    """Clause IDs the run was narrowed to (--clause / -k); None means all."""
    errors: list[str] = field(default_factory=list)
    """Problems outside any test (collection errors, internal errors): they fail the run."""
    partial: bool = False
    """Narrowed (--clause, -k, --replay): no level can be determined from it."""

    @property
    def clauses(self) -> list[ClauseResult]:
        by_clause: dict[str, list[TestOutcome]] = {}
        own = self._own_failures()
        for test in self.tests:
            counted = self.counted_against(test, own)
            for cid in counted:
                by_clause.setdefault(cid, []).append(test)
            under = self._store_under_manager(test, own)
            if (test.blame or under) and test.status in ("failed", "error"):
                # blamed on another clause: for its own clauses the test checked nothing
                first = test.message.splitlines()[0] if test.message else ""
                why = f"the store under the manager fails {under} — see {under} ({first})" if under else first
                unchecked = replace(test, status="skipped", blame=(), message=f"{NOT_CHECKED}{why}")
                for cid in test.clauses:
                    if cid not in counted and (self.selected is None or cid in self.selected):
                        by_clause.setdefault(cid, []).append(unchecked)
        return [self._verdict(c, by_clause.get(c.id, [])) for c in clauses_for(self.spec_version)]

    def counted_against(self, test: TestOutcome, own: set[str] | None = None) -> tuple[str, ...]:
        """The clauses whose verdict ``test`` counts in: a clause's verdict comes only from its own tests.

        A failure that names the clause it breaks (the model checks) counts against that one
        clause (or an alternative that also fails its own tests), never against every clause the
        test exercises, and not for them either: the sequence stopped before it proved them. A
        run narrowed by --clause counts a test only for the selected clauses.
        """
        ids = test.clauses
        if test.status in ("failed", "error") and (test.blame or len(ids) > 1 or set(ids) <= MANAGER_CLAUSES):
            own = self._own_failures() if own is None else own
            if test.blame:
                ids = (_resolve(test, own),)
            elif under := self._store_under_manager(test, own):
                ids = (under,)
            else:
                ids = tuple(cid for cid in ids if cid in own) or ids
        if self.selected is not None:
            ids = tuple(cid for cid in ids if cid in self.selected)
        return ids

    def _store_under_manager(self, test: TestOutcome, own: set[str]) -> str | None:
        """For a failed manager test with no blame of its own: the first store clause that fails its own tests.

        The manager clauses check the reference SessionManager *on* the store; it is the code under test
        only while the store keeps its own contract. On a store that already fails a store clause the
        manager test cannot tell its failure from that bug's: it is not checked, and names the clause."""
        if test.blame or test.status not in ("failed", "error") or not set(test.clauses) <= MANAGER_CLAUSES:
            return None
        return next((c.id for c in clauses_for(self.spec_version) if c.id in own and c.id not in MANAGER_CLAUSES),
                    None)

    def _own_failures(self) -> set[str]:
        """Clauses that fail on their dedicated tests (tests that name only them).

        A dedicated test whose failure names another clause (a setup or a re-read spoiled by another
        clause's bug) counts for the clause it is blamed on, not for its own: otherwise one bug that
        spoils many clauses' checks would draw every multi-clause failure onto all of them."""
        failed = [t for t in self.tests if len(t.clauses) == 1 and t.status in ("failed", "error")]
        plain = {t.clauses[0] for t in failed if not t.blame}
        return plain | {_resolve(t, plain) for t in failed if t.blame}

    def _verdict(self, clause: Clause, tests: list[TestOutcome]) -> ClauseResult:
        claimed = clause.capability in self.capabilities
        ledger = self.divergences.get(clause.id)
        if not tests:
            if clause.status == "planned":
                return ClauseResult(clause, "planned", tests, "tests arrive in a later release", claimed)
            why = "not selected in this run" if self.selected is not None or self.partial else \
                "no suite test for this clause"
            return ClauseResult(clause, "not-run", tests, why, claimed)
        failed = sorted((t for t in tests if t.status in ("failed", "error")),
                        key=lambda t: (t.clauses != (clause.id,), len(t.clauses)))
        """Its dedicated tests first: their message says what to fix in this clause's terms."""
        passed = [t for t in tests if t.status == "passed"]
        spoiled = [t for t in tests if t.status == "skipped" and t.message.startswith(NOT_CHECKED)
                   and t.clauses == (clause.id,)]
        """Its dedicated tests that another clause's failure kept from running in full: no pass without them."""
        if failed:
            if ledger is not None:
                return ClauseResult(clause, "divergence", tests, ledger, claimed)
            return ClauseResult(clause, "fail", tests, failed[0].message, claimed)
        if spoiled:
            return ClauseResult(clause, "skip", tests, spoiled[0].message, claimed)
        if passed:
            if ledger is not None:
                return ClauseResult(
                    clause, "stale-divergence", tests,
                    f"listed in the divergence ledger ({ledger!r}) but it passes: remove the stale entry",
                    claimed,
                )
            return ClauseResult(clause, "pass", tests, "", claimed)
        reason = tests[0].message
        verdict: ClauseVerdict = "n/a" if reason.startswith(NOT_APPLICABLE) else "skip"
        return ClauseResult(clause, verdict, tests, reason, claimed)

    @property
    def failures(self) -> list[ClauseResult]:
        """Failing clauses in spec order, the catch-all CC-6 last: the first one shown says what to fix."""
        return sorted((c for c in self.clauses if c.failing), key=lambda c: c.clause.id in CATCH_ALL)

    @property
    def claimed_skips(self) -> list[ClauseResult]:
        """Clauses of a claimed capability that were skipped: worth a warning, never silent."""
        return [c for c in self.clauses if c.verdict == "skip" and c.claimed]

    @property
    def level(self) -> str:
        """``none``, ``core``, ``core+atomic`` or ``full``, naming what it could not check.

        A level is earned only by clauses that ran and passed: an ``n/a`` clause (FL-* without
        backend hooks, HY-* without a view of the server) does not fail it, but is named as not
        checked, e.g. ``core+atomic (FL-1, FL-2, HY-3 not checked)``; ``full`` needs durable,
        listing and shared checked, not merely not failed. A narrowed run earns no level.
        """
        if self.partial or self.selected is not None:
            return PARTIAL_LEVEL
        earned = self.earned_capabilities
        if "core" not in earned:
            return "none"
        name = "core"
        if "atomic" in earned:
            name = "full" if {"listing", "shared", "durable"} <= earned else "core+atomic"
        unchecked = self.unchecked(LEVEL_CAPABILITIES[name])
        return f"{name} ({', '.join(unchecked)} not checked)" if unchecked else name

    @property
    def earned_capabilities(self) -> set[str]:
        """Claimed capabilities that hold: every active clause passed or n/a, and at least one checked."""
        results = self.clauses
        earned = set()
        for capability in self.capabilities:
            mine = [c for c in results if c.clause.capability == capability and c.clause.status == "active"]
            if not mine:
                # `shared` has no clauses of its own: it is the other clauses run across instances and
                # processes, so it holds when nothing failed and those runs happened (not all skipped).
                if not any(c.failing or c.verdict == "divergence" for c in results) and self.shared_runs_passed:
                    earned.add(capability)
                continue
            if all(c.verdict in ("pass", "n/a") for c in mine) and any(c.verdict == "pass" for c in mine):
                earned.add(capability)
        return earned

    @property
    def shared_runs_passed(self) -> bool:
        return any(t.status == "passed" and SHARED_RUN in t.name for t in self.tests)

    def unchecked(self, capabilities: set[str]) -> list[str]:
        """Active clauses of these capabilities that were not checked (n/a, skipped, or no test)."""
        missing = [c.clause.id for c in self.clauses if c.clause.capability in capabilities
                   and c.clause.status == "active" and c.verdict in ("n/a", "skip", "not-run")]
        if "shared" in capabilities and "shared" in self.capabilities and not self.shared_runs_passed:
            missing.append("shared runs")
        return missing

    @property
    def exit_code(self) -> int:
        return 1 if self.failures or self.errors else 0

    def counts(self) -> dict[str, int]:
        tally: dict[str, int] = {}
        for c in self.clauses:
            tally[c.verdict] = tally.get(c.verdict, 0) + 1
        return tally


def _resolve(test: TestOutcome, own: set[str]) -> str:
    """The clause a blamed failure counts against: the first of its blame that fails its own tests, or that
    is the failing test's own clause (a dedicated test's fallback), else the clause it names first."""
    mine = test.clauses if len(test.clauses) == 1 else ()
    return next((c for c in test.blame if c in own or c in mine), test.blame[0])


def load_divergences(path: str | Path) -> dict[str, str]:
    """Read a ledger: TOML with a ``[divergences]`` table of ``"CLAUSE-ID" = "reason"``."""
    try:
        data = tomllib.loads(Path(path).read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise LedgerError(f"divergence ledger {str(path)!r} does not exist") from None
    except (OSError, tomllib.TOMLDecodeError) as exc:
        raise LedgerError(f"divergence ledger {str(path)!r} is not valid TOML: {exc}") from exc
    table = data.get("divergences")
    if not isinstance(table, dict):
        raise LedgerError(
            f'divergence ledger {str(path)!r} needs a [divergences] table of "CLAUSE-ID" = "reason" lines'
        )
    ledger: dict[str, str] = {}
    for cid, reason in table.items():
        try:
            get_clause(cid)
        except KeyError as exc:
            raise LedgerError(f"divergence ledger {str(path)!r}: {exc.args[0]}") from None
        if not isinstance(reason, str) or not reason.strip():
            raise LedgerError(f"divergence ledger {str(path)!r}: {cid} needs a written reason (a non-empty string)")
        ledger[cid] = reason.strip()
    return ledger


def clause_ids(outcomes: Iterable[TestOutcome]) -> set[str]:
    return {cid for t in outcomes for cid in t.clauses}
