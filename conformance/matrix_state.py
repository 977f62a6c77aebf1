"""What the compatibility matrix was built from, and what it found: the part CI compares.

``docs/compatibility/matrix.json`` is written with the page. It holds the *inputs*
fingerprint (a hash of every file that can change a verdict: the suite and its machinery,
the adapters and their ledgers; the installed framework and driver versions; the spec
version) and the *verdicts* (per store: level, and each clause's verdict). ``sessionspec
matrix --check`` fails when the current inputs differ from the recorded ones (the page was
not regenerated after a change) or when a fresh run's verdicts differ from the recorded
ones (the page is wrong). Comparing verdicts, never timings or messages, keeps the check
exact; a clause the reviewers found to fail only sometimes (``[intermittent]`` in
``adapters/findings.toml``, each with a reproduction) is recorded as ``intermittent`` in
every run, pass or fail, so it cannot flip the check either.
"""

from __future__ import annotations

import hashlib
import importlib.metadata
from collections.abc import Iterable, Mapping
from dataclasses import replace
from pathlib import Path
from typing import Any

from .clauses import SPEC_VERSIONS
from .results import RunResult, TestOutcome

__all__ = ["DISTS", "INTERMITTENT", "NOT_CHECKED", "compare", "fingerprint", "input_files", "normalise", "versions"]

ROOT = Path(__file__).resolve().parent.parent
INPUT_DIRS = ("conformance", "adapters", "reference/manager")
"""The suite, the adapters, and the reference SessionManager, which the manager and scenario clauses run
over each adapter's store (with the module it imports from: INPUT_FILES)."""
INPUT_FILES = ("reference/memory.py", "reference/_json.py")
INPUT_SUFFIXES = (".py", ".toml", ".lua", ".sql")
NOT_INPUTS = frozenset({
    # what renders or re-reads results, or serves other commands: it cannot change a verdict
    "conformance/matrix.py", "conformance/matrix_state.py", "conformance/cli_load.py", "conformance/cli_serve.py",
    "conformance/recheck.py", "conformance/baseline.py", "conformance/progress.py",
    "conformance/report/junit.py", "conformance/report/markdown.py", "conformance/report/terminal.py",
    "conformance/report/directory.py",
    # the reviewed text: the page comparison covers it, the verdicts do not depend on it
    "adapters/findings.toml",
})
DISTS: tuple[str, ...] = (
    "google-adk", "openai-agents", "langgraph", "langgraph-checkpoint", "langgraph-checkpoint-postgres",
    "sqlalchemy", "aiosqlite", "asyncpg", "redis", "psycopg", "psycopg-pool",
)
"""The frameworks and the drivers under them (redis-py's cancellation is a finding): pinned in
adapters/constraints.txt, recorded in the fingerprint."""
INTERMITTENT = "intermittent"
NOT_CHECKED = "not-checked"
"""A claimed clause the run could not decide (timing inconclusive every time; out of time while the
store was still answering). It is no evidence either way, so ``compare`` never counts it as a change."""


def input_files(root: Path = ROOT) -> list[Path]:
    """Every file that can change a verdict; a new module is an input unless listed in NOT_INPUTS."""
    files = []
    for folder in INPUT_DIRS:
        for path in sorted((root / folder).rglob("*")):
            rel = path.relative_to(root).as_posix()
            if path.is_file() and path.suffix in INPUT_SUFFIXES and rel not in NOT_INPUTS and "__pycache__" not in rel:
                files.append(path)
    return files + [root / name for name in INPUT_FILES]


def versions() -> dict[str, str]:
    found = {}
    for dist in DISTS:
        try:
            found[dist] = importlib.metadata.version(dist)
        except importlib.metadata.PackageNotFoundError:
            found[dist] = "not installed"
    return found


def fingerprint(root: Path = ROOT) -> dict[str, Any]:
    """The inputs of a matrix run: spec version, dist versions, and a hash per input file."""
    files = {p.relative_to(root).as_posix(): hashlib.sha256(p.read_bytes()).hexdigest()[:16]
             for p in input_files(root)}
    total = hashlib.sha256("".join(f"{k}={v}\n" for k, v in sorted(files.items())).encode()).hexdigest()[:16]
    return {"spec": SPEC_VERSIONS[-1], "versions": versions(), "sources": total, "files": files}


def _forced_failing(result: RunResult, clauses: Iterable[str]) -> RunResult:
    """The run as if each intermittent clause failed here: its level is the one the page states."""
    extra = [TestOutcome(nodeid=f"matrix::intermittent[{cid}]", name=f"intermittent[{cid}]", clauses=(cid,),
                         status="failed", duration=0.0, message="fails intermittently (adapters/findings.toml)")
             for cid in clauses]
    return replace(result, tests=[*result.tests, *extra])


def normalise(result: RunResult | None, *, intermittent: Iterable[str] = (), error: str = "") -> dict[str, Any]:
    """One store's comparable verdicts: level and clause -> verdict, intermittent clauses folded.

    An intermittent clause reads ``intermittent`` whether it passed or failed in this run (it
    was seen failing, and reproduced); a clause that was not run reads ``not-run``, whatever it
    did before. A store without a report has no verdicts at all.
    """
    if result is None:
        return {"level": "not run", "error": error, "clauses": {}}
    flaky = set(intermittent)
    checked = {c.clause.id for c in result.clauses if c.verdict in ("pass", "fail", "divergence", "stale-divergence")}
    folded = _forced_failing(result, sorted(flaky & checked))
    clauses = {}
    for c in folded.clauses:
        if c.clause.id in flaky and c.clause.id in checked:
            clauses[c.clause.id] = INTERMITTENT
        elif c.verdict == "skip" and c.reason.startswith("not checked"):
            clauses[c.clause.id] = NOT_CHECKED
        else:
            clauses[c.clause.id] = c.verdict
    return {"level": folded.level, "error": error or "; ".join(e.splitlines()[0] for e in result.errors),
            "clauses": clauses}


def compare(recorded: Mapping[str, Any], fresh: Mapping[str, Any]) -> list[str]:
    """Differences between two matrix.json documents, one line each; empty means the page stands."""
    lines = []
    old_in, new_in = recorded.get("inputs", {}), fresh.get("inputs", {})
    if old_in.get("spec") != new_in.get("spec"):
        lines.append(f"inputs: spec version {old_in.get('spec')} -> {new_in.get('spec')}")
    old_v, new_v = old_in.get("versions", {}), new_in.get("versions", {})
    for dist in sorted(set(old_v) | set(new_v)):
        if old_v.get(dist) != new_v.get(dist):
            lines.append(f"inputs: {dist} {old_v.get(dist, 'absent')} -> {new_v.get(dist, 'absent')}")
    old_f, new_f = old_in.get("files", {}), new_in.get("files", {})
    for name in sorted(set(old_f) | set(new_f)):
        if old_f.get(name) != new_f.get(name):
            what = "added" if name not in old_f else "removed" if name not in new_f else "changed"
            lines.append(f"inputs: {name} {what}")
    old_s, new_s = recorded.get("stores", {}), fresh.get("stores", {})
    for store in [*old_s, *(s for s in new_s if s not in old_s)]:
        a, b = old_s.get(store), new_s.get(store)
        if a is None or b is None:
            lines.append(f"{store}: {'not in the committed matrix' if a is None else 'no longer run'}")
            continue
        if a["level"] != b["level"]:
            lines.append(f"{store}: level {a['level']!r} -> {b['level']!r}")
        for cid in [*a["clauses"], *(c for c in b["clauses"] if c not in a["clauses"])]:
            va, vb = a["clauses"].get(cid, "absent"), b["clauses"].get(cid, "absent")
            if va != vb and NOT_CHECKED not in (va, vb):
                lines.append(f"{store} {cid}: {va} -> {vb}")
    return lines
