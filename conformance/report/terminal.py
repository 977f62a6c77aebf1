"""The terminal report: a rich table by clause, then what failed and what the run claims.

Width-aware (the detail column takes what is left and is cut with an ellipsis), plain
without colour when the output is not a terminal. Every text from a store or a test goes
through :func:`clean` and :class:`rich.text.Text`, never through markup, so a message
that quotes ``[bold]`` or a NUL prints as written.
"""

from __future__ import annotations

import io
import re
from collections.abc import Iterable, Mapping, Sequence
from pathlib import Path

from rich.console import Console
from rich.table import Table
from rich.text import Text

from ..clauses import Clause
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

__all__ = [
    "VERDICT_STYLES",
    "catalogue_table",
    "clause_table",
    "print_result",
    "print_test_names",
    "render_terminal",
    "write_terminal",
]

VERDICT_STYLES: dict[str, str] = {
    "pass": "green",
    "fail": "bold red",
    "skip": "yellow",
    "n/a": "dim",
    "divergence": "magenta",
    "stale-divergence": "bold red",
    "planned": "blue",
    "not-run": "dim",
}


def verdict_text(verdict: str) -> Text:
    return Text(VERDICT_LABELS[verdict], style=VERDICT_STYLES[verdict])


def _detail(c: ClauseResult) -> Text:
    if c.verdict == "pass":
        return Text(c.clause.title, style="dim")
    return Text(first_line(c.reason))


FIXED_WIDTH = 46
"""Room the Clause, Capability, Verdict and Passed columns and the borders take."""


def clause_table(result: RunResult, width: int = 100) -> Table:
    """One row per clause that ran (or is planned), a section per family; ``width`` bounds the detail."""
    table = Table(title=None, expand=False, show_edge=False, pad_edge=False)
    table.add_column("Clause", no_wrap=True, style="bold", min_width=6)
    table.add_column("Capability", no_wrap=True, min_width=10)
    table.add_column("Verdict", no_wrap=True, min_width=10)
    table.add_column("Passed", no_wrap=True, justify="right", min_width=6)
    table.add_column("Detail", no_wrap=True, overflow="ellipsis", max_width=max(12, width - FIXED_WIDTH))
    groups = list(family_groups(shown_clauses(result)))
    for n, (_family, clauses) in enumerate(groups):
        for c in clauses:
            passed = sum(t.status == "passed" for t in c.tests)
            count = f"{passed}/{len(c.tests)}" if c.tests else "-"
            table.add_row(c.clause.id, c.clause.capability, verdict_text(c.verdict), count, _detail(c))
        if n < len(groups) - 1:
            table.add_section()
    return table


def _indented(text: str, style: str = "") -> Text:
    """Messages are printed unwrapped (soft wrap): long assertion lines stay whole for copy and grep."""
    return Text("\n".join(f"    {line}" for line in clean(text).splitlines()), style=style)


_NOISE = re.compile(r"\s*(\+\s+where |Use -v to get|Full diff:|At index \d+ diff:|assert not [\[{(]|Omitting \d+ "
                    r"identical|Differing attributes:|\[.*'\]$|Drill down into|\.\.\.Full output truncated|"
                    r"[a-z_]+: .* != .*\.\.\.$)")
"""pytest's assertion-introspection lines: the suite's own message already says what differs."""
MAX_LINES_PER_CLAUSE = 30
"""Terminal lines per failing clause; the rest (histories, long lists, tracebacks) is in the JSON report."""
LINES_PER_TEST = 8


def failure_lines(c: ClauseResult, *, verbose: bool = False) -> list[tuple[str, str]]:
    """(text, style) lines for one failing clause: the first says what to fix; at most MAX_LINES_PER_CLAUSE."""
    failed = sorted((t for t in c.tests if t.status in ("failed", "error")),
                    key=lambda t: (t.clauses != (c.clause.id,), len(t.clauses)))
    lead = first_line(c.reason, 160) if c.reason else c.clause.title
    lines: list[tuple[str, str]] = [(f"  {c.clause.id} ({c.clause.capability}) {lead}", "bold")]
    if c.verdict == "stale-divergence":
        return lines
    lines.append((f"    rule: {c.clause.title}", "dim"))
    budget = None if verbose else MAX_LINES_PER_CLAUSE - 2
    cut = 0
    for n, test in enumerate(failed):
        where = " (error outside the test body)" if test.status == "error" else ""
        text = clean(test.details if verbose and test.details else test.message).splitlines()
        text = [line.removeprefix("AssertionError: ") for line in text if line.strip()
                and (verbose or not _NOISE.match(line))]
        if budget is not None:
            room = min(LINES_PER_TEST, budget - 1)
            if room < 2 or (n and budget < 4):
                cut = len(failed) - n
                break
            keep = [line for line in text if line.lstrip().startswith(("replay: ", "sessionspec check "))][-1:]
            body = [line for line in text if line not in keep]
            room -= len(keep)
            shown = body[:room]
            if len(body) > room:
                shown = [*shown[: room - 1], f"… {len(body) - room + 1} more lines in the JSON report (--report)"]
            shown += keep
            budget -= 1 + len(shown)
        else:
            shown = text
        lines.append((f"    {test.name}{where}", "red"))
        lines += [(f"      {line}", "") for line in shown]
    if cut:
        names = ", ".join(t.name for t in failed[-cut:])
        lines.append((f"    … and {cut} more failing test{'s' if cut > 1 else ''}: {first_line(names, 150)}", "dim"))
    return lines


def _print_failures(console: Console, result: RunResult, verbose: bool) -> None:
    failures = result.failures
    if not failures:
        return
    console.print()
    console.print(Text("Failures", style="bold red"))
    for c in failures:
        for text, style in failure_lines(c, verbose=verbose):
            console.print(Text(text, style=style), soft_wrap=True)


def _print_footer(console: Console, result: RunResult, written: Sequence[str]) -> None:
    console.print()
    skipped = not_run_ids(result)
    if skipped:
        console.print(Text(f"Not run ({len(skipped)}): {', '.join(skipped)}", style="dim"))
    for c in result.claimed_skips:
        console.print(Text(f"warning: the store claims {c.clause.capability!r} but {c.clause.id} was skipped: "
                           f"{first_line(c.reason)}", style="yellow"))
    for error in result.errors:
        console.print(Text("run error: ", style="bold red") + Text(clean(error)))
    console.print(Text.assemble(("Target     ", "dim"), clean(result.description)))
    console.print(Text.assemble(("Claims     ", "dim"), ", ".join(sorted(result.capabilities)) or "nothing"))
    console.print(Text.assemble(("Level      ", "dim"), (result.level, "bold")))
    note = not_checked_note(result)
    if note:
        console.print(Text.assemble(("Unchecked  ", "dim"), (note, "yellow")))
    console.print(Text.assemble(("Duration   ", "dim"), f"{result.duration:.1f} s (spec {result.spec_version})"))
    for path in written:
        console.print(Text.assemble(("Report     ", "dim"), path))
    ok = result.exit_code == 0
    console.print(Text(summary_line(result), style="bold green" if ok else "bold red"))


def print_result(console: Console, result: RunResult, *, verbose: bool = False, written: Sequence[str] = (),
                 quiet: bool = False) -> None:
    """The whole report; ``quiet`` keeps only the failures and the summary line."""
    if not quiet:
        console.print(clause_table(result, console.width))
    _print_failures(console, result, verbose)
    if quiet:
        console.print(Text(summary_line(result), style="bold green" if result.exit_code == 0 else "bold red"))
        return
    _print_footer(console, result, written)


def render_terminal(result: RunResult, *, width: int = 100, verbose: bool = False, color: bool = False) -> str:
    """The report as text (for tests and ``write_terminal``)."""
    buffer = io.StringIO()
    console = Console(file=buffer, width=width, force_terminal=color, no_color=not color, highlight=False,
                      emoji=False, soft_wrap=False)
    print_result(console, result, verbose=verbose)
    return buffer.getvalue()


def write_terminal(result: RunResult, path: str | Path) -> None:
    Path(path).write_text(render_terminal(result, width=120, verbose=True), encoding="utf-8")


def catalogue_table(clauses: Iterable[Clause], tests: Mapping[str, Mapping[str, int]]) -> Table:
    """``check --list``: every clause of a spec version, grouped by family, with its number of suite tests.

    ``tests`` maps clause ID -> test function name -> how many test items it makes (parametrization).
    """
    table = Table(show_edge=False, pad_edge=False)
    table.add_column("Clause", no_wrap=True, style="bold")
    table.add_column("Capability", no_wrap=True)
    table.add_column("Status", no_wrap=True)
    table.add_column("Title")
    table.add_column("Tests", no_wrap=True, justify="right")
    groups: dict[str, list[Clause]] = {}
    for clause in clauses:
        groups.setdefault(clause.family, []).append(clause)
    for n, group in enumerate(groups.values()):
        if n:
            table.add_section()
        for clause in group:
            found = sum(tests.get(clause.id, {}).values())
            status = Text(clause.status, style="blue" if clause.status == "planned" else "")
            count = Text(str(found), style="" if found else "dim")
            table.add_row(clause.id, clause.capability, status, Text(clause.title), count)
    return table


def print_test_names(console: Console, clauses: Iterable[Clause], tests: Mapping[str, Mapping[str, int]]) -> None:
    """Under ``check --list`` with a target or -v: the suite tests of each clause, one per line."""
    for clause in clauses:
        console.print(Text.assemble((clause.id, "bold"), f"  {clause.title}"), soft_wrap=True)
        names = [name if n == 1 else f"{name} ×{n}" for name, n in tests.get(clause.id, {}).items()]
        for name in names or ["(no suite test yet)"]:
            console.print(Text(f"    {name}", style="" if names else "dim"), soft_wrap=True)
