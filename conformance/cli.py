"""``sessionspec``: check a session store against the contract; provision throwaway backends.

Thin on purpose: it parses options, resolves the target, hands the run to
:func:`sessionspec.conformance.runner.run_suite` and gives the RunResult to the report
writers. Exit codes (conformance/exitcodes.py): 0 conformant; 1 not conformant; 2 usage or
configuration error; 3 a backend could not be provisioned or reached; 130 interrupted (Ctrl-C).
"""

from __future__ import annotations

import contextlib
import gc
import io
import logging
import os
import shutil
import signal
import sys
import textwrap
import threading
import time
from collections.abc import Callable, Iterator, Sequence
from dataclasses import replace
from pathlib import Path
from types import FrameType
from typing import TYPE_CHECKING, Any, NoReturn

import click

from .clauses import SPEC_VERSIONS, clauses_for, get_clause
from .config import SpecVersion
from .exitcodes import EXIT_BACKEND, EXIT_CODES_TEXT, EXIT_FAILED, EXIT_INTERRUPTED, EXIT_OK, EXIT_USAGE, exit_code_for
from .gate import GateOptions, finish, gate_passes, summary_preface
from .gatecli import claims_override, gate_options, gate_settings, quiet_driver_warnings
from .matrix import matrix
from .plugin import DEFAULT_TIMEOUT
from .targets import TARGET_FORMS

if TYPE_CHECKING:
    from rich.console import Console

    from .provision import Server
    from .results import RunResult

__all__ = ["EXIT_BACKEND", "EXIT_FAILED", "EXIT_INTERRUPTED", "EXIT_OK", "EXIT_USAGE", "main"]

BACKEND_ENV = {
    "redis": "SESSIONSPEC_REDIS_URL",
    "postgres": "SESSIONSPEC_POSTGRES_URL",
    "redis-cluster": "SESSIONSPEC_REDIS_CLUSTER_URL",
}
"""The variables `backends up` exports (the same provision.URL_ENV reads; copied so --help imports no provisioning)."""

EXIT_CODES = EXIT_CODES_TEXT

CHECK_EPILOG = f"""\b
TARGET forms (default: memory):
{textwrap.fill(TARGET_FORMS, 78, initial_indent="  ", subsequent_indent="  ")}

\b
{textwrap.fill(EXIT_CODES, 78)}

\b
Examples:
  sessionspec check                          # the embedded MemoryStore
  sessionspec check redis                    # a throwaway Redis server
  sessionspec check redis://localhost:6379/0 --clause CC-3,CC-4
  sessionspec check myapp.store:make_store --report out.json --junit out.xml
  sessionspec check mymod:factory --divergences ledger.toml
  sessionspec check postgres --markdown "$GITHUB_STEP_SUMMARY"
  sessionspec check --list                   # the clauses and their tests; runs nothing
  sessionspec check mymod:factory --require-level core+atomic --report-dir failures
  sessionspec recheck failures               # the failing tests of that run, again

\b
Settings may live in [tool.sessionspec] in pyproject.toml (see docs/ci.md); flags win.

\b
A divergence ledger is TOML:  [divergences]
                              "TTL-1" = "expiry is lazy: we filter on read"
"""


# -- small helpers ----------------------------------------------------------------------
def _fail(message: str, code: int = EXIT_USAGE, *, prefix: str = "Error: ") -> NoReturn:
    """Print one readable paragraph (existing line breaks kept) on stderr and exit."""
    width = max(40, min(100, shutil.get_terminal_size().columns))
    lines = [textwrap.fill(line, width, subsequent_indent="  ")
             for line in f"{prefix}{message}".splitlines() if line.strip()]
    click.echo("\n".join(lines), err=True)
    raise click.exceptions.Exit(code)


def _split_ids(ctx: click.Context, param: click.Parameter, value: Sequence[str]) -> tuple[str, ...]:
    """--clause LC-1 --clause CC-3,CC-4 -> ("LC-1", "CC-3", "CC-4")."""
    ids = [part.strip() for item in value for part in item.split(",") if part.strip()]
    return tuple(dict.fromkeys(ids))


def _check_clause_ids(ids: Sequence[str], spec_version: str) -> None:
    known = {c.id for c in clauses_for(spec_version)}
    for cid in ids:
        try:
            get_clause(cid)
        except KeyError as exc:
            raise click.BadParameter(str(exc.args[0]), param_hint="'--clause'") from None
        if cid not in known:
            raise click.BadParameter(f"{cid} is not a clause of spec version {spec_version}", param_hint="'--clause'")


def _check_keyword(keyword: str | None) -> None:
    """Refuse a malformed -k before any server is provisioned (pytest would only say USAGE_ERROR)."""
    if not keyword:
        return
    try:
        from _pytest.mark.expression import Expression
    except ImportError:  # pragma: no cover - pytest moved its private parser; let pytest judge
        return
    try:
        Expression.compile(keyword)
    except Exception as exc:  # ParseError or SyntaxError, depending on the pytest version
        raise click.BadParameter(f"{keyword!r} is not a valid -k expression: {exc}", param_hint="'-k'") from None


def _prepare_outputs(paths: Sequence[Path | None]) -> None:
    """Create report folders up front, so a typo fails before the run, not after it."""
    for path in paths:
        if path is None:
            continue
        try:
            path.parent.mkdir(parents=True, exist_ok=True)
        except OSError as exc:
            _fail(f"cannot create the folder for report {str(path)!r}: {exc.strerror or exc}")
        if not os.access(path.parent, os.W_OK):
            _fail(f"cannot write report {str(path)!r}: its folder is not writable")


def _console() -> Console:
    from rich.console import Console

    # Bound to today's stdout: the runner redirects sys.stdout while pytest runs, and the
    # progress display must still reach the real one.
    console = Console(file=sys.stdout, highlight=False, emoji=False)
    if not console.is_terminal and "COLUMNS" not in os.environ:
        console = Console(file=sys.stdout, highlight=False, emoji=False, width=120)  # CI logs: wider than 80
    return console


@contextlib.contextmanager
def _sigint_flag() -> Iterator[threading.Event]:
    """Remember that Ctrl-C was pressed even when pytest swallows the KeyboardInterrupt."""
    pressed = threading.Event()
    if threading.current_thread() is not threading.main_thread():
        yield pressed
        return

    def handler(signum: int, frame: FrameType | None) -> None:
        pressed.set()
        signal.default_int_handler(signum, frame)

    def quiet_interrupted_tasks(record: logging.LogRecord) -> bool:
        """Drop asyncio's "Task exception was never retrieved" for the task Ctrl-C stopped."""
        return not (pressed.is_set() and record.exc_info is not None
                    and isinstance(record.exc_info[1], KeyboardInterrupt))

    previous = signal.signal(signal.SIGINT, handler)
    asyncio_log = logging.getLogger("asyncio")
    asyncio_log.addFilter(quiet_interrupted_tasks)
    try:
        yield pressed
    finally:
        signal.signal(signal.SIGINT, previous)
        if pressed.is_set():
            gc.collect()  # report (and drop) the stopped tasks while the filter is still on
        asyncio_log.removeFilter(quiet_interrupted_tasks)


# -- the command group ------------------------------------------------------------------
@click.group(context_settings={"help_option_names": ["-h", "--help"], "max_content_width": 100},
             epilog="Run 'sessionspec check --help' for TARGET forms, exit codes and examples.")
@click.version_option(package_name="sessionspec", prog_name="sessionspec")
def main() -> None:
    """Check a session store against the sessionspec contract.

    The contract (docs/spec.md) is a list of clauses with stable IDs (LC-1, TTL-2, CC-3, ...);
    `check` runs the conformance suite against a TARGET and reports a verdict per clause and
    a conformance level (none, core, core+atomic, full).
    """


@main.command(epilog=CHECK_EPILOG, short_help="Run the conformance suite against TARGET.")
@click.argument("target", required=False, metavar="[TARGET]")
@click.option("--clause", "clause_ids", multiple=True, metavar="ID", callback=_split_ids,
              help="Only check these clauses (repeatable, or comma-separated: --clause CC-3,CC-4).")
@click.option("-k", "keyword", metavar="EXPR", help="Only run suite tests whose names match (pytest -k syntax).")
@click.option("--replay", "replay", multiple=True, metavar="VARIANT:BLOB",
              help="Replay a model-check failure step for step (copy the line its failure prints).")
@click.option("--report", type=click.Path(dir_okay=False, path_type=Path), metavar="FILE.json",
              help="Write the JSON report (everything the run knew; re-readable).")
@click.option("--junit", type=click.Path(dir_okay=False, path_type=Path), metavar="FILE.xml",
              help="Write JUnit XML (one suite per clause family) for CI test tabs.")
@click.option("--markdown", type=click.Path(dir_okay=False, path_type=Path), metavar="FILE.md",
              help="Write a Markdown summary (appended when FILE is $GITHUB_STEP_SUMMARY).")
@click.option("--divergences", type=click.Path(dir_okay=False, path_type=Path), metavar="FILE.toml",
              help="A ledger of known divergences: listed failing clauses do not fail the run; "
                   "listed passing clauses do (remove the stale entry).")
@click.option("--spec-version", type=SpecVersion(), default=SPEC_VERSIONS[-1], show_default=True,
              help="Check the clauses of this spec version (pin it so upgrades never move your CI gate).")
@click.option("--timeout", type=click.FloatRange(min=0, min_open=True), default=DEFAULT_TIMEOUT, show_default=True,
              metavar="SECONDS", help="Time limit per suite test; a hung store fails that test, not the run (one still "
                   "answering at the limit leaves it not checked).")
@click.option("--require-backends", is_flag=True, envvar="SESSIONSPEC_REQUIRE_BACKENDS", hidden=True,
              help="Accepted for compatibility: `check` always exits 3 when a backend cannot be provisioned.")
@click.option("--redis-url", envvar="SESSIONSPEC_REDIS_URL", metavar="URL",
              help="Use this Redis server for the `redis` target [env: SESSIONSPEC_REDIS_URL].")
@click.option("--postgres-url", envvar="SESSIONSPEC_POSTGRES_URL", metavar="URL",
              help="Use this Postgres server for the `postgres` target [env: SESSIONSPEC_POSTGRES_URL].")
@click.option("--redis-cluster-url", envvar="SESSIONSPEC_REDIS_CLUSTER_URL", metavar="URL",
              help="Use this Redis Cluster for `redis-cluster` [env: SESSIONSPEC_REDIS_CLUSTER_URL].")
@click.option("--list", "list_only", is_flag=True,
              help="Print the clauses of the spec version and the suite tests checking each; run nothing.")
@click.option("-q", "--quiet", is_flag=True, help="No progress and no table: failures and the summary line only.")
@click.option("-v", "--verbose", is_flag=True, help="Show each failing test's full details (tracebacks, diffs).")
@click.pass_context
@gate_options
def check(ctx: click.Context, target: str | None, clause_ids: tuple[str, ...], keyword: str | None,
          replay: tuple[str, ...],
          report: Path | None, junit: Path | None, markdown: Path | None, divergences: Path | None,
          spec_version: str, timeout: float, require_backends: bool, redis_url: str | None,
          postgres_url: str | None, redis_cluster_url: str | None, list_only: bool, quiet: bool,
          verbose: bool, **gate: Any) -> None:
    """Run the conformance suite against TARGET and report a verdict per clause."""
    if quiet and verbose:
        raise click.UsageError("--quiet and --verbose contradict each other; choose one.")
    _check_clause_ids(clause_ids, spec_version)
    _check_keyword(keyword)
    if replay:
        from .plugin import parse_replay
        from .targets import TargetError

        try:
            parse_replay(replay)
        except TargetError as exc:
            raise click.BadParameter(str(exc), param_hint="'--replay'") from None
    if list_only:
        ctx.exit(_list_clauses(spec_version, names=target is not None or verbose))
    ledger = _load_ledger(divergences)
    _prepare_outputs([report, junit, markdown])
    settings = gate_settings(ctx, gate)
    quiet_driver_warnings()

    from .targets import TargetOptions

    options = TargetOptions(redis_url=redis_url, postgres_url=postgres_url,
                            redis_cluster_url=redis_cluster_url, require_backends=require_backends,
                            claims=claims_override(gate))
    console = _console()
    result = _run(console, "memory" if target is None else target, options, clause_ids=clause_ids, keyword=keyword,
                  spec_version=spec_version, ledger=ledger, timeout=timeout, quiet=quiet, replay=replay)
    if not result.tests and not result.errors:
        _fail("no suite test matched the selection (--clause / -k), so nothing was checked and no report "
              "was written. Run 'sessionspec check --list' to see which clauses have tests.")
    written = _write_reports(result, report=report, junit=junit, markdown=markdown, gate=settings)

    from .report.terminal import print_result

    print_result(console, result, verbose=verbose, written=written, quiet=quiet)
    ctx.exit(finish(console, result, settings, rerun=lambda ids, claims: _run(
        console, target or "memory", replace(options, claims=claims), clause_ids=ids, keyword=None,
        spec_version=spec_version, ledger={}, timeout=timeout, quiet=True)))


def _load_ledger(path: Path | None) -> dict[str, str]:
    if path is None:
        return {}
    from .results import LedgerError, load_divergences

    try:
        return load_divergences(path)
    except LedgerError as exc:
        _fail(str(exc))


def _run(console: Console, spec: str, options: Any, *, clause_ids: Sequence[str], keyword: str | None,
         spec_version: str, ledger: dict[str, str], timeout: float, quiet: bool,
         replay: Sequence[str] = ()) -> RunResult:
    """Resolve and run; every way a target can be unusable ends here as exit 2, Ctrl-C as 130."""
    from .progress import progress_for
    from .runner import run_suite
    from .targets import TargetError, resolve_target

    with _sigint_flag() as pressed:
        try:
            resolved = resolve_target(spec, options)
        except TargetError as exc:
            _fail(str(exc), exit_code_for(exc))
        except KeyboardInterrupt:
            _fail("while preparing the target.", EXIT_INTERRUPTED, prefix="Interrupted ")
        try:
            with progress_for(console, resolved.spec, quiet=quiet) as listener:
                result = run_suite(resolved, clauses=clause_ids, keyword=keyword, spec_version=spec_version,
                                   divergences=ledger, timeout=timeout, listener=listener, replay=replay)
        except TargetError as exc:
            _fail(str(exc), exit_code_for(exc))
        except TimeoutError:
            _fail(f"the store of target {spec!r} did not open within the time limit while the suite read its "
                  "capabilities; check that its backend is reachable.", EXIT_BACKEND)
        except KeyboardInterrupt:
            pressed.set()
        finally:
            resolved.close()
        if pressed.is_set():
            _fail("(Ctrl-C): the target was closed and no report was written.", EXIT_INTERRUPTED,
                  prefix="Interrupted ")
    return result


def _write_reports(result: RunResult, *, report: Path | None, junit: Path | None,
                   markdown: Path | None, gate: GateOptions | None = None) -> list[str]:
    from .report.json_report import write_json
    from .report.junit import write_junit
    from .report.markdown import write_markdown

    summary = os.environ.get("GITHUB_STEP_SUMMARY")
    jobs: list[tuple[Path | None, Callable[[RunResult, Path], None]]] = [
        (report, write_json),
        (junit, write_junit),
        (markdown, lambda r, p: write_markdown(r, p, append=bool(summary) and str(p) == summary,
                                               preface=summary_preface(r, gate) if gate else (),
                                               ok=gate_passes(r, gate) if gate else None)),
    ]
    written = []
    for path, writer in jobs:
        if path is None:
            continue
        try:
            writer(result, path)
        except OSError as exc:
            _fail(f"could not write report {str(path)!r}: {exc.strerror or exc}")
        written.append(str(path))
    return written


# -- --list -----------------------------------------------------------------------------
def collect_suite_tests(spec_version: str) -> tuple[dict[str, dict[str, int]], list[str]]:
    """Clause ID -> suite test function -> number of test items, by pytest collection; runs no test.

    Collected through the same plugin and arguments as a run, so parametrization and the
    spec-version filter match what `check` would execute. Also returns collection errors
    (a suite module that does not import).
    """
    import pytest

    from .plugin import MARKER, SUITE_DIR

    known = {c.id for c in clauses_for(spec_version)}
    found: dict[str, dict[str, int]] = {}
    errors: list[str] = []

    class Collector:
        def pytest_collection_modifyitems(self, items: list[pytest.Item]) -> None:
            for item in items:
                marker = item.get_closest_marker(MARKER)
                name = getattr(item, "originalname", None) or item.name
                for cid in marker.args if marker else ():
                    if cid in known:
                        tally = found.setdefault(cid, {})
                        tally[name] = tally.get(name, 0) + 1

        def pytest_collectreport(self, report: pytest.CollectReport) -> None:
            if report.failed:
                errors.append(f"{report.nodeid}: {report.longreprtext.strip().splitlines()[-1:]}")

    args = [str(SUITE_DIR), "--collect-only", "-q", "-p", "no:cacheprovider", "-o", "python_files=test_*.py"]
    with contextlib.redirect_stdout(io.StringIO()):
        pytest.main(args, plugins=[Collector()])
    return found, errors


def _list_clauses(spec_version: str, *, names: bool) -> int:
    from rich.text import Text

    from .report.terminal import catalogue_table, print_test_names

    tests, errors = collect_suite_tests(spec_version)
    console = _console()
    clauses = list(clauses_for(spec_version))
    console.print(catalogue_table(clauses, tests))
    if names:
        console.print()
        print_test_names(console, clauses, tests)
    untested = [c.id for c in clauses if c.id not in tests and c.status == "active"]
    console.print(Text(f"spec {spec_version}: {len(clauses)} clauses, {sum(c.id in tests for c in clauses)} with "
                       f"suite tests" + (f"; no test yet: {', '.join(untested)}" if untested else ""), style="dim"))
    for error in errors:
        console.print(Text(f"collection error: {error}", style="red"))
    return EXIT_FAILED if errors else EXIT_OK


@main.command("clauses")
@click.option("--spec-version", type=SpecVersion(), default=SPEC_VERSIONS[-1], show_default=True)
@click.option("-v", "--verbose", is_flag=True, help="Name the suite tests of each clause.")
@click.pass_context
def clauses_command(ctx: click.Context, spec_version: str, verbose: bool) -> None:
    """List the contract's clauses (same as `check --list`)."""
    ctx.exit(_list_clauses(spec_version, names=verbose))


# -- backends ---------------------------------------------------------------------------
@main.group(short_help="Throwaway Redis/Postgres servers for manual runs.")
def backends() -> None:
    """Throwaway Redis / Postgres servers for running the suite by hand."""


STOP_SIGNALS = (signal.SIGINT, signal.SIGTERM)
STOP_POLL = 0.2  # seconds: how late a stop signal may be seen (see _wait_for_interrupt)


def _wait_for_interrupt() -> None:
    """Block until Ctrl-C, SIGINT or SIGTERM.

    Handlers for both are installed here, even when SIGINT arrived ignored: a shell starts
    `cmd &` with SIGINT ignored, yet `kill -INT` is how a script stops the command. The
    wait polls instead of blocking once for long: CPython runs a signal's handler only when
    the blocking call is interrupted, so a signal landing just before the call began went
    unseen until its timeout (seen here: `backends up` missed one Ctrl-C in every 12 to 70 runs).
    """
    received: list[int] = []
    previous = {sig: signal.signal(sig, lambda signum, frame: received.append(signum)) for sig in STOP_SIGNALS}
    try:
        while not received:
            time.sleep(STOP_POLL)
    finally:
        for sig, handler in previous.items():
            signal.signal(sig, handler)


@backends.command("up", epilog="""\b
Example:
  sessionspec backends up redis postgres     # then, in another shell, paste the export lines
  sessionspec check redis                    # uses SESSIONSPEC_REDIS_URL instead of provisioning
""")
@click.argument("kinds", nargs=-1, type=click.Choice(tuple(BACKEND_ENV)), metavar="[redis|postgres|redis-cluster]...")
def backends_up(kinds: tuple[str, ...]) -> None:
    """Start throwaway servers, print their SESSIONSPEC_*_URL exports, keep them until Ctrl-C.

    Each server is provisioned from a local Docker image or local binaries (never a pull);
    the servers listen on 127.0.0.1 and are torn down on exit.
    """
    from .provision import ProvisionError, describe, provision

    servers: list[Server] = []
    try:
        for kind in dict.fromkeys(kinds or ("redis", "postgres")):
            try:
                server = provision(kind)
            except ProvisionError as exc:
                _fail(str(exc), EXIT_BACKEND)
            servers.append(server)
            click.echo(f"# {describe(server)}", err=True)
        for server in servers:
            click.echo(f"export {BACKEND_ENV[server.kind]}={server.url}")
        click.echo("# servers are up; press Ctrl-C to stop them", err=True)
        _wait_for_interrupt()
    except KeyboardInterrupt:
        pass
    finally:
        for server in reversed(servers):
            with contextlib.suppress(Exception):
                server.close()
        if servers:
            click.echo("# servers stopped", err=True)


from .recheck import recheck_command  # noqa: E402 - registered last, it reuses the helpers above

main.add_command(recheck_command)

from .cli_load import load  # noqa: E402 - the commands live in their own modules
from .cli_serve import serve  # noqa: E402

main.add_command(serve)
main.add_command(load)
main.add_command(matrix)  # sessionspec matrix: the framework compatibility page (conformance/matrix.py)

if __name__ == "__main__":
    main()
