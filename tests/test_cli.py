"""The ``sessionspec`` command line: exit codes, readable errors, reports, the ledger, --list, Ctrl-C.

Runs are narrowed to LC-1's tests in test_lifecycle.py (multi-clause tests elsewhere, such as
the stateful model test, are slow), so each takes about a second;
small targets live in tests/fixtures/cli_targets.py, put on sys.path as ``cli_targets``.
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
import xml.etree.ElementTree as ET
from pathlib import Path
from typing import Any

import pytest
from click.testing import CliRunner, Result
from rich.console import Console

from sessionspec.conformance import cli, progress
from sessionspec.conformance.report.json_report import load_json_report
from sessionspec.conformance.results import TestOutcome as Outcome

FIXTURES = Path(__file__).resolve().parent / "fixtures"
FAST = ["--clause", "LC-1", "-k", "test_lifecycle"]


@pytest.fixture(autouse=True)
def _fixture_targets(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.syspath_prepend(str(FIXTURES))
    for name in ("SESSIONSPEC_REDIS_URL", "SESSIONSPEC_POSTGRES_URL", "SESSIONSPEC_REDIS_CLUSTER_URL",
                 "GITHUB_STEP_SUMMARY", "COLUMNS"):
        monkeypatch.delenv(name, raising=False)


def invoke(*args: str) -> Result:
    return CliRunner().invoke(cli.main, list(args), catch_exceptions=False)


def assert_one_paragraph_error(result: Result, code: int = 2) -> None:
    assert result.exit_code == code, result.output
    assert "Traceback" not in result.output
    assert result.stderr.startswith("Error: "), result.stderr
    assert "\n\n" not in result.stderr.strip(), "the message must be one paragraph"


# ------------------------------------------------------------------ runs and reports
def test_check_memory_passes_and_writes_valid_reports(tmp_path: Path) -> None:
    paths = {"--report": tmp_path / "out" / "r.json", "--junit": tmp_path / "out" / "r.xml",
             "--markdown": tmp_path / "r.md"}
    result = invoke("check", "memory", *FAST, *(str(a) for pair in paths.items() for a in pair))
    assert result.exit_code == 0, result.output
    assert "LC-1" in result.stdout and "PASS (clauses:" in result.stdout
    assert str(paths["--report"]) in result.stdout, "the written reports are named"
    loaded = load_json_report(paths["--report"])
    assert {c.clause.id: c.verdict for c in loaded.clauses}["LC-1"] == "pass"
    assert loaded.selected == frozenset({"LC-1"}) and loaded.target == "memory"
    root = ET.parse(paths["--junit"]).getroot()
    assert root.get("failures") == "0" and any(c.get("name", "").startswith("LC-1 ") for c in root.iter("testcase"))
    assert paths["--markdown"].read_text(encoding="utf-8").startswith("## sessionspec: `memory` ✔ PASS")


def test_default_target_is_memory_and_clauses_may_be_comma_separated(tmp_path: Path) -> None:
    report = tmp_path / "r.json"
    result = invoke("check", "--clause", "LC-1,LC-1", "-k", "test_lifecycle", "--report", str(report), "-q")
    assert result.exit_code == 0, result.output
    data = json.loads(report.read_text(encoding="utf-8"))
    assert (data["target"], data["selected"]) == ("memory", ["LC-1"])


def test_a_failing_clause_exits_1_and_names_the_test() -> None:
    result = invoke("check", "cli_targets:drops_owner", *FAST)
    assert result.exit_code == 1, result.output
    assert "FAIL" in result.stdout and "test_create_returns_v0_and_get_returns_the_same_session" in result.stdout
    assert "Failures" in result.stdout and "test_lifecycle.py" not in result.stdout


def test_verbose_shows_the_failure_details() -> None:
    result = invoke("check", "cli_targets:drops_owner", *FAST, "--verbose")
    assert result.exit_code == 1 and "test_lifecycle.py" in result.stdout, "the traceback location is shown"


def test_quiet_prints_only_failures_and_the_summary() -> None:
    result = invoke("check", "memory", *FAST, "--quiet")
    assert result.exit_code == 0 and result.stdout.strip().startswith("PASS (clauses:"), result.stdout


def test_ci_progress_is_one_line_per_family() -> None:
    result = invoke("check", "memory", *FAST)
    lines = result.stdout.splitlines()
    assert lines[0] == "sessionspec: checking memory" and lines[1].startswith("running ")
    assert lines[2].startswith("LC ") and "passed" in lines[2]


# ------------------------------------------------------------------ bad targets and usage
@pytest.mark.parametrize("target", [
    "nosuchscheme://x",
    "nosuchmodule:factory",
    "memory:bad",
    "cli_targets:not_a_store",
    "cli_targets:NOT_CALLABLE",
    "cli_targets:missing",
    "",
])
def test_an_unusable_target_exits_2_with_one_readable_paragraph(target: str) -> None:
    result = invoke("check", target, *FAST)
    assert_one_paragraph_error(result)
    assert "Clause" not in result.stdout, "nothing ran, so no table"


@pytest.mark.parametrize("args", [
    ["--clause", "XX-9"],
    ["--clause", "LC-1,nope"],
    ["-k", "a and ("],
    ["--quiet", "--verbose"],
    ["--spec-version", "9.9"],
    ["--timeout", "0"],
])
def test_bad_options_exit_2(args: list[str]) -> None:
    result = invoke("check", "memory", *args)
    assert result.exit_code == 2, result.output
    assert "Traceback" not in result.output and "Error:" in result.stderr


def test_a_selection_that_matches_no_test_exits_2() -> None:
    result = invoke("check", "memory", *FAST, "-k", "no_test_has_this_name")
    assert_one_paragraph_error(result)
    assert "nothing was checked" in " ".join(result.stderr.split())


# ------------------------------------------------------------------ the divergence ledger
def ledger(tmp_path: Path, body: str) -> str:
    path = tmp_path / "ledger.toml"
    path.write_text(body, encoding="utf-8")
    return str(path)


def test_a_listed_failing_clause_is_a_known_divergence(tmp_path: Path) -> None:
    path = ledger(tmp_path, '[divergences]\n"LC-1" = "we do not keep owners"\n')
    result = invoke("check", "cli_targets:drops_owner", *FAST, "--divergences", path)
    assert result.exit_code == 0, result.output
    assert "divergence" in result.stdout and "we do not keep owners" in result.stdout


def test_a_listed_passing_clause_is_stale_and_fails_the_run(tmp_path: Path) -> None:
    path = ledger(tmp_path, '[divergences]\n"LC-1" = "we do not keep owners"\n')
    result = invoke("check", "memory", *FAST, "--divergences", path)
    assert result.exit_code == 1, result.output
    assert "stale" in result.stdout and "remove the stale entry" in result.stdout


@pytest.mark.parametrize("body", [
    '[divergences]\n"XX-9" = "no such clause"\n',
    '[divergences]\n"LC-1" = ""\n',
    "not toml [",
    '"LC-1" = "no table"\n',
    None,
])
def test_an_unreadable_ledger_exits_2(tmp_path: Path, body: str | None) -> None:
    path = ledger(tmp_path, body) if body is not None else str(tmp_path / "missing.toml")
    assert_one_paragraph_error(invoke("check", "memory", *FAST, "--divergences", path))


# ------------------------------------------------------------------ --list, help, version
@pytest.fixture
def no_runs(monkeypatch: pytest.MonkeyPatch) -> None:
    def refuse(*args: Any, **kwargs: Any) -> None:
        raise AssertionError("--list must not run the suite")

    monkeypatch.setattr("sessionspec.conformance.runner.run_suite", refuse)


@pytest.mark.usefixtures("no_runs")
def test_list_prints_the_clause_table_without_running_anything() -> None:
    result = invoke("check", "--list")
    assert result.exit_code == 0, result.output
    assert all(cid in result.stdout for cid in ("LC-1", "MG-3", "HY-3")) and "planned" in result.stdout
    assert "test_create_returns_v0" not in result.stdout, "test names only with a target or --verbose"


@pytest.mark.usefixtures("no_runs")
def test_list_with_a_target_names_the_tests_and_never_opens_the_target() -> None:
    result = invoke("check", "cli_targets:raises", "--list")
    assert result.exit_code == 0, result.output
    assert "test_create_returns_v0_and_get_returns_the_same_session" in result.stdout


@pytest.mark.usefixtures("no_runs")
def test_clauses_is_check_list() -> None:
    result = invoke("clauses")
    assert result.exit_code == 0 and "LC-1" in result.stdout


def test_help_explains_targets_exit_codes_and_examples() -> None:
    text = " ".join(invoke("check", "--help").stdout.split())
    for needle in ("package.module:factory", "redis://", "Exit codes", "130 interrupted", "Examples",
                   "--divergences", "SESSIONSPEC_REDIS_URL"):
        assert needle in text, needle
    assert "check" in invoke("--help").stdout


def test_version() -> None:
    result = invoke("--version")
    assert result.exit_code == 0 and result.stdout.startswith("sessionspec, version ")


# ------------------------------------------------------------------ backends up
class FakeServer:
    controllable = True
    persistent = True

    def __init__(self, kind: str, closed: list[str]) -> None:
        self.kind, self.url, self.method, self._closed = kind, f"{kind}://127.0.0.1:1/0", "fake", closed

    def stop(self) -> None: ...

    def start(self) -> None: ...

    def close(self) -> None:
        self._closed.append(self.kind)


def test_backends_up_prints_exports_and_closes_on_ctrl_c(monkeypatch: pytest.MonkeyPatch) -> None:
    from sessionspec.conformance import provision

    closed: list[str] = []
    monkeypatch.setattr(provision, "provision", lambda kind, **kw: FakeServer(kind, closed))

    def interrupt() -> None:
        raise KeyboardInterrupt

    monkeypatch.setattr(cli, "_wait_for_interrupt", interrupt)
    result = invoke("backends", "up")
    assert result.exit_code == 0, result.output
    assert result.stdout.splitlines() == ["export SESSIONSPEC_REDIS_URL=redis://127.0.0.1:1/0",
                                          "export SESSIONSPEC_POSTGRES_URL=postgres://127.0.0.1:1/0"]
    assert closed == ["postgres", "redis"] and "fake" in result.stderr


def test_backends_up_reports_what_it_could_not_provision(monkeypatch: pytest.MonkeyPatch) -> None:
    from sessionspec.conformance import provision

    closed: list[str] = []

    def fake(kind: str, **kw: Any) -> FakeServer:
        if kind == "postgres":
            raise provision.ProvisionError("could not provision a postgres server; tried:", [("local", "no initdb")])
        return FakeServer(kind, closed)

    monkeypatch.setattr(provision, "provision", fake)
    result = invoke("backends", "up", "redis", "postgres")
    assert result.exit_code == 3 and "no initdb" in result.stderr and "Traceback" not in result.output
    assert closed == ["redis"], "servers already up are closed"


def test_backends_up_refuses_unknown_kinds() -> None:
    assert invoke("backends", "up", "mysql").exit_code == 2


WAITER = """
import signal, sys
from sessionspec.conformance.cli import _wait_for_interrupt
print("waiting", flush=True)
_wait_for_interrupt()
print("stopped", all(signal.getsignal(s) is signal.SIG_IGN for s in (signal.SIGINT, signal.SIGTERM)), flush=True)
"""


def _ignore_stop_signals() -> None:
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    signal.signal(signal.SIGTERM, signal.SIG_IGN)


@pytest.mark.skipif(sys.platform == "win32", reason="POSIX signals")
@pytest.mark.parametrize("signame", ["SIGINT", "SIGTERM"])
def test_backends_up_stops_on_a_signal_even_when_started_with_it_ignored(signame: str) -> None:
    """`sessionspec backends up &` in a script starts with SIGINT ignored; `kill -INT` must still stop it.

    The child starts with both stop signals ignored and is signalled until it ends (at
    most 30 s), so a signal that lands before its handlers are installed is only lost,
    not fatal. The old wait never ended on SIGINT.
    """
    child = subprocess.Popen([sys.executable, "-c", WAITER], stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                             text=True, preexec_fn=_ignore_stop_signals)
    try:
        assert child.stdout is not None and child.stdout.readline() == "waiting\n"
        for _ in range(300):
            child.send_signal(getattr(signal, signame))
            try:
                child.wait(timeout=0.1)
                break
            except subprocess.TimeoutExpired:
                continue
        out, err = child.communicate(timeout=5)
    finally:
        if child.poll() is None:
            child.kill()
            child.wait()
    assert child.returncode == 0, err
    assert out == "stopped True\n", "it stopped, and the ignored dispositions it inherited are restored"


# ------------------------------------------------------------------ progress displays
def lc1_outcome(status: str) -> Outcome:
    return Outcome(nodeid="x::t", name="test_x[weird]", clauses=("LC-1",), status=status, duration=0.1)  # type: ignore[arg-type]


def test_line_progress_prints_one_line_per_family() -> None:
    console = Console(file=(buffer := __import__("io").StringIO()), width=80)
    with progress.progress_for(console, "memory") as listener:
        assert isinstance(listener, progress.LineProgress)
        listener("collected", 3)
        for status in ("passed", "failed", "skipped"):
            listener("outcome", lc1_outcome(status))
    lines = buffer.getvalue().splitlines()
    assert lines[:2] == ["sessionspec: checking memory", "running 3 tests"]
    assert lines[2].split()[:2] == ["LC", ".Fs"] and len(lines) == 3


def test_rich_progress_on_a_terminal_leaves_nothing_behind() -> None:
    import io

    console = Console(file=(buffer := io.StringIO()), width=80, force_terminal=True)
    with progress.progress_for(console, "memory") as listener:
        assert isinstance(listener, progress.RichProgress)
        listener("collected", 2)
        listener("outcome", lc1_outcome("failed"))
        listener("outcome", lc1_outcome("passed"))
        assert listener.failed == 1
    assert "test_x" in buffer.getvalue()


# ------------------------------------------------------------------ real processes
def run_python(code: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120, cwd=FIXTURES)


def test_check_memory_imports_no_docker_machinery() -> None:
    done = run_python(
        "import sys\n"
        "from sessionspec.conformance.cli import main\n"
        "code = main(['check', 'memory', '--clause', 'LC-1', '-q'], standalone_mode=False)\n"
        "heavy = sorted(m for m in sys.modules if m.split('.')[0] in ('docker', 'testcontainers'))\n"
        "print('RESULT', code, heavy)\n"
    )
    assert "RESULT 0 []" in done.stdout, done.stdout + done.stderr


@pytest.mark.skipif(shutil.which("sessionspec") is None, reason="the sessionspec script is not installed")
def test_the_installed_script_runs() -> None:
    done = subprocess.run(["sessionspec", "check", "cli_targets:drops_owner", *FAST, "-q"], capture_output=True,
                          text=True, timeout=120, cwd=FIXTURES)
    assert done.returncode == 1 and "FAIL" in done.stdout, done.stdout + done.stderr


@pytest.mark.skipif(sys.platform == "win32", reason="SIGINT delivery to a child is POSIX-only here")
def test_ctrl_c_exits_130_and_closes_the_store(tmp_path: Path) -> None:
    """The hanging store reports through an inherited pipe (pytest captures the child's stdout/stderr)."""
    read_end, write_end = os.pipe()
    env = dict(os.environ, CLI_TARGETS_REPORT_FD=str(write_end), PYTHONPATH=str(FIXTURES))
    child = subprocess.Popen(
        [sys.executable, "-c", "from sessionspec.conformance.cli import main; main()", "check", "cli_targets:hangs",
         *FAST, "--report", str(tmp_path / "r.json")],
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, pass_fds=[write_end], env=env, cwd=tmp_path,
    )
    os.close(write_end)
    try:
        with os.fdopen(read_end) as events:
            while (line := events.readline()) and line.strip() != "entered get":
                pass
            assert line, "the child ended before the hanging test started"
            child.send_signal(signal.SIGINT)
            out, err = child.communicate(timeout=60)
            remaining = events.read()
    finally:
        if child.poll() is None:
            child.kill()
    assert child.returncode == 130, out + err
    assert "closed" in remaining.split(), "the store under test was closed"
    assert "Traceback" not in err and "Interrupted" in err and not (tmp_path / "r.json").exists()


# -- issue 12: replay, partial runs, one screen per failure ---------------------------------------------
def test_a_model_failure_prints_a_replay_command_that_replays_it() -> None:
    first = invoke("check", "tests.broken:touch_bumps_version", "--clause", "VER-1", "-k", "operation_sequences")
    assert first.exit_code == 1, first.output
    assert "@reproduce_failure" not in first.output
    line = next(s.strip() for s in first.output.splitlines() if s.strip().startswith("replay: sessionspec check"))
    args = line.removeprefix("replay: sessionspec ").split()
    again = invoke(*args)
    assert again.exit_code == 1, again.output
    assert "VER-1: touch(" in again.output, again.output
    assert "Level      not determined (partial run)" in again.output


def test_a_clause_run_reports_no_level_and_only_its_clause() -> None:
    result = invoke("check", "memory", "--clause", "LC-1", "-k", "test_lifecycle or operation_sequences")
    assert result.exit_code == 0, result.output
    assert "Level      not determined (partial run)" in result.output
    rows = [line.split()[0] for line in result.output.splitlines()
            if "│" in line and line[:4] in ("LC-1", "TTL-", "VER-")]
    assert rows == ["LC-1"], f"the model test must not mark its other clauses passed: {rows}"


def test_a_failing_clause_takes_at_most_30_lines_and_its_first_line_says_what_to_fix() -> None:
    result = invoke("check", "tests.broken:validates_after_existence", "--clause", "ST-2", "-q")
    assert result.exit_code == 1, result.output
    lines = result.output.splitlines()
    start = next(i for i, s in enumerate(lines) if s.startswith("  ST-2 "))
    block = [s for s in lines[start + 1:] if not s.startswith("FAIL")]
    assert len(block) + 1 <= 30, "\n".join(lines)
    assert "validate the arguments first" in lines[start] or "§4.6" in lines[start], lines[start]


def test_the_suite_runs_with_its_own_plugins_only_and_leaves_the_environment_as_it_was(
        monkeypatch: pytest.MonkeyPatch) -> None:
    """Every installed pytest plugin (framework tracing, API testers, Locust) used to be imported and
    assertion-rewritten on each check: 1.4 s of every `sessionspec check` on a machine with the extras."""
    from sessionspec.conformance import plugin, runner

    seen: dict[str, Any] = {}

    def spy(config: pytest.Config) -> None:
        seen["plugins"] = {name for name, _ in config.pluginmanager.list_name_plugin()}
        seen["autoload"] = os.environ.get("PYTEST_DISABLE_PLUGIN_AUTOLOAD")

    monkeypatch.delenv("PYTEST_DISABLE_PLUGIN_AUTOLOAD", raising=False)
    original = plugin.pytest_configure

    def configure(config: pytest.Config) -> None:
        spy(config)
        original(config)

    monkeypatch.setattr(plugin, "pytest_configure", configure)
    result = runner.run_suite("memory", clauses=["ID-1"])
    assert result.exit_code == 0
    assert seen["autoload"] == "1" and "PYTEST_DISABLE_PLUGIN_AUTOLOAD" not in os.environ
    assert not {"timeout", "anyio", "locust", "schemathesis", "langsmith_plugin"} & seen["plugins"], seen["plugins"]
    assert plugin.__name__ in seen["plugins"]
