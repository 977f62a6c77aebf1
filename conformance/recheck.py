"""``sessionspec recheck DIR [TARGET]``: run exactly the failing tests of a report directory again.

The loop it closes: CI fails and uploads DIR; a developer runs ``recheck DIR`` on their
machine (the same failure, same clauses and tests, the model check's replay), fixes the
store, and runs ``recheck DIR mypkg.fixed:factory`` until it passes. Exit 0 when every
clause that failed now passes, 1 when any still fails (or is no longer checked), 2 for an
unreadable DIR, 3 when the backend cannot be reached.
"""

from __future__ import annotations

import inspect
import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import click

from .report.directory import FAILURES_FILE, SCHEMA

__all__ = ["RecheckError", "RecheckPlan", "load_plan", "recheck_command", "verdict_lines"]


class RecheckError(Exception):
    """DIR is not a failure report directory this version can read."""


@dataclass(frozen=True, slots=True)
class RecheckPlan:
    """What to run again: the target, its spec version, the failing clauses, tests and replays."""

    target: str
    spec_version: str
    clauses: tuple[str, ...]
    functions: tuple[str, ...]
    replay: tuple[str, ...]

    @property
    def keyword(self) -> str | None:
        return " or ".join(self.functions) or None


def load_plan(folder: Path) -> RecheckPlan:
    path = folder / FAILURES_FILE
    try:
        data: Any = json.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise RecheckError(f"{str(folder)!r} is not a failure report directory: it has no {FAILURES_FILE} "
                           "(sessionspec check --report-dir DIR writes one when a run fails)") from None
    except (OSError, ValueError) as exc:
        raise RecheckError(f"{str(path)!r} is not readable JSON: {exc}") from None
    if not isinstance(data, dict) or data.get("kind") != "sessionspec-failures" or data.get("schema") != SCHEMA:
        raise RecheckError(f"{str(path)!r} is not a sessionspec failure record of schema {SCHEMA}")
    try:
        plan = data["recheck"]
        return RecheckPlan(str(data["target"]), str(data["spec_version"]), tuple(plan["clauses"]),
                           tuple(plan["functions"]), tuple(plan.get("replay") or ()))
    except (KeyError, TypeError) as exc:
        raise RecheckError(f"{str(path)!r} is missing a field: {exc!r}") from None


def verdict_lines(plan: RecheckPlan, verdicts: dict[str, str]) -> tuple[list[str], bool]:
    """One line per clause that failed before, and whether all of them pass now."""
    lines, fixed = [], True
    for cid in plan.clauses:
        now = verdicts.get(cid, "not-run")
        if now == "pass":
            lines.append(f"{cid}: failed before, passes now")
        else:
            fixed = False
            again = "fails again" if now in ("fail", "stale-divergence") else f"is not passing ({now})"
            lines.append(f"{cid}: failed before, {again}")
    return lines, fixed


@click.command("recheck", short_help="Run the failing tests of a report directory again.",
               epilog="""\b
Examples:
  sessionspec check mypkg.store:factory --report-dir failures   # a failing run writes failures/
  sessionspec recheck failures                                  # the same failure, same target
  sessionspec recheck failures mypkg.fixed:factory              # passes once the store is fixed
""")
@click.argument("folder", type=click.Path(file_okay=False, path_type=Path), metavar="DIR")
@click.argument("target", required=False, metavar="[TARGET]")
@click.option("--timeout", type=click.FloatRange(min=0, min_open=True), default=None, metavar="SECONDS",
              help="Time limit per suite test (default: check's default).")
@click.option("-q", "--quiet", is_flag=True, help="Only the failures and the summary.")
@click.option("-v", "--verbose", is_flag=True, help="Each failing test's full details.")
@click.pass_context
def recheck_command(ctx: click.Context, folder: Path, target: str | None, timeout: float | None,
                    quiet: bool, verbose: bool) -> None:
    """Run again exactly what failed in DIR (against TARGET, default the same target as then).

    DIR is a failure report directory written by `sessionspec check --report-dir DIR`.
    Exit 0 when every clause that failed passes now; 1 when any fails again.
    """
    from . import cli
    from .plugin import DEFAULT_TIMEOUT
    from .report.terminal import print_result
    from .targets import TargetOptions

    try:
        plan = load_plan(folder)
    except RecheckError as exc:
        cli._fail(str(exc))
    if not plan.clauses:
        cli._fail(f"{str(folder)!r} records no failing clause: nothing to recheck")
    from .gatecli import quiet_driver_warnings

    quiet_driver_warnings()
    console = cli._console()
    spec = target or plan.target
    extra: dict[str, Any] = {}
    if plan.replay and "replay" in inspect.signature(cli._run).parameters:
        extra["replay"] = plan.replay
    result = cli._run(console, spec, TargetOptions(), clause_ids=plan.clauses, keyword=plan.keyword,
                      spec_version=plan.spec_version, ledger={}, timeout=timeout or DEFAULT_TIMEOUT,
                      quiet=quiet, **extra)
    print_result(console, result, verbose=verbose, written=[], quiet=quiet)
    lines, fixed = verdict_lines(plan, {c.clause.id: c.verdict for c in result.clauses})
    for line in lines:
        console.print(line, highlight=False)
    ctx.exit(cli.EXIT_OK if fixed and not result.errors else cli.EXIT_FAILED)
