"""--baseline PREV.json: the summary says what changed since the last run, before the table."""

from __future__ import annotations

from pathlib import Path

import pytest
from click.testing import CliRunner, Result

from sessionspec.conformance import cli
from sessionspec.conformance.baseline import compare
from sessionspec.conformance.results import RunResult
from sessionspec.conformance.results import TestOutcome as Outcome

FIXTURES = Path(__file__).resolve().parent / "fixtures"
FAST = ["--clause", "LC-1", "-k", "test_lifecycle"]


@pytest.fixture(autouse=True)
def _env(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.syspath_prepend(str(FIXTURES))
    monkeypatch.setenv("SESSIONSPEC_NO_CONFIG", "1")
    monkeypatch.delenv("GITHUB_STEP_SUMMARY", raising=False)


def invoke(*args: str) -> Result:
    return CliRunner().invoke(cli.main, list(args), catch_exceptions=False)


def _run(**statuses: str) -> RunResult:
    tests = [Outcome(f"s::{cid}", f"test_{cid}", (cid.replace("_", "-"),), status, 0.1, "why")  # type: ignore[arg-type]
             for cid, status in statuses.items()]
    return RunResult("memory", "fake", frozenset({"core", "atomic"}), "1.0", tests, 1.0, "2026-01-01T00:00:00+00:00")


def test_compare_names_newly_failing_newly_passing_and_other_moves() -> None:
    before = _run(LC_1="passed", LC_2="failed", LC_3="passed")
    after = _run(LC_1="failed", LC_2="passed", LC_3="skipped")
    changes = compare(before, after, "prev.json")
    assert (changes.newly_failing, changes.newly_passing) == (("LC-1",), ("LC-2",))
    assert changes.other == (("LC-3", "pass", "skip"),)
    assert changes.lines()[:2] == ["- Newly failing (1): LC-1", "- Newly passing (1): LC-2"]
    assert compare(before, before).lines() == ["- No clause changed its verdict; the level is unchanged."]


def test_the_summary_starts_with_the_changes_and_puts_failures_before_the_table(tmp_path: Path) -> None:
    good, summary = tmp_path / "good.json", tmp_path / "summary.md"
    assert invoke("check", "memory", *FAST, "-q", "--report", str(good)).exit_code == 0
    result = invoke("check", "cli_targets:drops_owner", *FAST, "--baseline", str(good), "--markdown", str(summary))
    assert result.exit_code == 1
    assert "Newly failing (1): LC-1" in result.stdout
    text = summary.read_text(encoding="utf-8")
    since, failures, table = (text.index(s) for s in ("### Since the baseline", "### Failures", "| Clause |"))
    assert since < failures < table, text
    assert "- Newly failing (1): LC-1" in text


def test_a_fix_shows_as_newly_passing(tmp_path: Path) -> None:
    bad, summary = tmp_path / "bad.json", tmp_path / "summary.md"
    assert invoke("check", "cli_targets:drops_owner", *FAST, "-q", "--report", str(bad)).exit_code == 1
    assert invoke("check", "memory", *FAST, "-q", "--baseline", str(bad), "--markdown", str(summary)).exit_code == 0
    assert "- Newly passing (1): LC-1" in summary.read_text(encoding="utf-8")


@pytest.mark.parametrize("body", [None, "{not json", '{"schema": 99}'])
def test_an_unreadable_baseline_exits_2_before_running(tmp_path: Path, body: str | None) -> None:
    path = tmp_path / "prev.json"
    if body is not None:
        path.write_text(body, encoding="utf-8")
    result = invoke("check", "memory", *FAST, "--baseline", str(path))
    assert result.exit_code == 2 and "--baseline" in result.stderr and "Clause" not in result.stdout
