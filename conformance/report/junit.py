"""JUnit XML for CI test tabs (GitHub, GitLab, Jenkins): one suite per clause family.

Each test appears once per clause it checks, named ``"<CLAUSE-ID> <test name>"`` with
classname ``sessionspec.<FAMILY>``, so a CI tab groups and searches by clause. A known
divergence is shown as skipped ("known divergence: reason"), a stale ledger entry as a
failure; problems outside any test become an ``<error>`` in a ``sessionspec.run`` suite
so the tab is never green when the run was not.
"""

from __future__ import annotations

import xml.etree.ElementTree as ET
from dataclasses import dataclass
from pathlib import Path

from ..results import ClauseResult, RunResult, TestOutcome
from . import clean, family_groups, first_line

__all__ = ["render_junit", "write_junit"]


@dataclass(slots=True)
class _Tally:
    tests: int = 0
    failures: int = 0
    errors: int = 0
    skipped: int = 0
    time: float = 0.0

    def add(self, other: _Tally) -> None:
        self.tests += other.tests
        self.failures += other.failures
        self.errors += other.errors
        self.skipped += other.skipped
        self.time += other.time

    def stamp(self, element: ET.Element) -> None:
        for name in ("tests", "failures", "errors", "skipped"):
            element.set(name, str(getattr(self, name)))
        element.set("time", f"{self.time:.3f}")


def _properties(parent: ET.Element, values: dict[str, str]) -> None:
    props = ET.SubElement(parent, "properties")
    for name, value in values.items():
        ET.SubElement(props, "property", name=name, value=clean(value))


def _outcome_element(case: ET.Element, clause: ClauseResult, test: TestOutcome) -> str:
    """Add <failure>/<error>/<skipped> to the testcase; return which tally it counts in."""
    failed = test.status in ("failed", "error")
    if clause.verdict == "divergence" and failed:
        ET.SubElement(case, "skipped", message=clean(f"known divergence: {clause.reason}"))
        return "skipped"
    if clause.verdict == "stale-divergence" and test.status == "passed":
        element = ET.SubElement(case, "failure", message=first_line(clause.reason), type="stale-divergence")
        element.text = clean(clause.reason)
        return "failures"
    if test.status == "skipped":
        ET.SubElement(case, "skipped", message=clean(test.message))
        return "skipped"
    if failed:
        kind = "error" if test.status == "error" else "failure"
        element = ET.SubElement(case, kind, message=first_line(test.message, 1000), type=test.status)
        element.text = clean(test.details or test.message)
        return "errors" if kind == "error" else "failures"
    return ""


def _family_suite(root: ET.Element, family: str, clauses: list[ClauseResult], result: RunResult) -> _Tally:
    tally = _Tally()
    tested = [c for c in clauses if c.tests]
    if not tested:
        return tally
    suite = ET.SubElement(root, "testsuite", name=f"sessionspec.{family}", timestamp=result.started_at)
    _properties(suite, {
        "target": result.target,
        "spec_version": result.spec_version,
        "capabilities": ",".join(sorted(result.capabilities)),
        "level": result.level,
    })
    for clause in tested:
        for test in clause.tests:
            case = ET.SubElement(suite, "testcase", classname=f"sessionspec.{family}",
                                 name=clean(f"{clause.clause.id} {test.name}"), time=f"{test.duration:.3f}")
            _properties(case, {"clause": clause.clause.id, "capability": clause.clause.capability,
                               "target": result.target})
            counted = _outcome_element(case, clause, test)
            tally.tests += 1
            tally.time += test.duration
            if counted:
                setattr(tally, counted, getattr(tally, counted) + 1)
    tally.stamp(suite)
    return tally


def _errors_suite(root: ET.Element, result: RunResult) -> _Tally:
    tally = _Tally(tests=len(result.errors), errors=len(result.errors))
    if not result.errors:
        return tally
    suite = ET.SubElement(root, "testsuite", name="sessionspec.run", timestamp=result.started_at)
    for n, error in enumerate(result.errors, 1):
        case = ET.SubElement(suite, "testcase", classname="sessionspec.run", name=f"run error {n}", time="0")
        element = ET.SubElement(case, "error", message=first_line(error), type="run-error")
        element.text = clean(error)
    tally.stamp(suite)
    return tally


def render_junit(result: RunResult) -> str:
    root = ET.Element("testsuites", name=clean(f"sessionspec {result.target}"))
    total = _Tally()
    for family, clauses in family_groups(result.clauses):
        total.add(_family_suite(root, family, clauses, result))
    total.add(_errors_suite(root, result))
    total.stamp(root)
    root.set("time", f"{result.duration:.3f}")
    ET.indent(root)
    return '<?xml version="1.0" encoding="UTF-8"?>\n' + ET.tostring(root, encoding="unicode") + "\n"


def write_junit(result: RunResult, path: str | Path) -> None:
    Path(path).write_text(render_junit(result), encoding="utf-8")
