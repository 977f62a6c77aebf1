"""``--baseline PREV.json``: what changed since the last run, said first in the summary.

A gate that only says FAIL makes every reviewer diff two reports by hand; this compares
clause verdicts with a previous JSON report (verdicts recomputed by this version, never
trusted from the file) and names the clauses newly failing, newly passing, and a level change.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from .results import FAILING, RunResult

__all__ = ["BaselineError", "Changes", "compare", "load_baseline"]


class BaselineError(Exception):
    """The baseline report cannot be read."""


def load_baseline(path: Path) -> RunResult:
    from .report.json_report import ReportError, load_json_report

    try:
        return load_json_report(path)
    except ReportError as exc:
        raise BaselineError(f"--baseline: {exc}") from None


@dataclass(frozen=True, slots=True)
class Changes:
    """Clause IDs whose verdict moved, and the level before and after."""

    source: str
    newly_failing: tuple[str, ...]
    newly_passing: tuple[str, ...]
    other: tuple[tuple[str, str, str], ...]
    """(clause, before, after) for any other verdict change (e.g. pass -> n/a)."""
    level_before: str
    level_after: str

    @property
    def any(self) -> bool:
        return bool(self.newly_failing or self.newly_passing or self.other or self.level_before != self.level_after)

    def lines(self) -> list[str]:
        """Plain lines (Markdown list items) for the terminal and the summary."""
        out = []
        if self.level_before != self.level_after:
            out.append(f"- Level: {self.level_before} → {self.level_after}")
        if self.newly_failing:
            out.append(f"- Newly failing ({len(self.newly_failing)}): {', '.join(self.newly_failing)}")
        if self.newly_passing:
            out.append(f"- Newly passing ({len(self.newly_passing)}): {', '.join(self.newly_passing)}")
        if self.other:
            out.append("- Other changes: " + ", ".join(f"{c} {a} → {b}" for c, a, b in self.other))
        return out or ["- No clause changed its verdict; the level is unchanged."]

    def markdown(self) -> list[str]:
        return [f"### Since the baseline ({self.source})", "", *self.lines(), ""]


def compare(previous: RunResult, current: RunResult, source: str = "baseline") -> Changes:
    before = {c.clause.id: c.verdict for c in previous.clauses}
    after = {c.clause.id: c.verdict for c in current.clauses}
    failing, passing, other = [], [], []
    for cid, verdict in after.items():
        old = before.get(cid, "absent")
        if old == verdict:
            continue
        if verdict in FAILING and old not in FAILING:
            failing.append(cid)
        elif verdict == "pass" and old != "pass":
            passing.append(cid)
        else:
            other.append((cid, old, verdict))
    return Changes(source, tuple(failing), tuple(passing), tuple(other), previous.level, current.level)
