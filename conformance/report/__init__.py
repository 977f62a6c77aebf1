"""Report writers: one :class:`~sessionspec.conformance.results.RunResult`, four renderings.

Each writer module has a pure ``render_X(result) -> str`` and ``write_X(result, path)``:
``terminal`` (the rich table the CLI prints), ``json_report`` (machine-readable, and
``load_json_report`` reads it back into a RunResult), ``junit`` (CI test tabs) and
``markdown`` (``$GITHUB_STEP_SUMMARY``). The JSON module is not called ``json.py``: inside
this package that name would rebind ``report.json`` over the standard library module for
anyone doing ``from . import json`` and confuses tools that run files by path.

This module holds the small helpers they share, so the four agree on words and families.
"""

from __future__ import annotations

import re
from collections.abc import Iterator

from ..results import ClauseResult, RunResult

__all__ = [
    "VERDICT_LABELS",
    "VERDICT_ORDER",
    "clean",
    "family_groups",
    "first_line",
    "not_checked_note",
    "not_run_ids",
    "shown_clauses",
    "summary_line",
    "verdict_counts",
]

VERDICT_LABELS: dict[str, str] = {
    "pass": "pass",
    "fail": "FAIL",
    "skip": "skip",
    "n/a": "n/a",
    "divergence": "divergence",
    "stale-divergence": "stale",
    "planned": "planned",
    "not-run": "not-run",
}
"""The word each verdict is shown as; the JSON report keeps the verdicts themselves."""

_UNPRINTABLE = re.compile(r"[\x00-\x08\x0b\x0c\x0e-\x1f\x7f-\x9f\ud800-\udfff\ufffe\uffff]")


def clean(text: str) -> str:
    """Text safe to print or put in XML/Markdown: controls and lone surrogates become escapes.

    Suite messages quote the ids and states that broke a store (NUL, surrogates, ...);
    written raw they would corrupt a terminal, an XML file or a UTF-8 encoder.
    """
    return _UNPRINTABLE.sub(lambda m: m.group().encode("unicode_escape", "backslashreplace").decode("ascii"), text)


def first_line(message: str, limit: int = 200) -> str:
    """The explanation a table cell shows: first non-empty line, without 'AssertionError: '."""
    line = next((s.strip() for s in message.splitlines() if s.strip()), "")
    line = clean(line.removeprefix("AssertionError: "))
    return line if len(line) <= limit else line[: limit - 1] + "…"


def _listed_apart(result: RunResult, c: ClauseResult) -> bool:
    """Clauses that did not run; planned ones are rows only in a run that was not narrowed."""
    return c.verdict == "not-run" or (c.verdict == "planned" and result.selected is not None)


def shown_clauses(result: RunResult) -> list[ClauseResult]:
    """The rows a table shows: every clause except the ones that did not run (listed apart)."""
    return [c for c in result.clauses if not _listed_apart(result, c)]


def not_run_ids(result: RunResult) -> list[str]:
    """Clause IDs no test ran for (not selected, or no suite test yet), named in one line."""
    return [c.clause.id for c in result.clauses if _listed_apart(result, c)]


def family_groups(clauses: list[ClauseResult]) -> Iterator[tuple[str, list[ClauseResult]]]:
    """Clauses by family (ID prefix: LC, TTL, CC, ...), families in order of first appearance.

    The spec lists TTL-0 with the input clauses, far from TTL-1..5; reports keep a family together.
    """
    groups: dict[str, list[ClauseResult]] = {}
    for c in clauses:
        groups.setdefault(c.clause.family, []).append(c)
    yield from groups.items()


VERDICT_ORDER: tuple[str, ...] = ("fail", "stale-divergence", "pass", "divergence", "skip", "n/a", "planned", "not-run")
"""Verdicts in the order summaries count them: what needs attention first."""
_SUMMARY_WORDS = {"fail": "failed", "stale-divergence": "stale", "pass": "passed", "divergence": "known divergence",
                  "skip": "skipped", "n/a": "not checked (n/a)", "planned": "planned", "not-run": "not run"}


def verdict_counts(result: RunResult) -> dict[str, int]:
    """Clauses per verdict, every verdict present, in :data:`VERDICT_ORDER`."""
    counts = result.counts()
    return {v: counts.get(v, 0) for v in VERDICT_ORDER}


def not_checked_note(result: RunResult) -> str:
    """One line naming the clauses that were not checked (n/a), with how to check FL-*; empty if none."""
    ids = [c.clause.id for c in result.clauses if c.verdict == "n/a"]
    if not ids:
        return ""
    note = f"{', '.join(ids)} not checked (n/a: the suite could not reach what they need)"
    if any(i.startswith("FL-") for i in ids):
        note += ("; FL-*: give the target stop_backend/start_backend hooks, e.g. with "
                 "sessionspec.conformance.faultproxy (docs/plugging-in.md)")
    return note


def summary_line(result: RunResult) -> str:
    """``PASS`` or ``FAIL`` and the clause counts, e.g. 'FAIL (clauses: 1 failed, 12 passed, 3 skipped)'."""
    parts = [f"{n} {_SUMMARY_WORDS[v]}" for v, n in verdict_counts(result).items() if n]
    if result.errors:
        parts.insert(0, f"{len(result.errors)} run error{'s' if len(result.errors) != 1 else ''}")
    word = "PASS" if result.exit_code == 0 else "FAIL"
    return f"{word} (clauses: {', '.join(parts)})"
