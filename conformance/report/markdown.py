"""A Markdown summary for ``$GITHUB_STEP_SUMMARY`` (or a PR comment): verdict, level, clause table.

Concise on purpose: one heading, one line of facts, the table (clauses that did not run
are listed in one line), and a collapsed details block per failing test.
"""

from __future__ import annotations

import html
import re
from collections.abc import Sequence
from pathlib import Path

from ..results import ClauseResult, RunResult
from . import (
    VERDICT_LABELS,
    clean,
    family_groups,
    first_line,
    not_checked_note,
    not_run_ids,
    shown_clauses,
    summary_line,
)

__all__ = ["render_markdown", "write_markdown"]

DETAILS_LIMIT = 4000
"""Characters of failure details per test (step summaries are capped at 1 MiB)."""

_MARKS = {"pass": "✔ ", "fail": "✘ ", "stale-divergence": "✘ "}


def _cell(text: str) -> str:
    return html.escape(clean(text), quote=False).replace("|", "\\|")


def _fenced(text: str) -> str:
    """A code block whose fence is longer than any backtick run inside, so nothing escapes it."""
    longest = max((len(m) for m in re.findall(r"`+", text)), default=0)
    fence = "`" * max(3, longest + 1)
    return f"{fence}\n{text}\n{fence}"


def _row(c: ClauseResult) -> str:
    passed = sum(t.status == "passed" for t in c.tests)
    detail = c.clause.title if c.verdict == "pass" else first_line(c.reason)
    verdict = _MARKS.get(c.verdict, "") + VERDICT_LABELS[c.verdict]
    return f"| {c.clause.id} | {c.clause.capability} | {verdict} | {passed}/{len(c.tests)} | {_cell(detail)} |"


def _failure_blocks(result: RunResult) -> list[str]:
    blocks = []
    for c in result.failures:
        failing = [t for t in c.tests if t.status in ("failed", "error")] or c.tests[:1]
        for test in failing:
            body = clean(test.details or test.message or c.reason)
            if len(body) > DETAILS_LIMIT:
                body = body[:DETAILS_LIMIT] + "\n… (truncated; see the JSON report)"
            summary = _cell(f"{c.clause.id} {test.name}: {first_line(test.message or c.reason, 120)}")
            blocks.append(f"<details><summary>{summary}</summary>\n\n{_fenced(body)}\n\n</details>")
    return blocks


def render_markdown(result: RunResult, preface: Sequence[str] = (), *, ok: bool | None = None) -> str:
    """ok: the gate's verdict when it demands more than the run (an unmet --require-level); default the run's."""
    ok = result.exit_code == 0 if ok is None else ok
    lines = [
        f"## sessionspec: `{clean(result.target)}` {'✔ PASS' if ok else '✘ FAIL'}",
        "",
        f"{_cell(result.description)} · spec {result.spec_version} · claims "
        f"{', '.join(sorted(result.capabilities)) or 'nothing'} · level **{result.level}** · "
        f"{result.duration:.1f} s",
        "",
        summary_line(result),
        "",
        *([f"**Not checked:** {_cell(not_checked_note(result))}", ""] if not_checked_note(result) else []),
        "| Clause | Capability | Verdict | Passed | Detail |",
        "|---|---|---|---|---|",
    ]
    for _family, clauses in family_groups(shown_clauses(result)):
        lines.extend(_row(c) for c in clauses)
    skipped = not_run_ids(result)
    if skipped:
        lines += ["", f"Not run ({len(skipped)}): {', '.join(skipped)}."]
    for c in result.claimed_skips:
        lines += ["", f"> **Warning:** the store claims `{c.clause.capability}` but {c.clause.id} was skipped: "
                      f"{_cell(first_line(c.reason))}"]
    if result.errors:
        lines += ["", "### Run errors", "", *(_fenced(clean(e)) for e in result.errors)]
    # What needs reading comes before the table: changes since a baseline, unmet requirements
    # (the gate's preface), then the failures.
    blocks = _failure_blocks(result)
    table = lines.index("| Clause | Capability | Verdict | Passed | Detail |")
    lines[table:table] = [*preface, *(["### Failures", "", *blocks, ""] if blocks else [])]
    return "\n".join(lines) + "\n"


def write_markdown(result: RunResult, path: str | Path, *, append: bool = False, preface: Sequence[str] = (),
                   ok: bool | None = None) -> None:
    """Write (or, for a step-summary file other steps also write to, append) the summary."""
    with Path(path).open("a" if append else "w", encoding="utf-8") as out:
        out.write(render_markdown(result, preface, ok=ok))
