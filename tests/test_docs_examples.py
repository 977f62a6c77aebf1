"""The runnable example in docs/ really runs, so the guide cannot rot."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from sessionspec.conformance.targets import TargetError, TargetOptions, resolve_target

EXAMPLES = Path(__file__).resolve().parent.parent / "docs" / "examples"
REQUIRE_BACKENDS = os.environ.get("SESSIONSPEC_REQUIRE_BACKENDS") == "1"


def test_the_plugging_in_example_passes_its_clauses() -> None:
    out = subprocess.run(
        [sys.executable, "-m", "sessionspec.conformance.cli", "check", "my_store:factory", "--clause", "LC-1",
         "--clause", "TTL-3"],
        cwd=EXAMPLES, capture_output=True, text=True, timeout=300,
    )
    assert out.returncode == 0, out.stdout + out.stderr


@pytest.mark.redis
def test_the_fault_proxy_example_checks_fl_1_and_fl_2_on_a_real_redis() -> None:
    """docs/plugging-in.md's proxy recipe: FL-1/FL-2 run (not n/a) and pass against a real server, black-holed."""
    try:
        target = resolve_target("redis", TargetOptions(require_backends=REQUIRE_BACKENDS))
    except TargetError as exc:
        if REQUIRE_BACKENDS:
            pytest.fail(f"redis: cannot provision a server: {exc}")
        pytest.skip(f"redis: no server could be provisioned ({exc})")
    try:
        out = subprocess.run(
            [sys.executable, "-m", "sessionspec.conformance.cli", "check", "proxied_redis:factory",
             "--clause", "FL-1,FL-2", "--report", "report.json"],
            cwd=EXAMPLES, capture_output=True, text=True, timeout=300,
            env={**os.environ, "MY_REDIS_URL": str(target.process_spec)},
        )
    finally:
        target.close()
    assert out.returncode == 0, out.stdout + out.stderr
    report = json.loads((EXAMPLES / "report.json").read_text(encoding="utf-8"))
    (EXAMPLES / "report.json").unlink()
    verdicts = {c["id"]: c["verdict"] for c in report["clauses"]}
    assert verdicts["FL-1"] == verdicts["FL-2"] == "pass", verdicts
