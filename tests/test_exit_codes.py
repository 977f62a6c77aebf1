"""Exit codes a CI gate can act on: 0 conformant, 1 not, 2 usage/config error, 3 backend not there.

Each code is produced by the real command (CliRunner in-process, or a subprocess where stderr
matters), and the backend cases use real refused ports and a provisioning order with nothing
to try, never a mocked failure.
"""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest
from click.testing import CliRunner, Result

from sessionspec.conformance import BackendUnavailable, cli
from sessionspec.conformance.exitcodes import (
    EXIT_BACKEND,
    EXIT_FAILED,
    EXIT_OK,
    EXIT_USAGE,
    backend_cause,
    exit_code_for,
)
from sessionspec.conformance.gate import Requirement, requirement_problems
from sessionspec.conformance.provision import ProvisionError, describe
from sessionspec.conformance.provision.base import free_port
from sessionspec.conformance.results import RunResult
from sessionspec.conformance.results import TestOutcome as Outcome
from sessionspec.conformance.targets import TargetError

FIXTURES = Path(__file__).resolve().parent / "fixtures"
FAST = ["--clause", "LC-1", "-k", "test_lifecycle"]


@pytest.fixture(autouse=True)
def _env(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.syspath_prepend(str(FIXTURES))
    monkeypatch.setenv("SESSIONSPEC_NO_CONFIG", "1")
    for name in ("SESSIONSPEC_REDIS_URL", "SESSIONSPEC_POSTGRES_URL", "SESSIONSPEC_REDIS_CLUSTER_URL",
                 "GITHUB_STEP_SUMMARY", "SESSIONSPEC_PROVISION"):
        monkeypatch.delenv(name, raising=False)


def invoke(*args: str) -> Result:
    return CliRunner().invoke(cli.main, list(args), catch_exceptions=False)


def closed_port() -> int:
    return free_port()  # free now: nothing listens there, so a connect is refused


# ------------------------------------------------------------------ the classification
def _raised(outer: Exception, inner: BaseException) -> Exception:
    try:
        try:
            raise inner
        except BaseException as exc:
            raise outer from exc
    except Exception as caught:
        return caught


@pytest.mark.parametrize("inner", [
    ProvisionError("could not provision a redis server; tried:", [("local", "no redis-server")]),
    BackendUnavailable("Redis is unavailable"),
    ConnectionRefusedError(111, "refused"),
    TimeoutError("timed out"),
])
def test_a_target_error_caused_by_a_missing_backend_is_3(inner: BaseException) -> None:
    error = _raised(TargetError("Target 'x': ..."), inner)
    assert backend_cause(error) is inner and exit_code_for(error) == EXIT_BACKEND


@pytest.mark.parametrize("inner", [ImportError("no module"), ValueError("bad"), FileNotFoundError("ledger")])
def test_any_other_target_error_is_2(inner: BaseException) -> None:
    assert exit_code_for(_raised(TargetError("Target 'x': ..."), inner)) == EXIT_USAGE
    assert exit_code_for(TargetError("no cause")) == EXIT_USAGE


# ------------------------------------------------------------------ 0 / 1 / 2 from the command
def test_0_conformant_1_not_2_usage() -> None:
    assert invoke("check", "memory", *FAST, "-q").exit_code == EXIT_OK
    assert invoke("check", "cli_targets:drops_owner", *FAST, "-q").exit_code == EXIT_FAILED
    assert invoke("check", "nosuchscheme://x", *FAST).exit_code == EXIT_USAGE
    assert invoke("check", "nosuchmodule:factory", *FAST).exit_code == EXIT_USAGE


def test_an_unmet_required_level_is_1_not_2() -> None:
    result = invoke("check", "cli_targets:drops_owner", "--require-level", "core", *FAST, "-q")
    assert result.exit_code == EXIT_FAILED, result.output


# ------------------------------------------------------------------ 3: the backend was not there
@pytest.mark.redis
def test_an_unreachable_redis_url_is_3_with_one_relevant_paragraph() -> None:
    pytest.importorskip("redis")
    out = subprocess.run(
        [sys.executable, "-m", "sessionspec", "check", f"redis://127.0.0.1:{closed_port()}/0", "-q", *FAST],
        capture_output=True, text=True, timeout=120,
    )
    assert out.returncode == EXIT_BACKEND, out.stdout + out.stderr
    assert "could not be reached" in " ".join(out.stderr.split()) and "Traceback" not in out.stderr
    assert "factory(namespace" not in out.stderr, "the factory is fine: its contract is beside the point"
    assert "UserWarning" not in out.stderr, "redis-py's Retry conversion notice must not reach -q output"


def test_a_factory_whose_server_refuses_is_3() -> None:
    result = invoke("check", "cli_targets:raises", *FAST)
    assert result.exit_code == EXIT_BACKEND, result.output
    assert "ConnectionRefusedError" in result.stderr and "factory(namespace" not in result.stderr


@pytest.mark.parametrize("target", ["redis", "postgres"])
def test_a_backend_nothing_can_provision_is_3_and_names_what_to_do(monkeypatch: pytest.MonkeyPatch,
                                                                  target: str) -> None:
    pytest.importorskip("redis" if target == "redis" else "asyncpg")
    monkeypatch.setenv("SESSIONSPEC_PROVISION", "url")  # the only method, and no URL given
    result = invoke("check", target, *FAST)
    assert result.exit_code == EXIT_BACKEND, result.output
    assert "could not" in result.stderr and "SESSIONSPEC_" in result.stderr
    assert ".ci/build-images.sh" not in result.stderr, "that script exists only in a source checkout"
    assert "[servers]" in result.stderr, "the message names the wheel-shipped servers"


def test_backends_up_that_cannot_provision_is_3(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("SESSIONSPEC_PROVISION", "url")
    result = invoke("backends", "up", "redis")
    assert result.exit_code == EXIT_BACKEND and "could not provision" in result.stderr


# ------------------------------------------------------------------ messages that leaked or misled
def test_the_target_line_never_shows_a_password() -> None:
    class Provisioned:
        kind, method, controllable, persistent = "postgres", "local postgres 15", True, True
        url = "postgresql://sessionspec:0123456789abcdef@127.0.0.1:5999/sessionspec"

    line = describe(Provisioned())  # type: ignore[arg-type]
    assert "0123456789abcdef" not in line and "***" in line


def test_spec_version_1_means_1_0() -> None:
    assert invoke("check", "--list", "--spec-version", "1").exit_code == EXIT_OK
    assert invoke("check", "--list", "--spec-version", "v1.0").exit_code == EXIT_OK
    result = invoke("check", "--list", "--spec-version", "2")
    assert result.exit_code == EXIT_USAGE and "1.0" in result.output


def test_help_lists_every_exit_code() -> None:
    text = invoke("check", "--help").output
    for code in ("0 conformant", "1 not conformant", "2 usage or configuration error",
                 "3 a backend could not be provisioned or reached"):
        assert code in " ".join(text.split()), code


# ------------------------------------------------------------------ what a required level demands
def _whole_run(capabilities: set[str], *, na: str = "", failing: str = "", shared: bool = True) -> RunResult:
    from sessionspec.conformance.clauses import clauses_for

    tests = []
    for c in clauses_for("1.0"):
        if c.status != "active":
            continue
        status, message = "passed", ""
        if c.capability not in capabilities:
            status, message = "skipped", f"the store does not claim {c.capability!r}"
        elif c.id == na:
            status, message = "skipped", "not applicable: no stop_backend/start_backend hooks"
        elif c.id == failing:
            status, message = "failed", "it broke"
        tests.append(Outcome(f"suite::{c.id}", f"test_{c.id}", (c.id,), status, 0.01, message))  # type: ignore[arg-type]
    if shared:
        tests.append(Outcome("suite::cc[shared]", "test_cc[shared]", ("CC-1",), "passed", 0.01))
    return RunResult("memory", "fake", frozenset(capabilities), "1.0", tests, 1.0, "2026-01-01T00:00:00+00:00")


def test_a_level_is_reached_only_when_every_clause_of_it_ran_and_passed() -> None:
    everything = {"core", "atomic", "listing", "shared", "durable"}
    assert requirement_problems(_whole_run(everything), Requirement("full")) == []
    assert requirement_problems(_whole_run({"core", "atomic"}), Requirement("core+atomic")) == []
    not_checked = requirement_problems(_whole_run({"core", "atomic"}, na="FL-1"), Requirement("core"))
    assert not_checked == ["core: FL-1 not checked (n/a: no stop_backend/start_backend hooks)"]
    assert requirement_problems(_whole_run({"core"}), Requirement("core+atomic")) == [
        "atomic: the store does not claim it"]
    assert requirement_problems(_whole_run(everything, shared=False), Requirement("full")) == [
        "shared: no cross-process run passed (not checked)"]
    assert requirement_problems(_whole_run({"core", "atomic"}, failing="CC-3"), Requirement(None, ("atomic",)))[0] \
        .startswith("atomic: CC-3 fail")


def test_under_a_requirement_a_claimed_clause_not_checked_fails_too() -> None:
    run = _whole_run({"core", "durable"}, na="FL-3")
    assert requirement_problems(run, Requirement("core")) == [
        "durable (claimed): FL-3 not checked (n/a: no stop_backend/start_backend hooks)"]
    assert requirement_problems(run, Requirement()) == [], "no requirement, no demand"


def test_a_narrowed_run_cannot_meet_a_requirement() -> None:
    run = _whole_run({"core"})
    run.selected = frozenset({"LC-1"})
    assert "judged on whole runs only" in requirement_problems(run, Requirement("core"))[0]


# ------------------------------------------------------------------ two-sided capabilities
CORE_ONLY = '''
from sessionspec.reference import MemoryStore


class CoreOnly(MemoryStore):
    capabilities = frozenset({"core"})


def factory(namespace: str) -> CoreOnly:
    return CoreOnly()
'''


def test_an_unclaimed_capability_that_would_pass_is_offered_not_failed(tmp_path: Path,
                                                                     monkeypatch: pytest.MonkeyPatch) -> None:
    (tmp_path / "core_only.py").write_text(CORE_ONLY, encoding="utf-8")
    monkeypatch.syspath_prepend(str(tmp_path))
    result = invoke("check", "core_only:factory", *FAST, "-q", "--explore-claims")
    assert result.exit_code == EXIT_OK, result.output
    assert "You could claim: atomic, listing" in result.stdout


def test_a_claim_the_store_structurally_lacks_gets_one_precise_line() -> None:
    from sessionspec.conformance.gate import claim_problems

    ignores_versions = _whole_run({"core", "atomic"}, failing="MG-2")
    assert claim_problems(ignores_versions) == [
        "the store claims 'atomic' but does not honour expected_version (MG-2 fails: a stale version is accepted). "
        "Implement the compare-and-set, or stop claiming 'atomic'."]
    one_process = _whole_run({"core", "shared"})
    one_process.tests += [Outcome("s::a[one-instance]", "test_cc[one-instance]", ("CC-1",), "passed", 0.1),
                          Outcome("s::a[shared]", "test_cc[shared]", ("CC-1",), "failed", 0.1, "lost")]
    assert "instances do not share state" in claim_problems(one_process)[0]
    assert claim_problems(_whole_run({"core", "atomic"})) == []
