"""One result model for a conformance run: test outcomes rolled up into clause verdicts.

The terminal table, JSON, JUnit and Markdown writers all read a :class:`RunResult`,
so they can never disagree. The verdict rules (docs/spec.md, "Verdicts"):
a clause fails if any of its tests fails; passes if at least one passed and none
failed; is skipped when all its tests were skipped (``n/a`` when the reason says it
does not apply). A clause in the divergence ledger that fails is a known divergence;
one that passes is a stale entry and fails the run.
"""

from __future__ import annotations

import tomllib
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

from .clauses import Clause, clauses_for, get_clause

__all__ = [
    "NOT_APPLICABLE",
    "ClauseResult",
    "ClauseVerdict",
    "LedgerError",
    "RunResult",
    "TestOutcome",
    "load_divergences",
]

NOT_APPLICABLE = "not applicable"
"""Skip reasons starting with this mark a clause that cannot apply to the target (FL-1 on memory)."""

TestStatus = Literal["passed", "failed", "skipped", "error"]
ClauseVerdict = Literal[
    "pass", "fail", "skip", "n/a", "divergence", "stale-divergence", "planned", "not-run"
]
FAILING: frozenset[str] = frozenset({"fail", "stale-divergence"})


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

    @property
    def clauses(self) -> list[ClauseResult]:
        # A test naming several clauses (the stateful model check) cannot tell which one its
        # failure breaks. When some of them also fail their own dedicated tests, the failure is
        # explained there, so it counts against those clauses only, not against every one named.
        dedicated_failures = {
            t.clauses[0] for t in self.tests if len(t.clauses) == 1 and t.status in ("failed", "error")
        }
        by_clause: dict[str, list[TestOutcome]] = {}
        for test in self.tests:
            ids = test.clauses
            if len(ids) > 1 and test.status in ("failed", "error") and dedicated_failures & set(ids):
                ids = tuple(cid for cid in ids if cid in dedicated_failures)
            for cid in ids:
                by_clause.setdefault(cid, []).append(test)
        return [self._verdict(c, by_clause.get(c.id, [])) for c in clauses_for(self.spec_version)]

    def _verdict(self, clause: Clause, tests: list[TestOutcome]) -> ClauseResult:
        claimed = clause.capability in self.capabilities
        ledger = self.divergences.get(clause.id)
        if not tests:
            if clause.status == "planned":
                return ClauseResult(clause, "planned", tests, "tests arrive in a later release", claimed)
            why = "no suite test for this clause" if self.selected is None else "not selected in this run"
            return ClauseResult(clause, "not-run", tests, why, claimed)
        failed = [t for t in tests if t.status in ("failed", "error")]
        passed = [t for t in tests if t.status == "passed"]
        if failed:
            if ledger is not None:
                return ClauseResult(clause, "divergence", tests, ledger, claimed)
            return ClauseResult(clause, "fail", tests, failed[0].message, claimed)
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
        return [c for c in self.clauses if c.failing]

    @property
    def claimed_skips(self) -> list[ClauseResult]:
        """Clauses of a claimed capability that were skipped: worth a warning, never silent."""
        return [c for c in self.clauses if c.verdict == "skip" and c.claimed]

    @property
    def level(self) -> str:
        """``none``, ``core``, ``core+atomic`` or ``full`` (every capability claimed and passed)."""
        results = self.clauses

        def holds(capability: str) -> bool:
            if capability not in self.capabilities:
                return False
            mine = [c for c in results if c.clause.capability == capability and c.clause.status == "active"]
            if not mine:
                # `shared` has no clauses of its own: it is the other clauses run across
                # instances and processes, so it holds when nothing at all failed.
                return not any(c.failing or c.verdict == "divergence" for c in results)
            return all(c.verdict in ("pass", "n/a") for c in mine) and any(c.verdict == "pass" for c in mine)

        if not holds("core"):
            return "none"
        if not holds("atomic"):
            return "core"
        if all(holds(cap) for cap in ("listing", "shared", "durable")):
            return "full"
        return "core+atomic"

    @property
    def exit_code(self) -> int:
        return 1 if self.failures or self.errors else 0

    def counts(self) -> dict[str, int]:
        tally: dict[str, int] = {}
        for c in self.clauses:
            tally[c.verdict] = tally.get(c.verdict, 0) + 1
        return tally


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
