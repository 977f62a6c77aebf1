"""What a CI gate demands beyond "nothing failed": a required level and required capabilities.

``--require-level core+atomic`` (or ``[tool.sessionspec] require-level``) fails a run whose
store reaches less; ``--require listing`` does the same for one capability. "Reaches" is
strict: every active clause of a required capability must have run and passed. A clause
that was not checked (``n/a``: the suite could not see the backend; ``skip``; no test) does
not reach the level, because a gate that passes on what nobody checked is the failure mode
it exists to prevent. The same holds for any capability the store claims: under a
requirement, a claimed clause that was not checked fails the gate.

Also here: the clauses newer than a pinned spec version (reported, never gated).
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

from . import clauses as registry
from .clauses import Clause
from .results import ClauseResult, RunResult

if TYPE_CHECKING:
    from rich.console import Console

__all__ = ["LEVEL_CAPABILITIES", "GateOptions", "Requirement", "finish", "gate_passes", "newer_clauses",
           "requirement_problems", "summary_preface"]

LEVEL_CAPABILITIES: dict[str, tuple[str, ...]] = {
    "core": ("core",),
    "core+atomic": ("core", "atomic"),
    "full": ("core", "atomic", "listing", "shared", "durable"),
}
SHARED_RUN = "[shared"
"""The parameter id of the suite's cross-process runs (test_concurrency.TOPOLOGIES): `shared` has no
clauses of its own; it holds when those runs passed and nothing failed."""
NOT_CHECKED = ("n/a", "skip", "not-run")


@dataclass(frozen=True, slots=True)
class Requirement:
    """The gate's demand: a level and/or capabilities, and where it came from (for messages)."""

    level: str | None = None
    capabilities: tuple[str, ...] = ()
    source: str = "the command line"

    @property
    def required(self) -> tuple[str, ...]:
        caps = LEVEL_CAPABILITIES[self.level] if self.level else ()
        return tuple(dict.fromkeys((*caps, *self.capabilities)))

    def __bool__(self) -> bool:
        return bool(self.level or self.capabilities)

    def describe(self) -> str:
        parts = [f"level {self.level}"] if self.level else []
        parts += [f"capability {c}" for c in self.capabilities]
        return ", ".join(parts)


def _is_partial(result: RunResult) -> bool:
    return result.selected is not None or bool(getattr(result, "partial", False))


def _clause_problem(c: ClauseResult) -> str | None:
    if c.clause.status != "active" or c.verdict == "pass":
        return None
    why = (c.reason or "").strip().splitlines()[0].removeprefix("not applicable: ") if c.reason else ""
    why = why if len(why) <= 100 else why[:99].rstrip() + "…"
    if c.verdict in NOT_CHECKED:
        return f"{c.clause.id} not checked ({c.verdict}{': ' + why if why else ''})"
    return f"{c.clause.id} {c.verdict}{': ' + why if why else ''}"


def _capability_problems(result: RunResult, clauses: Sequence[ClauseResult], capability: str) -> list[str]:
    mine = [c for c in clauses if c.clause.capability == capability and c.clause.status == "active"]
    if not mine:  # `shared`
        if any(c.failing or c.verdict == "divergence" for c in clauses):
            return ["a clause failed, so nothing is known to hold across instances and processes"]
        if not any(t.status == "passed" and SHARED_RUN in t.name for t in result.tests):
            return ["no cross-process run passed (not checked)"]
        return []
    return [p for p in (_clause_problem(c) for c in mine) if p]


def requirement_problems(result: RunResult, requirement: Requirement) -> list[str]:
    """One line per reason the run does not meet the requirement; empty when it does."""
    if not requirement:
        return []
    if _is_partial(result):
        return [f"{requirement.describe()} is judged on whole runs only; this run was narrowed "
                "(--clause, -k or a replay), so the requirement cannot be met"]
    clauses = result.clauses
    problems: list[str] = []
    for capability in requirement.required:
        if capability not in result.capabilities:
            problems.append(f"{capability}: the store does not claim it")
            continue
        problems += [f"{capability}: {p}" for p in _capability_problems(result, clauses, capability)]
    for capability in sorted(result.capabilities - set(requirement.required)):
        unchecked = [p for c in clauses if c.clause.capability == capability and c.verdict in NOT_CHECKED
                     for p in [_clause_problem(c)] if p]
        problems += [f"{capability} (claimed): {p}" for p in unchecked]
    return problems


def newer_clauses(spec_version: str, known: Iterable[Clause] | None = None) -> list[Clause]:
    """Clauses of later spec versions than the pinned one: listed in reports so an upgrade is a choice."""
    pinned = {c.id for c in registry.clauses_for(spec_version)}
    latest = registry.clauses_for(registry.SPEC_VERSIONS[-1]) if known is None else known
    return [c for c in latest if c.id not in pinned]


@dataclass(frozen=True, slots=True)
class GateOptions:
    """The gate-related settings of one `check` run (flags or [tool.sessionspec])."""

    requirement: Requirement = Requirement()
    baseline: object | None = None
    """The previous RunResult (--baseline), already loaded."""
    baseline_source: str = ""
    report_dir: Path | None = None
    config: str = ""
    """Where [tool.sessionspec] was read from, or empty."""
    explore: bool = False
    """--explore-claims: try the unclaimed capabilities' clauses in a second run."""


def gate_passes(result: RunResult, options: GateOptions) -> bool:
    """The run passed and the gate's requirement is met."""
    return result.exit_code == 0 and not requirement_problems(result, options.requirement)


def summary_preface(result: RunResult, options: GateOptions) -> list[str]:
    """Markdown lines said before the clause table: changes since the baseline, unmet requirements,
    clauses of newer spec versions."""
    from .baseline import compare

    lines: list[str] = []
    if isinstance(options.baseline, RunResult):
        lines += compare(options.baseline, result, options.baseline_source).markdown()
    problems = requirement_problems(result, options.requirement)
    if problems:
        lines += [f"### Requirement not met: {options.requirement.describe()} ({options.requirement.source})", "",
                  *(f"- {p}" for p in problems), ""]
    newer = newer_clauses(result.spec_version)
    if newer:
        lines += [f"Pinned to spec {result.spec_version}; newer clauses not checked: "
                  + ", ".join(f"{c.id} ({c.since})" for c in newer), ""]
    return lines


def finish(console: Console, result: RunResult, options: GateOptions,
           rerun: Callable[[Sequence[str], frozenset[str]], RunResult] | None = None) -> int:
    """Say what the gate adds to the printed result, write the report directory, return the exit code.

    rerun(clause_ids, claims) runs the same target again (for --explore-claims)."""
    from rich.text import Text

    from .baseline import compare
    from .exitcodes import EXIT_FAILED

    code = result.exit_code
    if isinstance(options.baseline, RunResult):
        changes = compare(options.baseline, result, options.baseline_source)
        console.print(Text(f"Since {options.baseline_source}: " + "; ".join(
            line.removeprefix("- ") for line in changes.lines()), style="bold" if changes.any else "dim"))
    problems = requirement_problems(result, options.requirement)
    if problems:
        code = max(code, EXIT_FAILED)
        console.print(Text(f"REQUIREMENT NOT MET: {options.requirement.describe()} ({options.requirement.source})",
                           style="bold red"))
        for problem in problems:
            console.print(Text(f"  {problem}", style="red"))
    elif options.requirement:
        console.print(Text(f"Requirement met: {options.requirement.describe()} ({options.requirement.source})",
                           style="green"))
    for line in claim_problems(result):
        console.print(Text(f"Claim check: {line}", style="red"))
    if options.explore and rerun is not None and explorable(result):
        from .contract import CAPABILITIES

        # `shared` is tried only with its own clauses' runs, never added: a store built for one
        # process would fail the cross-process variants of clauses it does claim.
        claims = frozenset(CAPABILITIES) - ({"shared"} - result.capabilities)
        explored = rerun(explorable(result), claims)
        could = could_claim(result.capabilities, explored)
        console.print(Text(("You could claim: " + ", ".join(could) + " (every clause of it passed when tried; "
                            "not a failure)") if could else "Unclaimed capabilities tried: none would pass yet.",
                           style="cyan"))
    newer = newer_clauses(result.spec_version)
    if newer:
        console.print(Text(f"Pinned to spec {result.spec_version}; newer clauses not checked: "
                           + ", ".join(f"{c.id} ({c.since})" for c in newer), style="dim"))
    if options.config:
        console.print(Text(f"Settings from {options.config}", style="dim"))
    if code != 0 and options.report_dir is not None and (result.failures or result.errors):
        from .report.directory import write_report_dir

        write_report_dir(result, options.report_dir)
        console.print(Text(f"Failure report: {options.report_dir}/ (re-run it: sessionspec recheck "
                           f"{options.report_dir})", style="bold"))
    return code


# -- two-sided capabilities ---------------------------------------------------------------
STRUCTURAL: tuple[tuple[str, str, str], ...] = (
    ("atomic", "MG-2", "the store claims 'atomic' but does not honour expected_version (MG-2 fails: a stale "
                       "version is accepted). Implement the compare-and-set, or stop claiming 'atomic'."),
    ("durable", "FL-3", "the store claims 'durable' but its sessions do not survive a backend restart (FL-3). "
                        "Persist them, or stop claiming 'durable'."),
    ("listing", "LS-2", "the store claims 'listing' but count() does not count the live sessions (LS-2). "
                        "Fix list/count, or stop claiming 'listing'."),
)


def claim_problems(result: RunResult) -> list[str]:
    """One precise line per claim the store structurally lacks, instead of a pile of failing clauses."""
    verdicts = {c.clause.id: c.verdict for c in result.clauses}
    lines = [why for capability, cid, why in STRUCTURAL
             if capability in result.capabilities and verdicts.get(cid) == "fail"]
    if "shared" in result.capabilities:
        def base(name: str) -> str:
            return name.split("[", 1)[0]

        failed_shared = {base(t.name) for t in result.tests if SHARED_RUN in t.name and t.status in ("failed", "error")}
        passed_alone = {base(t.name) for t in result.tests if SHARED_RUN not in t.name and t.status == "passed"}
        if failed_shared and failed_shared <= passed_alone:
            lines.append("the store claims 'shared' but its concurrency clauses fail only across instances and "
                         "processes: instances do not share state (a per-instance cache or lock?). Share it, or "
                         "stop claiming 'shared'.")
    return lines


def explorable(result: RunResult) -> list[str]:
    """Active clause IDs of the capabilities the store does not claim (`shared` has none of its own)."""
    return [c.clause.id for c in result.clauses
            if c.clause.capability not in result.capabilities and c.clause.status == "active"]


def could_claim(declared: frozenset[str], explored: RunResult) -> list[str]:
    """Unclaimed capabilities whose every active clause passed (or n/a, one at least passed) when tried."""
    found = []
    for capability in sorted({c.clause.capability for c in explored.clauses} - declared):
        mine = [c for c in explored.clauses if c.clause.capability == capability and c.clause.status == "active"]
        if mine and all(c.verdict in ("pass", "n/a") for c in mine) and any(c.verdict == "pass" for c in mine):
            found.append(capability)
    return found
