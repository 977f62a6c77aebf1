"""[tool.sessionspec] in the user's pyproject.toml; flags override it; typos are errors (exit 2).

Also the spec-version pin: a fake 1.1 with one more clause leaves a run pinned to 1.0
unchanged, and its report lists the newer clause.
"""

from __future__ import annotations

import json
import textwrap
from pathlib import Path

import pytest
from click.testing import CliRunner, Result

from sessionspec.conformance import clauses, cli
from sessionspec.conformance.clauses import Clause
from sessionspec.conformance.config import ConfigError, find_pyproject, load_config, normalize_spec_version

FIXTURES = Path(__file__).resolve().parent / "fixtures"
FAST = ["--clause", "LC-1", "-k", "test_lifecycle"]


@pytest.fixture(autouse=True)
def _env(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.syspath_prepend(str(FIXTURES))
    for name in ("SESSIONSPEC_NO_CONFIG", "GITHUB_STEP_SUMMARY", "SESSIONSPEC_REDIS_URL"):
        monkeypatch.delenv(name, raising=False)


def project(tmp_path: Path, table: str, monkeypatch: pytest.MonkeyPatch) -> Path:
    """A user project whose pyproject.toml holds [tool.sessionspec]; the test runs inside a subfolder of it."""
    (tmp_path / "pyproject.toml").write_text(
        '[project]\nname = "acme"\n\n[tool.sessionspec]\n' + textwrap.dedent(table), encoding="utf-8")
    inner = tmp_path / "src" / "acme"
    inner.mkdir(parents=True)
    monkeypatch.chdir(inner)
    return tmp_path


def invoke(*args: str) -> Result:
    return CliRunner().invoke(cli.main, list(args), catch_exceptions=False)


# ------------------------------------------------------------------ reading the table
def test_the_nearest_pyproject_is_read_and_relative_paths_are_its(tmp_path: Path,
                                                                  monkeypatch: pytest.MonkeyPatch) -> None:
    root = project(tmp_path, """
        target = "cli_targets:drops_owner"
        spec-version = 1.0
        require-level = "core+atomic"
        require = "listing"
        capabilities = ["core", "atomic"]
        divergences = "ci/ledger.toml"
        timeout = 30
        report-dir = "out/failures"
    """, monkeypatch)
    assert find_pyproject() == root / "pyproject.toml"
    config = load_config()
    assert dict(config.values) == {
        "target": "cli_targets:drops_owner", "spec_version": "1.0", "require_level": "core+atomic",
        "require": ("listing",), "capabilities": ("core", "atomic"), "divergences": root / "ci" / "ledger.toml",
        "timeout": 30.0, "report_dir": root / "out" / "failures",
    }


def test_a_pyproject_without_the_table_means_no_settings(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    (tmp_path / "pyproject.toml").write_text('[project]\nname = "x"\n', encoding="utf-8")
    monkeypatch.chdir(tmp_path)
    assert not load_config().values


@pytest.mark.parametrize(("table", "words"), [
    ('spec_version = "1.0"', ["unknown key 'spec_version'", "did you mean 'spec-version'"]),
    ('require-level = "gold"', ["require-level must be one of core, core+atomic, full"]),
    ("timeout = -1", ["timeout must be a number of seconds > 0"]),
    ('capabilities = ["core", "teleport"]', ["unknown capabilities ['teleport']"]),
    ('spec-version = "9.9"', ["unknown spec version '9.9'"]),
    ("target = 3", ["target must be a non-empty string"]),
])
def test_a_bad_table_is_a_config_error_naming_file_and_key(tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
                                                          table: str, words: list[str]) -> None:
    project(tmp_path, table, monkeypatch)
    with pytest.raises(ConfigError) as caught:
        load_config()
    assert "pyproject.toml" in str(caught.value)
    for word in words:
        assert word in str(caught.value)
    result = invoke("check", *FAST)
    assert result.exit_code == 2 and "Traceback" not in result.output, result.output
    assert words[0] in result.stderr


def test_invalid_toml_and_an_explicit_missing_file_exit_2(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(tmp_path)
    (tmp_path / "pyproject.toml").write_text("[tool.sessionspec\n", encoding="utf-8")
    assert invoke("check", *FAST).exit_code == 2
    assert invoke("check", "--config", str(tmp_path / "nope.toml"), *FAST).exit_code == 2


def test_spec_versions_are_normalized() -> None:
    assert normalize_spec_version("1") == normalize_spec_version("v1.0") == "1.0"
    with pytest.raises(ValueError, match=r"knows 1\.0"):
        normalize_spec_version("1.1")


# ------------------------------------------------------------------ the table drives `check`; flags win
def test_the_target_comes_from_the_table_and_a_flag_overrides_it(tmp_path: Path,
                                                                 monkeypatch: pytest.MonkeyPatch) -> None:
    project(tmp_path, 'target = "cli_targets:drops_owner"\n', monkeypatch)
    from_table = invoke("check", *FAST, "-q")
    assert from_table.exit_code == 1, from_table.output
    assert "pyproject.toml" in from_table.stdout, "the run says where its settings came from"
    assert invoke("check", "memory", *FAST, "-q").exit_code == 0


def test_no_config_ignores_the_table(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    project(tmp_path, 'target = "cli_targets:drops_owner"\n', monkeypatch)
    monkeypatch.setenv("SESSIONSPEC_NO_CONFIG", "1")
    assert invoke("check", *FAST, "-q").exit_code == 0


def test_capabilities_override_what_the_store_declares(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    project(tmp_path, 'capabilities = ["core"]\nreport = "r.json"\n', monkeypatch)
    result = invoke("check", "memory", "--clause", "MG-1", "-q")
    assert result.exit_code == 0, result.output
    data = json.loads((tmp_path / "r.json").read_text(encoding="utf-8"))
    assert data["capabilities"] == ["core"] and "claims overridden" in data["description"]
    assert {c["id"]: c["verdict"] for c in data["clauses"]}["MG-1"] == "skip", "atomic is no longer claimed"
    no_core = invoke("check", "memory", "--capabilities", "atomic", "--clause", "MG-1")
    assert no_core.exit_code == 2 and "lack 'core'" in no_core.output


def test_the_required_level_from_the_table_is_named_when_unmet(tmp_path: Path,
                                                             monkeypatch: pytest.MonkeyPatch) -> None:
    project(tmp_path, 'require-level = "core"\n', monkeypatch)
    result = invoke("check", "memory", *FAST, "-q", "--markdown", str(tmp_path / "s.md"))
    assert result.exit_code == 1, result.output
    text = " ".join(result.stdout.split())
    assert "REQUIREMENT NOT MET: level core" in text and "pyproject.toml" in text
    assert "judged on whole runs only" in text, "a --clause run cannot prove a level"
    summary = (tmp_path / "s.md").read_text(encoding="utf-8")
    assert summary.startswith("## sessionspec: `memory` ✘ FAIL") and "### Requirement not met" in summary


# ------------------------------------------------------------------ pinning
FAKE = Clause("ZZ-1", "core", "a clause a later spec version adds", since="1.1")


def _run_pinned(tmp_path: Path, name: str) -> tuple[int, dict[str, str], str]:
    report, summary = tmp_path / f"{name}.json", tmp_path / f"{name}.md"
    result = invoke("check", "memory", "--spec-version", "1.0", *FAST, "-q", "--report", str(report),
                    "--markdown", str(summary))
    data = json.loads(report.read_text(encoding="utf-8"))
    return result.exit_code, {c["id"]: c["verdict"] for c in data["clauses"]}, summary.read_text(encoding="utf-8")


def test_a_pin_keeps_the_gate_while_the_report_lists_newer_clauses(tmp_path: Path,
                                                                   monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("SESSIONSPEC_NO_CONFIG", "1")
    before = _run_pinned(tmp_path, "before")
    monkeypatch.setattr(clauses, "SPEC_VERSIONS", ("1.0", "1.1"))
    monkeypatch.setattr(clauses, "CLAUSES", (*clauses.CLAUSES, FAKE))
    monkeypatch.setitem(clauses._BY_ID, FAKE.id, FAKE)
    after = _run_pinned(tmp_path, "after")
    assert after[:2] == before[:2], "same exit code, same clause verdicts: the pinned gate did not move"
    assert "ZZ-1" not in after[1]
    assert "ZZ-1" not in before[2] and "newer clauses not checked: ZZ-1 (1.1)" in after[2]
