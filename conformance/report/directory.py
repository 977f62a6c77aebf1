"""The failure report directory: everything needed to see, share and re-check a failing run.

Written by ``sessionspec check --report-dir DIR`` when the run fails (nothing is written
when it passes, so a CI artifact step uploads something only when there is something to
read). ``sessionspec recheck DIR`` reads ``failures.json`` back and runs exactly the failing
tests again. Layout::

    DIR/failures.json      what failed and how to run it again (schema below), read by `recheck`
    DIR/report.json        the whole run (the --report JSON)
    DIR/histories/*.json   recorded concurrent histories, Jepsen-style (one file per test)
    DIR/README.md          the failures in prose, and the recheck command

failures.json (schema 1): ``{"schema": 1, "kind": "sessionspec-failures", "sessionspec",
"spec_version", "target", "description", "capabilities", "started_at", "duration_s",
"environment": {python, platform, drivers}, "failing": [{"clause", "verdict", "reason",
"tests": [{"nodeid", "function", "status", "message", "duration_s", "seed", "reproduction",
"history"}]}], "recheck": {"clauses", "functions", "replay"}}``.
"""

from __future__ import annotations

import json
import platform
import re
import shutil
from importlib.metadata import PackageNotFoundError, version
from pathlib import Path
from typing import Any

from ..results import RunResult, TestOutcome

__all__ = ["FAILURES_FILE", "SCHEMA", "failure_record", "write_report_dir"]

SCHEMA = 1
FAILURES_FILE = "failures.json"
_REPLAY = re.compile(r"--replay\s+(\S+)")
_BLOB = re.compile(r"@reproduce_failure\([^)]*\)")


def _installed(package: str) -> str | None:
    try:
        return version(package)
    except PackageNotFoundError:
        return None


def environment() -> dict[str, Any]:
    """Interpreter, platform and driver versions (the server's own version is in the description)."""
    drivers = {name: _installed(name) for name in ("sessionspec", "redis", "asyncpg", "hypothesis", "pytest")}
    return {"python": platform.python_version(), "platform": platform.platform(),
            "packages": {k: v for k, v in drivers.items() if v}}


def function_of(test: TestOutcome) -> str:
    """The suite function behind a test item (``test_x[shared]`` -> ``test_x``)."""
    return test.name.split("[", 1)[0]


def _reproduction(test: TestOutcome) -> dict[str, Any]:
    text = f"{test.message}\n{test.details}"
    found: dict[str, Any] = {}
    replay = list(dict.fromkeys(_REPLAY.findall(text)))
    if replay:
        found["replay"] = replay
    blob = _BLOB.findall(text)
    if blob:
        found["hypothesis"] = blob[-1]
    return found


def failure_record(result: RunResult, histories: dict[str, str] | None = None) -> dict[str, Any]:
    """The failures.json content for a run (histories: test nodeid -> its history file, relative)."""
    histories = histories or {}
    failing = []
    functions: list[str] = []
    replay: list[str] = []
    for c in result.failures:
        tests = []
        for test in c.tests:
            if test.status not in ("failed", "error"):
                continue
            reproduction = _reproduction(test)
            replay += reproduction.get("replay", [])
            functions.append(function_of(test))
            tests.append({
                "nodeid": test.nodeid, "function": function_of(test), "status": test.status,
                "message": test.message, "duration_s": round(test.duration, 3),
                "seed": test.artifacts.get("seed"), "reproduction": reproduction,
                "history": histories.get(test.nodeid),
            })
        failing.append({"clause": c.clause.id, "verdict": c.verdict, "reason": c.reason, "tests": tests})
    from .json_report import _package_version

    return {
        "schema": SCHEMA, "kind": "sessionspec-failures", "sessionspec": _package_version(),
        "spec_version": result.spec_version, "target": result.target, "description": result.description,
        "capabilities": sorted(result.capabilities), "started_at": result.started_at,
        "duration_s": round(result.duration, 3), "environment": environment(),
        "failing": failing, "errors": list(result.errors),
        "recheck": {"clauses": [f["clause"] for f in failing], "functions": list(dict.fromkeys(functions)),
                    "replay": list(dict.fromkeys(replay))},
    }


def _slug(text: str) -> str:
    return re.sub(r"[^A-Za-z0-9_.-]+", "-", text).strip("-")[:120]


def _readme(record: dict[str, Any], folder: Path) -> str:
    lines = [f"# sessionspec: {record['target']} failed", "",
             f"{record['description']} · spec {record['spec_version']} · {record['started_at']}", ""]
    for f in record["failing"]:
        lines.append(f"- **{f['clause']}** ({f['verdict']}): {f['reason'].splitlines()[0] if f['reason'] else ''}")
        for t in f["tests"]:
            lines.append(f"  - `{t['nodeid']}`" + (f" (seed {t['seed']})" if t["seed"] is not None else ""))
    lines += ["", "Run exactly these again (same target, or name a fixed one):", "",
              f"    sessionspec recheck {folder}", f"    sessionspec recheck {folder} mypkg.fixed:factory", ""]
    return "\n".join(lines)


def write_report_dir(result: RunResult, folder: Path) -> Path:
    """Write the failure report directory for a failing run; replaces what an earlier run left there."""
    from .json_report import write_json

    if (folder / FAILURES_FILE).exists():
        shutil.rmtree(folder / "histories", ignore_errors=True)
    folder.mkdir(parents=True, exist_ok=True)
    histories: dict[str, str] = {}
    for c in result.failures:
        for test in c.tests:
            history = test.artifacts.get("history")
            if history is None or test.nodeid in histories or test.status not in ("failed", "error"):
                continue
            rel = f"histories/{c.clause.id}-{_slug(test.name)}.json"
            (folder / "histories").mkdir(exist_ok=True)
            (folder / rel).write_text(json.dumps(history, indent=1, default=repr) + "\n", encoding="utf-8")
            histories[test.nodeid] = rel
    record = failure_record(result, histories)
    (folder / FAILURES_FILE).write_text(json.dumps(record, indent=2, default=repr) + "\n", encoding="utf-8")
    write_json(result, folder / "report.json")
    (folder / "README.md").write_text(_readme(record, folder), encoding="utf-8")
    return folder
