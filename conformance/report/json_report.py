"""The JSON report: everything a run knew, so later commands can re-render or re-check it.

Schema 1 (keys in this order)::

    {"schema": 1, "sessionspec": "0.1.0", "spec_version": "1.0", "target": "memory",
     "description": "...", "capabilities": ["atomic", "core", "listing"], "level": "core",
     "exit_code": 0, "started_at": "2025-...+00:00", "duration_s": 1.2,
     "summary": {"pass": 3, ...}, "selected": ["LC-1"] | null, "divergences": {"ID": "reason"},
     "clauses": [{"id", "capability", "title", "since", "status", "claimed", "verdict", "reason",
                  "tests": [{"nodeid", "name", "clauses", "seq", "status", "duration_s", "message",
                             "details", "artifacts"}]}],
     "errors": ["..."]}

A test checking two clauses appears under both; ``seq`` is its place in the run, so
:func:`load_json_report` rebuilds the exact RunResult (verdicts are recomputed from the
tests, the capabilities and the ledger, never trusted from the file). Artifacts that are
not JSON are written as their ``repr``.
"""

from __future__ import annotations

import json
import math
from importlib.metadata import PackageNotFoundError, version
from pathlib import Path
from typing import Any

from ..results import RunResult, TestOutcome
from . import verdict_counts

__all__ = ["SCHEMA", "ReportError", "load_json_report", "render_json", "to_json_dict", "write_json"]

SCHEMA = 1


class ReportError(Exception):
    """A JSON report that cannot be read back (missing, not JSON, another schema)."""


def _package_version() -> str:
    try:
        return version("sessionspec")
    except PackageNotFoundError:  # running from a source tree that is not installed
        return "unknown"


def _json_safe(value: Any) -> Any:
    """Plain JSON values as they are (tuples as lists); anything else (sets, bytes, NaN) as its repr."""
    if value is None or isinstance(value, bool | int | str):
        return value
    if isinstance(value, float):
        return value if math.isfinite(value) else repr(value)
    if isinstance(value, dict):
        return {k if isinstance(k, str) else repr(k): _json_safe(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [_json_safe(v) for v in value]
    return repr(value)


def _test_dict(test: TestOutcome, seq: int, original: TestOutcome | None = None) -> dict[str, Any]:
    """One test as it ran; under a clause it was blamed away from, marked ``"counted": "not checked"``."""
    shadow = original is not None and original is not test
    test = original or test
    return {
        "nodeid": test.nodeid,
        "name": test.name,
        "clauses": list(test.clauses),
        "seq": seq,
        "status": test.status,
        "duration_s": round(test.duration, 6),
        "message": test.message,
        "details": test.details,
        "artifacts": _json_safe(test.artifacts),
        "blame": list(test.blame),
        "counted": "not checked" if shadow else test.status,
    }


def to_json_dict(result: RunResult) -> dict[str, Any]:
    """The report as a dict with the schema's key order."""
    seq = {t.nodeid: i for i, t in enumerate(result.tests)}
    original = {t.nodeid: t for t in result.tests}
    return {
        "schema": SCHEMA,
        "sessionspec": _package_version(),
        "spec_version": result.spec_version,
        "target": result.target,
        "description": result.description,
        "capabilities": sorted(result.capabilities),
        "level": result.level,
        "exit_code": result.exit_code,
        "started_at": result.started_at,
        "duration_s": round(result.duration, 3),
        "summary": verdict_counts(result),
        "selected": None if result.selected is None else sorted(result.selected),
        "partial": result.partial,
        "divergences": dict(result.divergences),
        "clauses": [
            {
                "id": c.clause.id,
                "capability": c.clause.capability,
                "title": c.clause.title,
                "since": c.clause.since,
                "status": c.clause.status,
                "claimed": c.claimed,
                "verdict": c.verdict,
                "reason": c.reason,
                "tests": [_test_dict(t, seq[t.nodeid], original.get(t.nodeid)) for t in c.tests],
            }
            for c in result.clauses
        ],
        "errors": list(result.errors),
    }


def render_json(result: RunResult) -> str:
    """The report text (ASCII-escaped only if it holds lone surrogates UTF-8 cannot encode)."""
    data = to_json_dict(result)
    text = json.dumps(data, indent=2, ensure_ascii=False)
    try:
        text.encode("utf-8")
    except UnicodeEncodeError:
        text = json.dumps(data, indent=2, ensure_ascii=True)
    return text + "\n"


def write_json(result: RunResult, path: str | Path) -> None:
    Path(path).write_text(render_json(result), encoding="utf-8")


def _outcome(entry: dict[str, Any]) -> TestOutcome:
    return TestOutcome(
        nodeid=entry["nodeid"],
        name=entry["name"],
        clauses=tuple(entry["clauses"]),
        status=entry["status"],
        duration=float(entry["duration_s"]),
        message=entry.get("message", ""),
        details=entry.get("details", ""),
        artifacts=dict(entry.get("artifacts") or {}),
        blame=tuple(entry.get("blame") or ()),
    )


def load_json_report(path: str | Path) -> RunResult:
    """Read a report written by :func:`write_json` back into a RunResult."""
    try:
        data = json.loads(Path(path).read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise ReportError(f"report {str(path)!r} does not exist") from None
    except (OSError, ValueError) as exc:
        raise ReportError(f"report {str(path)!r} is not readable JSON: {exc}") from exc
    if not isinstance(data, dict) or data.get("schema") != SCHEMA:
        found = data.get("schema") if isinstance(data, dict) else None
        raise ReportError(f"report {str(path)!r} is not a sessionspec report of schema {SCHEMA} (schema: {found!r})")
    try:
        by_seq: dict[int, TestOutcome] = {}
        for clause in data["clauses"]:
            for entry in clause["tests"]:
                by_seq.setdefault(int(entry["seq"]), _outcome(entry))
        selected = data.get("selected")
        return RunResult(
            target=data["target"],
            description=data["description"],
            capabilities=frozenset(data["capabilities"]),
            spec_version=data["spec_version"],
            tests=[by_seq[k] for k in sorted(by_seq)],
            duration=float(data["duration_s"]),
            started_at=data["started_at"],
            divergences=dict(data.get("divergences") or {}),
            selected=None if selected is None else frozenset(selected),
            errors=list(data.get("errors") or []),
            partial=bool(data.get("partial", False)),
        )
    except (KeyError, TypeError, ValueError) as exc:
        raise ReportError(f"report {str(path)!r} is missing or has a malformed field: {exc!r}") from exc
