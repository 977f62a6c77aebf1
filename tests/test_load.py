"""``sessionspec load``: SLO gates pass and fail, the consistency gate catches lost appends, master + workers.

Every run is loopback-only and short (a few seconds, a handful of users). Verdicts are
read from the JSON the run writes, not from timings the test measures itself; the
failing-SLO case sets a latency limit no request can meet, so it fails on any machine.
"""

from __future__ import annotations

import importlib.util
import json
import os
import socket
import subprocess
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

if importlib.util.find_spec("locust") is None:  # never import it here: it monkey-patches the whole process
    pytest.skip("pip install sessionspec[load]", allow_module_level=True)

from sessionspec.conformance.provision import ProvisionError, Server, provision
from tests.fixtures.service import ROOT, running_service, sessionspec

REQUIRE = os.environ.get("SESSIONSPEC_REQUIRE_BACKENDS") == "1"
RUN_LIMIT = 300


def load(*args: str, out: Path) -> tuple[int, str, dict[str, Any] | None]:
    """Run ``sessionspec load ARGS --out OUT``: (exit code, output, verdict or None)."""
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(ROOT / "tests" / "fixtures"), str(ROOT)])}
    done = subprocess.run([*sessionspec(), "load", *args, "--out", str(out)], capture_output=True, text=True,
                          env=env, cwd=ROOT, timeout=RUN_LIMIT)
    verdict_file = out / "verdict.json"
    verdict = json.loads(verdict_file.read_text()) if verdict_file.exists() else None
    return done.returncode, done.stdout + done.stderr, verdict


def gates(verdict: dict[str, Any] | None) -> dict[str, bool]:
    assert verdict is not None, "the run wrote no verdict"
    return {g["name"]: g["passed"] for g in verdict["gates"]}


@pytest.fixture(scope="module")
def memory_service() -> Iterator[str]:
    with running_service("memory") as (url, _):
        yield url


@pytest.fixture(scope="module")
def redis_server() -> Iterator[Server]:
    try:
        server = provision("redis")
    except ProvisionError as exc:
        if REQUIRE:
            pytest.fail(f"SESSIONSPEC_REQUIRE_BACKENDS=1 but:\n{exc}")
        pytest.skip(str(exc))
    try:
        yield server
    finally:
        server.close()


def test_chat_against_the_service_passes_and_reports_rate_and_percentiles(memory_service: str,
                                                                          tmp_path: Path) -> None:
    code, output, verdict = load(memory_service, "--users", "5", "--duration", "6", out=tmp_path)
    assert code == 0, output
    assert gates(verdict) == {"p95 latency": True, "p99 latency": True, "error ratio": True, "consistency": True}
    assert verdict is not None and verdict["requests"] > 0 and verdict["rps"] > 0
    assert {"create", "get", "apply", "append", "verify"} <= {op["name"] for op in verdict["operations"]}
    assert "requests/s" in output and "p95" in output and "p99" in output
    assert (tmp_path / "report.html").exists() and (tmp_path / "locust_stats.csv").exists()


def test_a_missed_latency_slo_fails_the_run(tmp_path: Path) -> None:
    # a store that takes 70 ms per call against a 5 ms SLO (a 0 ms SLO is met by a fast service on a quiet
    # machine: Locust rounds response times under 100 ms to whole milliseconds)
    code, output, verdict = load("slow_store:factory", "--users", "3", "--duration", "4", "--p95-ms", "5",
                                 "--p99-ms", "5", out=tmp_path)
    assert code == 1, output
    assert gates(verdict) == {"p95 latency": False, "p99 latency": False, "error ratio": True,
                              "consistency": True}
    assert "FAIL" in output


@pytest.mark.redis
def test_chat_against_redis_store_directly_passes(redis_server: Server, tmp_path: Path) -> None:
    code, output, verdict = load(redis_server.url, "--users", "5", "--duration", "6", out=tmp_path)
    assert code == 0, output
    assert all(gates(verdict).values())
    assert {op["type"] for op in verdict["operations"]} == {"STORE"}  # type: ignore[index]


def test_hot_sessions_on_a_correct_store_pass_the_consistency_gate(tmp_path: Path) -> None:
    code, output, verdict = load("memory", "--profile", "hot-session", "--users", "8", "--duration", "5",
                                 "--p95-ms", "5000", "--p99-ms", "10000", out=tmp_path)
    assert code == 0, output
    assert gates(verdict)["consistency"]


def test_a_store_that_drops_appends_under_load_fails_the_consistency_gate(tmp_path: Path) -> None:
    code, output, verdict = load("lossy_store:factory", "--profile", "hot-session", "--users", "8",
                                 "--duration", "5", "--p95-ms", "5000", "--p99-ms", "10000", out=tmp_path)
    assert code == 1, output
    result = gates(verdict)
    assert not result["consistency"], output
    assert result["error ratio"], "every lost append was acknowledged: the error ratio alone sees nothing"
    assert "append(s) lost" in output


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def test_a_master_and_two_workers_on_loopback(memory_service: str, tmp_path: Path) -> None:
    port = str(_free_port())
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    common = [memory_service, "--users", "4", "--duration", "6", "--namespace", "mw"]
    workers = [subprocess.Popen([*sessionspec(), "load", *common, "--worker", "--master-host", "127.0.0.1",
                                 "--master-port", port, "--out", str(tmp_path / f"w{i}")],
                                stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, env=env, cwd=ROOT)
               for i in range(2)]
    try:
        code, output, verdict = load(*common, "--master", "--expect-workers", "2", "--master-port", port,
                                     out=tmp_path / "master")
        worker_output = [w.communicate(timeout=120)[0] for w in workers]
    finally:
        for w in workers:
            if w.poll() is None:
                w.kill()
                w.wait()
    assert code == 0, output + "\n".join(worker_output)
    assert all(gates(verdict).values())
    assert verdict is not None and verdict["requests"] > 0
    assert all(w.returncode is not None for w in workers)


@pytest.mark.parametrize(("profile", "shape"), [("sweep-under-load", "ramp"), ("create-heavy", "spike"),
                                                ("chat", "soak")])
def test_every_profile_and_shape_runs_and_checks_consistency(profile: str, shape: str, tmp_path: Path) -> None:
    code, output, verdict = load("memory", "--profile", profile, "--shape", shape, "--users", "4", "--duration", "4",
                                 "--p95-ms", "30000", "--p99-ms", "60000", out=tmp_path)  # shapes, not speed
    assert code == 0, output
    assert all(gates(verdict).values()), output
