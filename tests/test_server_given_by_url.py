"""A server given by URL, set up as users' servers are: the suite must not blame the store for the setup.

Most PostgreSQL servers run in UTC. A store that mixes the app's clock with the server's zone
looks right there, so HY-2 would prove nothing; failing it would blame a correct store for its
setup. The built-in postgres target sets its connections' TimeZone far from UTC, so HY-2 is
checked on any server, one given by URL and running in UTC included, and still catches the bug.
Some shops also default to SERIALIZABLE transactions, which the reference store's statements
(written for READ COMMITTED) must not inherit. On a database set up both ways the reference
store passes every clause the suite can reach from a URL.
"""

from __future__ import annotations

import asyncio
import contextlib
import zoneinfo
from collections.abc import Iterator
from datetime import datetime

import asyncpg
import pytest

from sessionspec.conformance.results import NOT_APPLICABLE
from sessionspec.conformance.runner import run_suite
from sessionspec.conformance.targets import Target, TargetOptions, resolve_target
from sessionspec.reference.memory import MemoryStore
from tests.fixtures.servers import database_with, provisioned


def _zone_with_the_local_offset() -> str:
    """A zone that is not named UTC but has this process's current offset (Africa/Abidjan where local is UTC)."""
    local = datetime.now().astimezone().utcoffset()
    for name in ["Africa/Abidjan", *sorted(zoneinfo.available_timezones())]:
        if "/" in name and "UTC" not in name.upper() and "GMT" not in name.upper():
            with contextlib.suppress(Exception):
                if datetime.now(zoneinfo.ZoneInfo(name)).utcoffset() == local:
                    return name
    pytest.skip("no named zone has this process's offset")


@pytest.mark.parametrize("zone", ["UTC", "Etc/UTC", "local-offset"])
def test_a_database_zone_that_proves_nothing_leaves_hy_2_not_checked(zone: str) -> None:
    reported = _zone_with_the_local_offset() if zone == "local-offset" else zone

    async def db_timezone(store: object) -> str:
        return reported

    target = Target(spec="memory-in-utc", description="MemoryStore reporting a database zone",
                    factory=lambda namespace: MemoryStore(), db_timezone=db_timezone)
    result = run_suite(target, clauses=["HY-2"])
    [test] = result.tests
    assert test.status == "skipped" and test.message.startswith(NOT_APPLICABLE), (test.status, test.message)
    assert reported in test.message
    [verdict] = [c for c in result.clauses if c.clause.id == "HY-2"]
    assert verdict.verdict == "n/a", verdict


@pytest.fixture(scope="module")
def utc_database_url() -> Iterator[str]:
    """The provisioned server, through a database of its own that defaults to TimeZone UTC and to
    SERIALIZABLE transactions."""
    with provisioned("postgres") as server:
        yield database_with(server.url, TimeZone="UTC", default_transaction_isolation="serializable")


@pytest.mark.postgres
def test_hy_2_is_checked_on_a_server_given_by_url_that_runs_in_utc(utc_database_url: str) -> None:
    async def server_zone() -> str:
        conn = await asyncpg.connect(utc_database_url)
        try:
            return str(await conn.fetchval("SHOW TimeZone"))
        finally:
            await conn.close()

    assert asyncio.run(server_zone()) == "UTC"  # the database really defaults to UTC
    target = resolve_target(utc_database_url, TargetOptions())
    try:
        verdicts = {c.clause.id: c for c in run_suite(target, clauses=["HY-2"]).clauses}
        assert verdicts["HY-2"].verdict == "pass", verdicts["HY-2"]
        from tests.broken.backends import BACKEND_BROKEN

        broken = BACKEND_BROKEN["postgres_get_on_app_clock"]
        caught = {c.clause.id: c for c in run_suite(broken.target(target), clauses=["HY-2"]).clauses}
        assert caught["HY-2"].verdict == "fail", caught["HY-2"]
    finally:
        target.close()


@pytest.mark.postgres
def test_the_reference_store_passes_on_a_server_given_by_url_that_runs_in_utc(utc_database_url: str) -> None:
    """What a user's `check postgres --postgres-url` sees: every clause passes; only what needs the server's
    process (stopping it, FL-2/FL-3) or Redis (HY-1) is not checked."""
    target = resolve_target(utc_database_url, TargetOptions())
    try:
        result = run_suite(target)
    finally:
        target.close()
    assert not result.errors, result.errors
    assert not result.failures, [(c.clause.id, c.reason) for c in result.failures]
    not_checked = {c.clause.id for c in result.clauses if c.verdict == "n/a"}
    assert not_checked <= {"FL-2", "FL-3", "HY-1"}, not_checked
