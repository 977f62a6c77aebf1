"""The report writers: every verdict rendered in each format, hostile text kept harmless, JSON re-readable.

Results are built by hand (no suite run), so these tests are fast and cover verdicts a
real run would need a broken store, a ledger and a failing collection to produce.
"""

from __future__ import annotations

import json
import xml.etree.ElementTree as ET
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from sessionspec.conformance.report import clean, first_line, summary_line
from sessionspec.conformance.report.json_report import (
    ReportError,
    load_json_report,
    render_json,
    write_json,
)
from sessionspec.conformance.report.junit import render_junit, write_junit
from sessionspec.conformance.report.markdown import render_markdown, write_markdown
from sessionspec.conformance.report.terminal import render_terminal, write_terminal
from sessionspec.conformance.results import RunResult
from sessionspec.conformance.results import TestOutcome as Outcome  # not Test*: pytest would try to collect it

HOSTILE = "id '\x00\ud800' [bold]not markup[/bold] | pipe ``` fence <b>html</b>"
"""What a failure message may quote: NUL, a lone surrogate, rich markup, Markdown and HTML syntax."""


def outcome(name: str, *clauses: str, status: str = "passed", message: str = "", details: str = "",
            artifacts: dict[str, Any] | None = None) -> Outcome:
    return Outcome(nodeid=f"suite/test_x.py::{name}", name=name, clauses=clauses, status=status,  # type: ignore[arg-type]
                       duration=0.0125, message=message, details=details, artifacts=artifacts or {})


def mixed_result() -> RunResult:
    """One clause per verdict, a test checking two clauses, odd artifacts and a run error."""
    tests = [
        outcome("test_round_trip", "LC-1"),
        outcome("test_create_then_delete", "LC-1", "LC-4"),
        outcome("test_create_twice", "LC-2", status="failed",
                message=f"AssertionError: LC-2: create on a live id overwrote it: {HOSTILE}\nassert 1 == 2",
                details=f"def test_create_twice():\n>   assert 1 == 2\nE   {HOSTILE}\n"
                        "suite/test_x.py:9: AssertionError",
                artifacts={"history": [(1, "a"), (2, "b")], "seed": 42, "blob": b"\x00", "nan": float("nan"),
                           "ids": {"x"}}),
        outcome("test_no_upsert", "LC-3", status="skipped",
                message="needs the raw_ttl backdoor, which the target lacks"),
        outcome("test_backend_down", "FL-1", status="skipped", message="not applicable: memory has no backend"),
        outcome("test_purge", "TTL-5", status="failed", message="AssertionError: TTL-5: purge removed a live one"),
        outcome("test_pages", "LS-1"),
        outcome("test_count", "LS-2", status="error", message="RuntimeError: teardown broke", details="Traceback..."),
    ]
    return RunResult(
        target="cli_targets:odd", description="an odd store [for tests]", capabilities=frozenset({"core", "listing"}),
        spec_version="1.0", tests=tests, duration=1.25, started_at="2025-01-02T03:04:05+00:00",
        divergences={"TTL-5": "purge is a nightly job", "LS-1": "pagination skips under load"},
        selected=None, errors=["pytest ended with INTERRUPTED:\n1 error during collection"],
    )


def passing_result() -> RunResult:
    return RunResult(target="memory", description="MemoryStore", capabilities=frozenset({"core", "atomic", "listing"}),
                     spec_version="1.0", tests=[outcome("test_round_trip", "LC-1")], duration=0.5,
                     started_at="2025-01-02T03:04:05+00:00", selected=frozenset({"LC-1"}))


def verdicts(result: RunResult) -> dict[str, str]:
    return {c.clause.id: c.verdict for c in result.clauses}


def test_the_mixed_result_has_every_verdict_the_writers_must_render() -> None:
    got = verdicts(mixed_result())
    assert {got[c] for c in ("LC-1", "LC-2", "LC-3", "FL-1", "TTL-5", "LS-1", "MG-14", "ID-1")} == {
        "pass", "fail", "skip", "n/a", "divergence", "stale-divergence", "planned", "not-run"}


# ------------------------------------------------------------------ JSON
def test_json_round_trip_rebuilds_the_same_result(tmp_path: Path) -> None:
    original = mixed_result()
    path = tmp_path / "report.json"
    write_json(original, path)
    loaded = load_json_report(path)
    assert verdicts(loaded) == verdicts(original)
    assert [(t.nodeid, t.clauses, t.status, t.message, t.details) for t in loaded.tests] == [
        (t.nodeid, t.clauses, t.status, t.message, t.details) for t in original.tests]
    assert (loaded.level, loaded.exit_code, loaded.counts(), loaded.errors, loaded.capabilities) == (
        original.level, original.exit_code, original.counts(), original.errors, original.capabilities)
    assert render_json(loaded) == render_json(original), "re-rendering a loaded report must give the same file"


def test_json_keeps_the_schema_key_order_and_makes_artifacts_json_safe() -> None:
    data = json.loads(render_json(mixed_result()))
    assert list(data)[:12] == ["schema", "sessionspec", "spec_version", "target", "description", "capabilities",
                               "level", "exit_code", "started_at", "duration_s", "summary", "selected"]
    assert data["schema"] == 1 and list(data)[-1] == "errors"
    lc2 = next(c for c in data["clauses"] if c["id"] == "LC-2")
    assert list(lc2) == ["id", "capability", "title", "since", "status", "claimed", "verdict", "reason", "tests"]
    artifacts = lc2["tests"][0]["artifacts"]
    assert artifacts["history"] == [[1, "a"], [2, "b"]] and artifacts["seed"] == 42
    assert artifacts["blob"] == "b'\\x00'" and artifacts["nan"] == "nan" and artifacts["ids"] == "{'x'}"
    lc1 = next(c for c in data["clauses"] if c["id"] == "LC-1")
    lc4 = next(c for c in data["clauses"] if c["id"] == "LC-4")
    assert lc4["tests"] == [lc1["tests"][1]], "a test of two clauses is listed under both"


def test_json_file_is_valid_utf8_even_with_lone_surrogates(tmp_path: Path) -> None:
    path = tmp_path / "r.json"
    write_json(mixed_result(), path)
    assert json.loads(path.read_bytes().decode("utf-8"))["target"] == "cli_targets:odd"


@pytest.mark.parametrize(("content", "problem"), [
    (None, "does not exist"),
    ("{not json", "not readable JSON"),
    ('{"schema": 99}', "schema"),
    ('{"schema": 1, "clauses": []}', "malformed"),
])
def test_load_json_report_refuses_what_it_cannot_read(tmp_path: Path, content: str | None, problem: str) -> None:
    path = tmp_path / "r.json"
    if content is not None:
        path.write_text(content, encoding="utf-8")
    with pytest.raises(ReportError, match=problem):
        load_json_report(path)


# ------------------------------------------------------------------ JUnit
def _cases(root: ET.Element) -> dict[str, ET.Element]:
    return {case.get("name", ""): case for case in root.iter("testcase")}


def test_junit_has_one_suite_per_family_and_maps_every_verdict() -> None:
    root = ET.fromstring(render_junit(mixed_result()))
    suites = [s.get("name") for s in root.iter("testsuite")]
    assert suites == ["sessionspec.TTL", "sessionspec.LC", "sessionspec.LS", "sessionspec.FL", "sessionspec.run"], (
        "families in spec order of first appearance (TTL-0 sits with the input clauses)")
    cases = _cases(root)
    assert cases["LC-1 test_round_trip"].get("classname") == "sessionspec.LC"
    assert "LC-4 test_create_then_delete" in cases and "LC-1 test_create_then_delete" in cases
    failure = cases["LC-2 test_create_twice"].find("failure")
    assert failure is not None and failure.get("message", "").startswith("LC-2: create on a live id")
    divergence = cases["TTL-5 test_purge"].find("skipped")
    assert divergence is not None and divergence.get("message") == "known divergence: purge is a nightly job"
    stale = cases["LS-1 test_pages"].find("failure")
    assert stale is not None and "stale" in stale.get("message", "")
    assert cases["LS-2 test_count"].find("error") is not None
    assert cases["FL-1 test_backend_down"].find("skipped") is not None
    assert cases["run error 1"].find("error") is not None
    props = {p.get("name"): p.get("value") for p in cases["LC-1 test_round_trip"].iter("property")}
    assert props == {"clause": "LC-1", "capability": "core", "target": "cli_targets:odd"}


def test_junit_counts_add_up() -> None:
    root = ET.fromstring(render_junit(mixed_result()))
    for element in [root, *root.iter("testsuite")]:
        cases = list(element.iter("testcase"))
        assert int(element.get("tests", "-1")) == len(cases)
        for tag, attr in (("failure", "failures"), ("error", "errors"), ("skipped", "skipped")):
            counted = sum(c.find(tag) is not None for c in cases)
            assert int(element.get(attr, "-1")) == counted, (element.get("name"), attr)


def test_junit_of_a_passing_run_has_no_failures() -> None:
    root = ET.fromstring(render_junit(passing_result()))
    assert (root.get("tests"), root.get("failures"), root.get("errors")) == ("1", "0", "0")


# ------------------------------------------------------------------ Markdown
def test_markdown_is_concise_and_escapes_what_it_quotes() -> None:
    text = render_markdown(mixed_result())
    assert text.startswith("## sessionspec: `cli_targets:odd` ✘ FAIL\n")
    assert "level **none**" in text
    row = next(line for line in text.splitlines() if line.startswith("| LC-2 "))
    assert row.count(" | ") == 4, "a pipe in a message must not add table cells"
    assert "\\|" in row and "&lt;b&gt;" in row and "\x00" not in text and "\\x00" in row
    assert "| TTL-5 | listing | divergence |" in text and "| LS-1 | listing | ✘ stale |" in text
    assert "Warning:** the store claims `core` but LC-3 was skipped" in text
    assert "<details><summary>LC-2 test_create_twice" in text
    assert "````\n" in text, "details holding ``` need a longer fence"
    assert "Not run (" in text and "| ID-1 |" not in text


def test_markdown_appends_to_a_step_summary(tmp_path: Path) -> None:
    path = tmp_path / "summary.md"
    path.write_text("earlier step\n", encoding="utf-8")
    write_markdown(passing_result(), path, append=True)
    text = path.read_text(encoding="utf-8")
    assert text.startswith("earlier step\n## sessionspec: `memory` ✔ PASS")


# ------------------------------------------------------------------ terminal
def test_terminal_report_prints_quoted_text_literally_and_fits_the_width() -> None:
    text = render_terminal(mixed_result(), width=90)
    table = text.split("\nFailures\n")[0]
    assert all(len(line) <= 90 for line in table.splitlines()), "the table must fit the terminal"
    assert "[bold]not markup[/bold]" in text and "\x00" not in text and "\\x00" in text
    for word in ("pass", "FAIL", "skip", "n/a", "divergence", "stale", "planned"):
        assert word in text
    assert "warning: the store claims 'core' but LC-3 was skipped" in text
    assert "run error: pytest ended with INTERRUPTED" in text
    assert "Level      none" in text and text.rstrip().endswith(")")


def test_terminal_verbose_adds_the_details() -> None:
    assert "suite/test_x.py:9" not in render_terminal(mixed_result())
    assert "suite/test_x.py:9" in render_terminal(mixed_result(), verbose=True)


def test_terminal_hides_planned_rows_in_a_narrowed_run() -> None:
    text = render_terminal(passing_result())
    assert "MG-3 " not in text.split("Not run")[0] and "LC-1" in text


# ------------------------------------------------------------------ shared helpers and files
def test_summary_line_names_counts_and_the_overall_verdict() -> None:
    assert summary_line(passing_result()).startswith("PASS (clauses: 1 passed, ")
    line = summary_line(mixed_result())
    assert line.startswith("FAIL (clauses: 1 run error, 2 failed, 1 stale, ") and "1 known divergence" in line


def test_clean_and_first_line_make_messages_one_safe_line() -> None:
    assert clean("a\x00b\ud800c\x1b") == "a\\x00b\\ud800c\\x1b"
    assert first_line("\n  AssertionError: LC-1: boom\nassert x") == "LC-1: boom"
    assert first_line("x" * 300, 10) == "x" * 9 + "…"


@pytest.mark.parametrize("writer", [write_json, write_junit, write_markdown, write_terminal])
def test_every_writer_writes_a_utf8_file(tmp_path: Path, writer: Callable[[RunResult, Path], None]) -> None:
    path = tmp_path / "out"
    writer(mixed_result(), path)
    assert "LC-2" in path.read_bytes().decode("utf-8")


# -- issue 12: one screen per failing clause, the rest in JSON; "not checked" is said ---------------------
def test_a_long_failure_fits_30_lines_in_the_terminal_and_stays_whole_in_json() -> None:
    history = "\n".join(f"    #{i}: process {i % 7}: get('s') -> None" for i in range(400))
    tests = [outcome(f"test_many[{n}]", "CC-6", status="failed", message=f"CC-6: not linearizable\n{history}",
                     details=history) for n in range(6)]
    result = RunResult("t", "t", frozenset({"core", "atomic"}), "1.0", tests, 1.0, "now")
    text = render_terminal(result, width=120)
    block = text.split("Failures", 1)[1].split("\n\n", 1)[0].strip("\n").splitlines()
    assert len(block) <= 30, "\n".join(block)
    assert block[0].strip().startswith("CC-6 (atomic) CC-6: not linearizable")
    assert any("JSON report" in line for line in block)
    data = json.loads(render_json(result))
    kept = next(c for c in data["clauses"] if c["id"] == "CC-6")["tests"][0]
    assert kept["message"].count("\n") == 400 and kept["details"] == history


def test_not_checked_clauses_are_named_in_every_format() -> None:
    tests = [outcome("fl1", "FL-1", status="skipped", message="not applicable: no hooks"),
             outcome("lc1", "LC-1")]
    result = RunResult("t", "t", frozenset({"core"}), "1.0", tests, 1.0, "now")
    assert "FL-1 not checked" in render_terminal(result, width=200)
    assert "FL-1 not checked" in render_markdown(result)
    assert "not checked (n/a)" in summary_line(result)
    assert "faultproxy" in render_terminal(result, width=300)
