"""Every command in README.md and docs/ runs as written, and both CI recipes in docs/ci.md work.

Commands are read from the fenced ``bash``/``console`` blocks and the CI YAML, run by a shell
in a scratch project (``mypkg`` stands in for "your store": it wraps the MemoryStore), with
real servers for the Redis and Postgres targets. The only thing the test changes is the
size of each run: ``PYTEST_ADDOPTS`` (read by pytest itself, so the commands stay untouched)
keeps one LC-1 test and the listing module, because the whole suite per command would take
minutes. Commands that are not `sessionspec`'s (pip, tox, the project's pytest, .ci/run)
are checked for what can rot without network: extras that exist, quoting, tox
environments, paths.
"""

from __future__ import annotations

import contextlib
import os
import re
import shlex
import signal
import subprocess
import sys
import tomllib
import xml.etree.ElementTree as ET
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.fixtures.service import running_service

yaml = pytest.importorskip("yaml")

ROOT = Path(__file__).resolve().parent.parent
DOCS = [ROOT / "README.md", ROOT / "docs" / "plugging-in.md", ROOT / "docs" / "ci.md"]
FIXTURES = Path(__file__).resolve().parent / "fixtures"
NARROW = "-k 'test_create_returns_v0 or test_listing'"
BIN = Path(sys.executable).parent
REQUIRE_BACKENDS = os.environ.get("SESSIONSPEC_REQUIRE_BACKENDS") == "1"



def expected_exit(code: str) -> int:
    if "--require-level" in code:
        return 1  # a narrowed run cannot meet a required level: the gate answers 1, as documented
    if code.startswith("sessionspec recheck") and "mypkg.fixed" not in code:
        return 1  # the scratch project's failing run, rechecked on the same broken store, fails again
    return 0


NEEDS = {"redis-cluster": "cluster", "redis": "redis", "postgres": "postgres", "postgresql": "postgres"}


# ------------------------------------------------------------------ reading the docs
def _blocks(path: Path) -> Iterator[tuple[str, str]]:
    for match in re.finditer(r"^```(\w*)\n(.*?)^```", path.read_text(encoding="utf-8"), re.M | re.S):
        yield match.group(1), match.group(2)


def doc_commands(path: Path) -> list[str]:
    commands: list[str] = []
    for lang, body in _blocks(path):
        if lang not in ("bash", "console", "sh", "shell"):
            continue
        pending = ""
        for raw in body.splitlines():
            line = raw.rstrip()
            if lang == "console":
                if not line.startswith("$ ") and not pending:
                    continue
                line = line.removeprefix("$ ")
            if not line.strip() or (line.lstrip().startswith("#") and not pending):
                continue
            pending += line.strip()
            if pending.endswith("\\"):
                pending = pending[:-1] + " "
                continue
            commands.append(pending)
            pending = ""
    return commands


def _code(command: str) -> str:
    """The command without its trailing comment."""
    return command.split("  #", 1)[0].split(" # ", 1)[0].strip()


def ci_recipes() -> tuple[dict[str, Any], dict[str, Any]]:
    blocks = [yaml.safe_load(body) for lang, body in _blocks(ROOT / "docs" / "ci.md") if lang == "yaml"]
    github = next(b for b in blocks if isinstance(b, dict) and "jobs" in b)
    gitlab = next(b for b in blocks if isinstance(b, dict) and "sessionspec" in b and "script" in b["sessionspec"])
    return github, gitlab


def _marks(command: str) -> list[pytest.MarkDecorator]:
    words = set(re.split(r"[\s:/]+", _code(command)))
    if _code(command).endswith("backends up"):  # no kinds: Redis and Postgres
        words |= {"redis", "postgres"}
    return [getattr(pytest.mark, NEEDS[w]) for w in NEEDS if w in words or f"{w}://" in command]


def help_commands() -> list[str]:
    """The examples in `sessionspec check --help` and `backends up --help`."""
    from click.testing import CliRunner

    from sessionspec.conformance import cli

    found = []
    for args in (["check", "--help"], ["backends", "up", "--help"], ["recheck", "--help"]):
        text = CliRunner().invoke(cli.main, args).output
        found += [line.strip() for line in text.splitlines() if line.strip().startswith("sessionspec ")]
    return found


def _all_commands() -> list[Any]:
    params, seen = [], set()
    sources = [(path.name, doc_commands(path)) for path in DOCS] + [("--help", help_commands())]
    for name, commands in sources:
        for command in commands:
            if _code(command) in seen:
                continue
            seen.add(_code(command))
            params.append(pytest.param(command, marks=_marks(command), id=f"{name}:{_code(command)[:60]}"))
    return params


# ------------------------------------------------------------------ the scratch project
STORE = '''"""Stands in for the reader's store in the docs' commands."""
from sessionspec.reference import MemoryStore


def factory(namespace: str) -> MemoryStore:
    return MemoryStore()


make_store = factory
'''


@pytest.fixture(scope="module")
def servers() -> Iterator[dict[str, str]]:
    """A Redis server for the docs' explicit redis:// URLs (started only if a command needs one)."""
    started: list[Any] = []
    urls: dict[str, str] = {}

    def get(kind: str) -> str:
        if kind not in urls:
            from sessionspec.conformance.provision import ProvisionError, provision

            try:
                server = provision(kind, timeout=120)
            except ProvisionError as exc:
                if REQUIRE_BACKENDS:
                    pytest.fail(f"SESSIONSPEC_REQUIRE_BACKENDS=1 but no {kind} server:\n{exc}")
                pytest.skip(f"no {kind} server could be provisioned: {exc}")
            started.append(server)
            urls[kind] = server.url
        return urls[kind]

    yield get  # type: ignore[misc]
    for server in started:
        server.close()


@pytest.fixture(scope="module")
def project(tmp_path_factory: pytest.TempPathFactory) -> Path:
    folder = tmp_path_factory.mktemp("docs-project")
    (folder / "mypkg").mkdir()
    for name in ("__init__", "store", "sessions", "fixed"):
        (folder / "mypkg" / f"{name}.py").write_text(STORE, encoding="utf-8")
    (folder / "mymod.py").write_text(STORE, encoding="utf-8")
    (folder / "myapp").mkdir()
    (folder / "myapp" / "store.py").write_text(STORE, encoding="utf-8")
    (folder / "ledger.toml").write_text("[divergences]\n", encoding="utf-8")
    (folder / "docs").symlink_to(ROOT / "docs")
    env = _env(folder)
    for failures in ("failures", "sessionspec-failures"):  # what the recheck commands read
        subprocess.run([str(BIN / "sessionspec"), "check", "cli_targets:drops_owner", "--clause", "LC-1",
                        "-k", "test_lifecycle", "-q", "--report-dir", failures],
                       cwd=folder, env=env, capture_output=True, timeout=300, check=False)
        assert (folder / failures / "failures.json").is_file()
    return folder


def _env(folder: Path, **extra: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("SESSIONSPEC_", "GITHUB_"))}
    env.update(PATH=f"{BIN}{os.pathsep}{env.get('PATH', '')}", PYTHONPATH=f"{folder}{os.pathsep}{FIXTURES}",
               SESSIONSPEC_NO_CONFIG="1", COLUMNS="120", **{"PYTEST_ADDOPTS": NARROW, **extra})
    return env


def _shell(command: str, folder: Path, env: dict[str, str], timeout: float = 600) -> subprocess.CompletedProcess[str]:
    return subprocess.run(["bash", "-c", command], cwd=folder, env=env, capture_output=True, text=True,
                          timeout=timeout, check=False)


def _backends_up(command: str, folder: Path, env: dict[str, str]) -> None:
    """Start it, wait for "servers are up", press Ctrl-C: it must stop, having printed the exports.

    A child that outlives Ctrl-C is sent SIGABRT first, so the failure shows where it hung
    (PYTHONFAULTHANDLER prints every thread's stack).
    """
    proc = subprocess.Popen(["bash", "-c", f"exec {_code(command)}"], cwd=folder,
                            env={**env, "PYTHONFAULTHANDLER": "1"},
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        assert proc.stderr is not None
        lines = []
        for line in proc.stderr:
            lines.append(line)
            if "servers are up" in line or len(lines) > 50:
                break
        assert any("servers are up" in x for x in lines), "".join(lines)
        proc.send_signal(signal.SIGINT)
        try:
            out, err = proc.communicate(timeout=60)
        except subprocess.TimeoutExpired:
            proc.send_signal(signal.SIGABRT)
            out, err = proc.communicate(timeout=30)
            pytest.fail("still running 60 s after Ctrl-C:\n" + "".join(lines) + err)
        assert proc.returncode == 0, "".join(lines) + err
        assert "export SESSIONSPEC_" in out
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()


# ------------------------------------------------------------------ commands that are not sessionspec's
def _extras() -> set[str]:
    data = tomllib.loads((ROOT / "pyproject.toml").read_text(encoding="utf-8"))
    return set(data["project"]["optional-dependencies"])


def check_pip(command: str) -> None:
    words = shlex.split(_code(command))
    assert words[:2] == ["pip", "install"], command
    targets = [w for w in words[2:] if not w.startswith("-")]
    assert "sessionspec" not in targets, "sessionspec is not on PyPI: install it from the checkout"
    for target in targets:
        if target in ("tox",):
            continue
        match = re.fullmatch(r"(\.|\./sessionspec)(?:\[([\w,]+)\])?", target)
        assert match, f"{target!r}: install from a checkout, e.g. -e '.[redis]'"
        assert "'" in command or not match.group(2), f"quote the extras in {command!r} (zsh globs brackets)"
        for extra in (match.group(2) or "").split(","):
            assert not extra or extra in _extras(), f"no extra {extra!r} in pyproject.toml"


def check_tool(command: str) -> None:
    code = _code(command)
    if code.startswith("tox"):
        envs = set(re.findall(r"^\[testenv:([\w-]+)\]", (ROOT / "tox.ini").read_text(encoding="utf-8"), re.M))
        for env in re.findall(r"-e ([\w-]+)", code):
            assert env in envs, f"tox.ini has no environment {env!r}"
    elif code.startswith("bash "):
        assert (ROOT / code.split()[1]).is_file()
    elif code.startswith("pytest tests"):
        assert (ROOT / "tests").is_dir()
    else:
        pytest.fail(f"the docs show a command this test does not know how to check: {command!r}")


# ------------------------------------------------------------------ the tests
def test_the_docs_show_commands_and_both_recipes() -> None:
    commands = [c for p in DOCS for c in doc_commands(p)]
    assert any(c.startswith("sessionspec check") for c in commands) and len(commands) > 20
    assert all(ci_recipes())


DOCS_SERVICE = "http://127.0.0.1:8000"
"""The service URL the docs show; the test serves one and checks against it."""
RUNS_HERE = r"(cd \S+$|([A-Z_][A-Z0-9_]*=\S+ )*(sessionspec|python -m sessionspec|pytest --sessionspec-store))\b"
"""A part this test runs itself; a leading NAME=value is the command's environment."""


@pytest.mark.parametrize("command", _all_commands())
def test_a_documented_command_works_as_written(command: str, project: Path, servers: Any) -> None:
    parts = _code(command).split(" && ")
    for part in parts:  # `pip install -e . && sessionspec check`: check the install, run the command
        if part.startswith("pip install"):
            check_pip(part)
        elif not re.match(RUNS_HERE, part):
            check_tool(part)
    code = " && ".join(p for p in parts if not p.startswith("pip install"))
    runs = r"\b(sessionspec (check|recheck|backends)|python -m sessionspec|pytest --sessionspec-store)"
    if not re.search(runs, code):
        return
    narrowed = re.search(r"(--clause|-k) ", code) is not None
    env = _env(project, PYTEST_ADDOPTS="" if narrowed else NARROW,
               GITHUB_STEP_SUMMARY=str(project / "step-summary.md"))
    for url in ("redis://127.0.0.1:6379/0", "redis://localhost:6379/0"):
        if url in code:
            code = code.replace(url, servers("redis"))
    if " backends up" in code:
        _backends_up(code, project, env)
        return
    with contextlib.ExitStack() as stack:
        if DOCS_SERVICE in code:  # the docs' deployed service: a real one on a free port, backed by memory
            base, _ = stack.enter_context(running_service("memory"))
            code = code.replace(DOCS_SERVICE, base)
        out = _shell(code, project, env)
    if out.returncode == 3 and not REQUIRE_BACKENDS:
        pytest.skip(f"exit 3, no backend here (SESSIONSPEC_REQUIRE_BACKENDS=1 fails instead): {out.stderr[-500:]}")
    expected = expected_exit(code)
    assert out.returncode == expected, f"{command}\n{out.stdout[-3000:]}\n{out.stderr[-3000:]}"
    assert "Traceback" not in out.stderr


@pytest.mark.redis
@pytest.mark.postgres
def test_the_ci_recipes_run_their_commands(project: Path, servers: Any, tmp_path: Path) -> None:
    github, gitlab = ci_recipes()
    job = github["jobs"]["conformance"]
    assert {"redis", "postgres"} <= set(job["services"]), "service containers for both backends"
    steps = job["steps"]
    setup = next(s for s in steps if str(s.get("uses", "")).startswith("actions/setup-python"))
    assert setup["with"]["cache"] == "pip", "pip caching"
    upload = next(s for s in steps if str(s.get("uses", "")).startswith("actions/upload-artifact"))
    assert "junit-*.xml" in upload["with"]["path"] and upload["if"], "JUnit uploaded, also after a failure"
    assert any("$GITHUB_STEP_SUMMARY" in str(s.get("run", "")) for s in steps), "Markdown into the job summary"
    gl = gitlab["sessionspec"]
    assert gl["artifacts"]["reports"]["junit"] and gl["artifacts"]["when"] == "always" and gl["cache"]

    urls = {"SESSIONSPEC_REDIS_URL": servers("redis"), "SESSIONSPEC_POSTGRES_URL": servers("postgres")}
    for name, commands, declared in (
        ("github", [s["run"] for s in steps if "run" in s], job["env"]),
        ("gitlab", gl["script"], gl["variables"]),
    ):
        assert set(urls) <= set(declared), f"{name}: the recipe sets both URLs"
        folder = tmp_path / name
        folder.mkdir()
        summary = folder / "summary.md"
        env = _env(project, GITHUB_STEP_SUMMARY=str(summary), **urls)
        for command in commands:
            if command.startswith("pip install"):
                check_pip(command)
                continue
            out = _shell(command, folder, env)
            assert out.returncode == 0, f"{name}: {command}\n{out.stdout[-3000:]}\n{out.stderr[-3000:]}"
        junits = sorted(folder.glob("junit-*.xml"))
        assert [p.name for p in junits] == ["junit-postgres.xml", "junit-redis.xml"]
        for junit in junits:
            assert ET.parse(junit).getroot().get("failures") == "0"
        assert not (folder / "failures").exists(), "a passing run leaves no failure directory"
        if name == "github":
            assert summary.read_text(encoding="utf-8").count("## sessionspec:") == 2, "both summaries appended"
        else:
            assert sorted(p.name for p in folder.glob("sessionspec-*.md")) == [
                "sessionspec-postgres.md", "sessionspec-redis.md"]
