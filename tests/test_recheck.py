"""A failing run leaves a report directory; `sessionspec recheck DIR` runs exactly that again.

The loop from the issue: the broken store fails, the directory holds what failed and how to
re-run it, recheck fails again on the broken store and passes on the fixed one.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from click.testing import CliRunner, Result

from sessionspec.conformance import cli
from sessionspec.conformance.recheck import load_plan
from sessionspec.conformance.report.directory import write_report_dir
from sessionspec.conformance.results import RunResult
from sessionspec.conformance.results import TestOutcome as Outcome

FIXTURES = Path(__file__).resolve().parent / "fixtures"
FAST = ["--clause", "LC-1", "-k", "test_lifecycle"]
FAILING_TEST = "test_create_returns_v0_and_get_returns_the_same_session"


@pytest.fixture(autouse=True)
def _env(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.syspath_prepend(str(FIXTURES))
    monkeypatch.setenv("SESSIONSPEC_NO_CONFIG", "1")
    monkeypatch.delenv("GITHUB_STEP_SUMMARY", raising=False)


def invoke(*args: str) -> Result:
    return CliRunner().invoke(cli.main, list(args), catch_exceptions=False)


def test_fail_then_recheck_fails_again_then_passes_on_the_fixed_store(tmp_path: Path) -> None:
    folder = tmp_path / "failures"
    first = invoke("check", "cli_targets:drops_owner", *FAST, "-q", "--report-dir", str(folder))
    assert first.exit_code == 1
    assert f"sessionspec recheck {folder}" in " ".join(first.stdout.split())

    record = json.loads((folder / "failures.json").read_text(encoding="utf-8"))
    assert record["target"] == "cli_targets:drops_owner" and record["spec_version"] == "1.0"
    assert [f["clause"] for f in record["failing"]] == ["LC-1"]
    assert record["failing"][0]["tests"][0]["function"] == FAILING_TEST
    assert record["failing"][0]["tests"][0]["duration_s"] >= 0
    assert record["environment"]["python"] and "sessionspec" in record["environment"]["packages"]
    assert (folder / "report.json").is_file() and "sessionspec recheck" in (folder / "README.md").read_text()
    assert FAILING_TEST in (load_plan(folder).keyword or "").split(" or ")

    again = invoke("recheck", str(folder), "-q")
    assert again.exit_code == 1, again.output
    assert "LC-1: failed before, fails again" in again.stdout

    fixed = invoke("recheck", str(folder), "memory", "-q")
    assert fixed.exit_code == 0, fixed.output
    assert "LC-1: failed before, passes now" in fixed.stdout


def test_a_passing_run_writes_no_directory(tmp_path: Path) -> None:
    folder = tmp_path / "failures"
    assert invoke("check", "memory", *FAST, "-q", "--report-dir", str(folder)).exit_code == 0
    assert not folder.exists()


def test_recheck_of_something_else_exits_2(tmp_path: Path) -> None:
    result = invoke("recheck", str(tmp_path))
    assert result.exit_code == 2 and "failures.json" in result.stderr
    (tmp_path / "failures.json").write_text('{"schema": 1}', encoding="utf-8")
    assert invoke("recheck", str(tmp_path)).exit_code == 2


def test_histories_seeds_and_replay_lines_are_kept(tmp_path: Path) -> None:
    history = [{"process": 0, "type": "invoke", "f": "apply", "value": {"a": 1}, "time": 0}]
    tests = [
        Outcome("suite::cc6[local]", "test_linearizable[local]", ("CC-6",), "failed", 2.5, "not linearizable",
                "details", {"seed": 1234, "history": history}),
        Outcome("suite::model", "test_model", ("LC-1", "LC-3"), "failed", 1.0, "mismatch",
                "replay it: sessionspec check --replay memory:AAEC --clause LC-3"),
    ]
    result = RunResult("memory", "fake", frozenset({"core", "atomic"}), "1.0", tests, 3.5, "2026-01-01T00:00:00+00:00")
    folder = write_report_dir(result, tmp_path / "dir")
    record = json.loads((folder / "failures.json").read_text(encoding="utf-8"))
    cc6 = next(f for f in record["failing"] if f["clause"] == "CC-6")["tests"][0]
    assert cc6["seed"] == 1234 and cc6["duration_s"] == 2.5
    assert json.loads((folder / cc6["history"]).read_text(encoding="utf-8")) == history
    assert record["recheck"]["replay"] == ["memory:AAEC"]
    assert load_plan(folder).replay == ("memory:AAEC",)
