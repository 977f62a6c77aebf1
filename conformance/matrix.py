"""`sessionspec matrix`: run the suite on every framework adapter and write docs/compatibility.md.

Each adapter (``sessionspec.adapters.STORES``) is checked in its own ``sessionspec check``
process with a JSON report, a bounded per-test timeout and the adapter's divergence ledger
(``adapters/divergences/<store>.toml``, when it has one), two at a time, longest first. Every
child has a budget and the whole run a deadline: a child past either is interrupted, and
the clauses it did not reach read "not checked" (``not-run``), never pass. The page is then
built from the reports alone: store x clause verdicts, level, framework version and date,
and for every failed or divergent clause the reviewed paragraph from
``adapters/findings.toml`` (what fails, the minimal reproduction, the fix). A failure nobody
has reviewed is printed as such and fails ``--check``, so an unread failure is never
published as a verdict. ``docs/compatibility/matrix.json`` records the inputs and the
verdicts the page was built from (see :mod:`.matrix_state`), which ``--check`` compares.
"""

from __future__ import annotations

import concurrent.futures
import contextlib
import datetime as dt
import importlib.metadata
import json
import os
import signal
import subprocess
import sys
import tempfile
import time
import tomllib
from collections.abc import Callable, Mapping, Sequence
from dataclasses import replace
from pathlib import Path
from typing import Any, Final

import click

from .clauses import CLAUSES
from .matrix_state import INTERMITTENT, NOT_CHECKED, compare, fingerprint, normalise
from .report.json_report import ReportError, load_json_report
from .results import load_divergences

__all__ = ["FRAMEWORKS", "as_recorded", "build_page", "matrix", "run_store"]

FRAMEWORKS: Mapping[str, tuple[str, ...]] = {
    "adk": ("google-adk", "sqlalchemy"),
    "agents": ("openai-agents",),
    "langgraph": ("langgraph", "langgraph-checkpoint-postgres"),
}
SHORT = {"pass": "✓", "fail": "✗", "divergence": "≠", "stale-divergence": "!", "skip": "·", "n/a": "n/a",
         "planned": "…", "not-run": "?", NOT_CHECKED: "?", INTERMITTENT: "~"}
ADAPTERS_DIR = Path(__file__).resolve().parent.parent / "adapters"
DOCS_DIR = Path("docs")
REGENERATE = "tox -e matrix -- --write"
GRACE = 60.0
"""Seconds an interrupted child gets to finish its current test and write its report."""


def _versions(store: str) -> str:
    parts = []
    for dist in FRAMEWORKS.get(store.split("_", 1)[0], ()):
        try:
            parts.append(f"{dist} {importlib.metadata.version(dist)}")
        except importlib.metadata.PackageNotFoundError:
            parts.append(f"{dist} (not installed)")
    return ", ".join(parts)


_CHILDREN: set[int] = set()
"""Session ids of the running checks (each is its own process group), for _on_term."""


def _kill_group(pgid: int) -> None:
    _CHILDREN.discard(pgid)
    with contextlib.suppress(ProcessLookupError, PermissionError):
        os.killpg(pgid, signal.SIGKILL)


def _on_term(signum: int, frame: Any) -> None:
    """SIGTERM (a CI timeout): take the checks and everything they started down too, then exit."""
    for pgid in list(_CHILDREN):
        _kill_group(pgid)
    sys.exit(128 + signum)


def run_store(store: str, reports: Path, *, timeout: float, budget: float,
              clauses: Sequence[str] = ()) -> dict[str, Any]:
    """Check one adapter in a child process, for at most ``budget`` seconds (then SIGINT, then kill).

    Returns the report's path (or why there is none), the wall time, and whether the budget cut
    the run short: an interrupted child still writes what it ran, and the rest is not-run.
    """
    report = reports / f"{store}.json"
    report.unlink(missing_ok=True)
    argv = [sys.executable, "-c", "from sessionspec.conformance.cli import main; main()", "check",
            f"sessionspec.adapters.{store}:factory", "--report", str(report), "--timeout", str(timeout), "-q"]
    ledger = ADAPTERS_DIR / "divergences" / f"{store}.toml"
    if ledger.exists():
        argv += ["--divergences", str(ledger)]
    for cid in clauses:
        argv += ["--clause", cid]
    begin = time.monotonic()
    cut = ""
    with tempfile.TemporaryFile("w+") as out:
        child = subprocess.Popen(argv, stdout=out, stderr=subprocess.STDOUT, text=True, env=dict(os.environ),
                                 start_new_session=True)
        _CHILDREN.add(child.pid)
        try:
            child.wait(timeout=max(1.0, budget))
        except subprocess.TimeoutExpired:
            cut = "interrupted at its time limit (--budget or --deadline): what it did not reach is not checked"
            child.send_signal(signal.SIGINT)  # the check only: its servers must not see the interrupt as an outage
            try:
                child.wait(timeout=GRACE)
            except subprocess.TimeoutExpired:
                child.kill()
                child.wait()
        finally:
            _kill_group(child.pid)  # whatever the check left behind: worker processes, servers
        out.seek(0)
        tail = out.read().strip().splitlines()[-3:]
    seconds = time.monotonic() - begin
    error = cut if report.exists() else (cut or "the check wrote no report") + ": " + " | ".join(tail)
    return {"store": store, "report": str(report) if report.exists() else None, "seconds": round(seconds, 1),
            "error": error}


def _findings() -> dict[str, dict[str, Any]]:
    path = ADAPTERS_DIR / "findings.toml"
    if not path.exists():
        return {}
    return {store: dict(rows) for store, rows in tomllib.loads(path.read_text()).items()}


def intermittent_clauses() -> dict[str, list[str]]:
    """store -> clauses reviewed as failing only sometimes (``[intermittent]`` in findings.toml)."""
    table = _findings().get("intermittent", {})
    return {store: list(ids) for store, ids in table.items()}


def load_store(store: str, report: str | None, error: str = "") -> dict[str, Any]:
    """A store's row: its normalised verdicts, claims, versions and reasons, from its report."""
    flaky = intermittent_clauses().get(store, [])
    result = None
    if report is not None:
        try:
            result = load_json_report(report)
        except ReportError as exc:
            error = str(exc)
    if result is not None:  # the ledger as it stands now classifies the failures (a re-render after editing it)
        ledger = ADAPTERS_DIR / "divergences" / f"{store}.toml"
        result = replace(result, divergences=load_divergences(ledger) if ledger.exists() else {})
    row = normalise(result, intermittent=flaky, error=error or ("" if result else "no report"))
    row["store"] = store
    row["versions"] = _versions(store)
    row["capabilities"] = sorted(result.capabilities) if result else []
    row["reasons"] = {c.clause.id: c.reason for c in result.clauses} if result else {}
    return row


def as_recorded(row: Mapping[str, Any], recorded: Mapping[str, Any]) -> dict[str, Any]:
    """``row`` with each clause that was not checked, in this run or in the record, read as recorded:
    ``compare`` does not count such a difference, and the page built for ``--check`` must not either."""
    old = recorded.get("stores", {}).get(row["store"], {}).get("clauses", {})
    clauses = dict(row["clauses"])
    for cid, verdict in row["clauses"].items():
        was = old.get(cid)
        if was is not None and was != verdict and NOT_CHECKED in (was, verdict):
            clauses[cid] = was
    return {**row, "clauses": clauses}


_FLIPS: Final = ({"pass", "fail"}, {"divergence", "stale-divergence"})
"""Verdict pairs one interleaving can turn into each other: the clause's tests failed in one run, passed in
the other (a ledgered divergence whose tests pass reads ``stale-divergence``)."""

RERUN_BUDGET: Final = 240.0
"""Seconds --check may spend rerunning the clauses of one store whose verdict flipped from the record."""


def recheck_flips(rows: Sequence[dict[str, Any]], recorded: Mapping[str, Any], scratch: Path, *, timeout: float,
                  left: Callable[[], float]) -> list[str]:
    """--check: rerun, once, the clauses whose pass/fail flipped from the record. A flip the rerun does not
    reproduce is a race the record does not mark intermittent: the row takes the recorded verdict back and a
    warning says what the first run saw, so it gets reviewed, without failing the check on one unlucky
    interleaving. A flip the rerun reproduces stands (the page is stale). A ledgered divergence whose tests
    passed (``stale-divergence``) is the same flip: a documented race the run did not happen to hit."""
    warnings: list[str] = []
    for row in rows:
        old = recorded.get("stores", {}).get(row["store"], {})
        was = old.get("clauses", {})
        flipped = [cid for cid, verdict in row["clauses"].items()
                   if verdict != was.get(cid) and {verdict, was.get(cid)} in _FLIPS]
        if not flipped or left() < 60:
            continue
        folder = scratch / "rerun"
        folder.mkdir(parents=True, exist_ok=True)
        done = run_store(row["store"], folder, timeout=timeout, budget=min(RERUN_BUDGET, left()), clauses=flipped)
        again = load_store(row["store"], done["report"], done["error"])["clauses"]
        for cid in flipped:
            if again.get(cid) == was[cid]:
                warnings.append(f"{row['store']} {cid}: {row['clauses'][cid]} in this run, {was[cid]} again on a "
                                f"rerun of it: a race the record does not mark intermittent (review it)"
                                f"{_reason(row, cid)}")
                row["clauses"][cid] = was[cid]
        if all(row["clauses"].get(cid) == verdict or NOT_CHECKED in (verdict, row["clauses"].get(cid))
               for cid, verdict in was.items()):
            row["level"] = old.get("level", row["level"])
    return warnings


def _why(rows: Sequence[Mapping[str, Any]], line: str) -> str:
    """What this run's report says about the clause a ``"<store> <clause>…"`` line names (check mode writes its
    reports to a scratch directory, so this is all that is left of them to read)."""
    store, _, rest = line.partition(" ")
    row = next((r for r in rows if r.get("store") == store), None)
    return "" if row is None else _reason(row, rest.split(":", 1)[0].strip())


def _reason(row: Mapping[str, Any], cid: str) -> str:
    """The row's reason for ``cid`` on one line, as a continuation of the line that names it."""
    reason = " ".join(row.get("reasons", {}).get(cid, "").split())
    return f"\n    this run: {reason[:600]}" if reason else ""


def build_page(rows: Sequence[Mapping[str, Any]], *, date: str, inputs: str = "") -> tuple[str, list[str]]:
    """The Markdown page and the list of failures no reviewed paragraph explains."""
    findings = _findings()
    unreviewed: list[str] = []
    ids = [c.id for c in CLAUSES]
    lines = [
        "# Compatibility: agent-framework session stores",
        "",
        "<!-- generated by `sessionspec matrix`; do not edit by hand -->",
        "",
        f"Generated {date} by `sessionspec matrix` (spec 1.0{', inputs ' + inputs if inputs else ''}). "
        "Each store runs through an adapter in",
        "`sessionspec.adapters` that maps the contract onto the framework's public API; its module",
        "docstring says what the adapter had to emulate (versions everywhere; expiry where the",
        "framework has none; argument validation — ID-3, ST-2, TTL-0 measure the adapter layer).",
        "",
        f"Regenerate with `{REGENERATE}` (the framework versions pinned in `adapters/constraints.txt`,",
        "servers provisioned locally, two stores at a time within a deadline); CI runs `tox -e matrix`,",
        "which checks the same way and fails when `docs/compatibility/matrix.json` — the inputs and verdicts",
        "this page was built from — no longer matches a fresh run or the current sources, or when a failure",
        "no reviewed finding explains appears (it prints what the run's report says about it). A clause whose",
        "pass/fail flips from the record is rerun once; a flip the rerun does not reproduce is printed as a",
        "race to review, not counted as a change.",
        "",
        "Legend: ✓ pass, ✗ fail, ~ fails intermittently (reviewed and reproduced; a run may pass it),",
        "≠ known divergence (documented by the framework), · not claimed, n/a not applicable on this",
        "target, ? not checked (the run did not reach it, or could not decide it: expiry timing inconclusive",
        "every time, or out of time while the store was still answering; never counted either way), … planned.",
        "",
        "| store | framework | level | claims |",
        "|---|---|---|---|",
    ]
    for r in rows:
        lines.append(f"| `{r['store']}` | {r.get('versions', '')} | **{r['level']}** | "
                     f"{', '.join(r.get('capabilities', []))} |")
    lines += ["", "| clause | " + " | ".join(f"`{r['store']}`" for r in rows) + " |",
              "|---|" + "---|" * len(rows)]
    for cid in ids:
        cells = [SHORT.get(r["clauses"].get(cid, "not-run"), "?") for r in rows]
        lines.append(f"| {cid} | " + " | ".join(cells) + " |")
    lines += ["", "## Findings", ""]
    for r in rows:
        store, verdicts = r["store"], r["clauses"]
        bad = [cid for cid in ids if verdicts.get(cid) in ("fail", "divergence", "stale-divergence", INTERMITTENT)]
        lines += [f"### `{store}` — level {r['level']}", ""]
        not_run = [cid for cid in ids if verdicts.get(cid) in ("not-run", NOT_CHECKED)]
        if r.get("error"):
            lines += [f"The run was incomplete: {r['error']}", ""]
            unreviewed.append(f"{store}: {r['error']}")
        if not_run:
            lines += [f"Not checked in this run: {', '.join(not_run)}.", ""]
        if not bad and not r.get("error"):
            lines += ["Every claimed clause that could be checked passed.", ""]
        for cid in bad:
            text = findings.get(store, {}).get(cid)
            if not isinstance(text, str):
                unreviewed.append(f"{store} {cid}")
                reason = str(r.get("reasons", {}).get(cid, "")).splitlines()[:1]
                text = f"UNREVIEWED — not yet read by a person. The suite said: {reason[0][:300] if reason else ''}"
            label = "fails intermittently" if verdicts[cid] == INTERMITTENT else verdicts[cid]
            lines += [f"**{cid}** ({label}). {text.strip()}", ""]
    return "\n".join(lines).rstrip() + "\n", unreviewed


def _table_part(page: str) -> str:
    """The page without its date line: what --check compares."""
    return "\n".join(line for line in page.splitlines() if not line.startswith("Generated "))


def _run_all(chosen: Sequence[str], reports: Path, *, timeout: float, budget: float, jobs: int,
             deadline: float, estimates: Mapping[str, float]) -> dict[str, dict[str, Any]]:
    """Check the stores ``jobs`` at a time, longest first; none starts or runs past ``deadline`` seconds."""
    end = time.monotonic() + deadline
    order = sorted(chosen, key=lambda s: -estimates.get(s, 0.0))

    def one(store: str) -> dict[str, Any]:
        left = end - time.monotonic()
        if left < 30:
            return {"store": store, "report": None, "seconds": 0.0,
                    "error": f"not started: the run's deadline of {deadline:.0f} s had passed"}
        done = run_store(store, reports, timeout=timeout, budget=min(budget, left))
        click.echo(f"  {store:<20} {done['seconds']:>7.1f} s {done['error']}", err=True)
        return done

    with concurrent.futures.ThreadPoolExecutor(max_workers=max(1, jobs)) as pool:
        return {r["store"]: r for r in pool.map(one, order)}


def _estimates(reports: Path) -> dict[str, float]:
    found = {}
    for path in reports.glob("*.json"):
        try:
            found[path.stem] = float(json.loads(path.read_text()).get("duration_s", 0.0))
        except (OSError, ValueError, AttributeError):
            continue
    return found


def _document(rows: Sequence[Mapping[str, Any]], inputs: Mapping[str, Any]) -> dict[str, Any]:
    return {"schema": 1, "regenerate": REGENERATE, "inputs": inputs,
            "stores": {r["store"]: {"level": r["level"], "clauses": r["clauses"]} for r in rows}}


@click.command("matrix", short_help="Run every framework adapter and write docs/compatibility.md.")
@click.option("--out", type=click.Path(dir_okay=False, path_type=Path), default=DOCS_DIR / "compatibility.md",
              show_default=True, help="The page to write (matrix.json and reports/ go beside it).")
@click.option("--store", "stores", multiple=True,
              help="Only run these adapters (module names; repeatable); the others keep their committed reports.")
@click.option("--from-reports", is_flag=True,
              help="Build the page from the committed reports, run nothing (after editing findings.toml).")
@click.option("--timeout", type=float, default=120.0, show_default=True, help="Time limit per suite test.")
@click.option("--budget", type=float, default=900.0, show_default=True, help="Time limit per store.")
@click.option("--deadline", type=float, default=1020.0, show_default=True,
              help="Time limit for all stores together; a store not reached is 'not run'.")
@click.option("--jobs", type=int, default=2, show_default=True, help="Stores checked at the same time.")
@click.option("--check/--write", "check_only", default=False, show_default=True,
              help="--check: write nothing; run afresh and exit 1 if the inputs or verdicts differ from "
                   "matrix.json, the page differs, or a failure is unreviewed.")
@click.option("--inputs-only", is_flag=True,
              help="With --check: compare only the inputs fingerprint (seconds; no store is run).")
def matrix(out: Path, stores: tuple[str, ...], from_reports: bool, timeout: float, budget: float,
           deadline: float, jobs: int, check_only: bool, inputs_only: bool) -> None:
    """Run the suite on every adapter in sessionspec.adapters and write the compatibility matrix."""
    from sessionspec.adapters import STORES

    chosen = list(stores) or list(STORES)
    folder = out.parent / out.stem
    committed_reports, state_file = folder / "reports", folder / "matrix.json"
    recorded: dict[str, Any] = json.loads(state_file.read_text()) if state_file.exists() else {}
    inputs = fingerprint()
    if check_only and inputs_only:
        diffs = compare({"inputs": recorded.get("inputs", {})}, {"inputs": inputs})
        for line in diffs:
            click.echo(line, err=True)
        if diffs:
            click.echo(f"{out} was built from other inputs: regenerate it with `{REGENERATE}`", err=True)
        sys.exit(1 if diffs else 0)
    reused = [s for s in STORES if from_reports or (s not in chosen and not check_only)]
    if from_reports:
        inputs = recorded.get("inputs", {})  # a re-rendered page claims only what its reports were built from
    elif reused and compare({"inputs": recorded.get("inputs", {})}, {"inputs": inputs}):
        raise click.UsageError(
            f"the inputs changed since {state_file} was written, so the committed reports of {', '.join(reused)} "
            f"no longer stand: regenerate every store (`{REGENERATE}`), or see `--check --inputs-only`")
    began = time.monotonic()
    signal.signal(signal.SIGTERM, _on_term)
    with tempfile.TemporaryDirectory(prefix="sessionspec-matrix-") as scratch:
        reports = Path(scratch) if check_only else committed_reports
        reports.mkdir(parents=True, exist_ok=True)
        runs: dict[str, dict[str, Any]] = {}
        for s in reused:
            path = committed_reports / f"{s}.json"
            runs[s] = {"store": s, "report": str(path) if path.exists() else None, "error": "", "seconds": 0.0}
        runs.update(_run_all([s for s in chosen if s not in runs], reports, timeout=timeout, budget=budget, jobs=jobs,
                             deadline=deadline, estimates=_estimates(committed_reports)))
        shown = chosen if check_only else [s for s in STORES if s in runs]
        rows = [load_store(s, runs[s]["report"], runs[s].get("error", "")) for s in shown]
        if check_only:
            for warning in recheck_flips(rows, recorded, reports, timeout=timeout,
                                         left=lambda: began + deadline - time.monotonic()):
                click.echo(f"warning: {warning}", err=True)
    if not from_reports and compare({"inputs": inputs}, {"inputs": fingerprint()}):
        raise click.ClickException("the inputs changed while the matrix ran (an edit to the suite or the adapters): "
                                   "its stores did not all run the same code; run it again")
    today = dt.datetime.now(dt.UTC).strftime("%Y-%m-%d")
    document = _document(rows, inputs)
    if check_only:  # no evidence either way must not make the page differ any more than the verdicts
        rows = [as_recorded(r, recorded) for r in rows]
    page, unreviewed = build_page(rows, date=today, inputs=inputs.get("sources", "unknown"))
    for item in unreviewed:
        click.echo(f"unreviewed failure: {item}{_why(rows, item)}", err=True)
    for r in rows:
        click.echo(f"{r['store']:<20} {runs[r['store']].get('seconds', 0):>7.1f} s  {r['level']:<12} "
                   f"{r.get('versions', '')}")
    click.echo(f"matrix: {len(rows)} stores in {time.monotonic() - began:.0f} s", err=True)
    if check_only:
        if stores:
            recorded = {**recorded, "stores": {s: v for s, v in recorded.get("stores", {}).items() if s in stores}}
        diffs = compare(recorded, document)
        current = out.read_text() if out.exists() else ""
        if _table_part(current) != _table_part(page):
            diffs.append(f"{out}: the page differs from the one these verdicts and findings give")
        for line in diffs:
            click.echo(f"{line}{_why(rows, line)}", err=True)
        if diffs:
            click.echo(f"{out} is stale: regenerate it with `{REGENERATE}`", err=True)
        sys.exit(1 if diffs or unreviewed else 0)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(page)
    state_file.parent.mkdir(parents=True, exist_ok=True)
    state_file.write_text(json.dumps(document, indent=1, ensure_ascii=False, sort_keys=False) + "\n")
    sys.exit(1 if unreviewed else 0)
