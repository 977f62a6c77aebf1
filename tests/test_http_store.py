"""HttpStore against the real service: the whole suite end to end, outages, and local validation.

The suite runs through ``http://`` against ``sessionspec serve`` on memory (always) and on
Redis and Postgres (markers ``redis``/``postgres``; skipped when no server can be
provisioned unless SESSIONSPEC_REQUIRE_BACKENDS=1). Clauses that need to stop or inspect the
backend (FL-1..3, HY-*) are "n/a" through a URL; the outage tests below cover the HTTP path.
"""

from __future__ import annotations

import asyncio
import math
import os
import socket
from collections.abc import Awaitable, Callable, Iterator
from typing import Any

import pytest

pytest.importorskip("httpx", reason="pip install sessionspec[service]")

from sessionspec.conformance.contract import (
    BackendUnavailable,
    InvalidSessionId,
    InvalidState,
    InvalidTtl,
)
from sessionspec.conformance.provision import ProvisionError, Server, provision
from sessionspec.conformance.results import RunResult
from sessionspec.conformance.runner import run_suite
from sessionspec.conformance.targets import resolve_target
from sessionspec.reference.http_store import HttpStore
from tests.fixtures.service import running_service

REQUIRE = os.environ.get("SESSIONSPEC_REQUIRE_BACKENDS") == "1"
REMOTE_ONLY = frozenset({"FL-1", "FL-2", "FL-3", "HY-1", "HY-2", "HY-3"})
"""Through a URL the suite cannot stop or inspect the backend: these are n/a, with the reason shown."""


def _provision(kind: str) -> Server:
    try:
        return provision(kind)
    except ProvisionError as exc:
        if REQUIRE:
            pytest.fail(f"SESSIONSPEC_REQUIRE_BACKENDS=1 but:\n{exc}")
        pytest.skip(str(exc))


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def run(coro: Awaitable[Any]) -> Any:
    return asyncio.run(asyncio.wait_for(coro, 120))  # type: ignore[arg-type]


# ---------------------------------------------------------------- the whole suite through HTTP
@pytest.fixture(scope="module", params=[
    pytest.param("memory", id="memory"),
    pytest.param("redis", id="redis", marks=pytest.mark.redis),
    pytest.param("postgres", id="postgres", marks=pytest.mark.postgres),
])
def suite_run(request: pytest.FixtureRequest) -> Iterator[RunResult]:
    kind: str = request.param
    server = None if kind == "memory" else _provision(kind)
    try:
        with running_service("memory" if server is None else server.url) as (url, _):
            target = resolve_target(url)
            try:
                yield run_suite(target, timeout=600)  # 1000 concurrent calls over HTTP on a busy runner
            finally:
                target.close()
    finally:
        if server is not None:
            server.close()


def test_the_whole_suite_passes_through_httpstore(suite_run: RunResult) -> None:
    assert not suite_run.errors, suite_run.errors
    failures = [f"{c.clause.id}: {c.reason}" for c in suite_run.failures]
    assert not failures, "through HTTP:\n  " + "\n  ".join(failures)
    assert {"core", "atomic", "listing", "shared"} <= suite_run.capabilities
    skipped = {c.clause.id for c in suite_run.claimed_skips}
    assert skipped <= REMOTE_ONLY, f"claimed clauses skipped through HTTP: {sorted(skipped - REMOTE_ONLY)}"


# ---------------------------------------------------------------- outages and recovery
OPERATIONS: dict[str, Callable[[HttpStore], Awaitable[object]]] = {
    "create": lambda s: s.create({"n": 1}),
    "get": lambda s: s.get("x"),
    "save": lambda s: s.save("x", {"n": 2}),
    "apply": lambda s: s.apply("x", {"n": 3}),
    "append": lambda s: s.append("x", "log", [1]),
    "touch": lambda s: s.touch("x"),
    "delete": lambda s: s.delete("x"),
    "list": lambda s: s.list(),
    "count": lambda s: s.count(),
    "purge_expired": lambda s: s.purge_expired(),
}


async def _errors(store: HttpStore) -> dict[str, str]:
    async def one(call: Callable[[HttpStore], Awaitable[object]]) -> str:
        try:
            await call(store)
        except Exception as exc:
            return type(exc).__name__
        return "returned"

    names = list(OPERATIONS)
    return dict(zip(names, await asyncio.gather(*(one(OPERATIONS[n]) for n in names)), strict=True))


def test_every_operation_raises_backend_unavailable_when_no_service_listens() -> None:
    async def go() -> dict[str, str]:
        async with HttpStore(f"http://127.0.0.1:{_free_port()}", namespace="down", timeout=2.0) as store:
            return await _errors(store)

    assert set(run(go()).values()) == {"BackendUnavailable"}


def test_connect_to_a_dead_service_is_backend_unavailable_not_a_fallback() -> None:
    with pytest.raises(BackendUnavailable):
        run(HttpStore.connect(f"http://127.0.0.1:{_free_port()}", namespace="x", timeout=2.0))


def test_bad_input_is_refused_before_any_request() -> None:
    """ID-3/ST-2/TTL-0 hold on the client: with no service at all the typed error still comes first."""

    async def go() -> None:
        async with HttpStore(f"http://127.0.0.1:{_free_port()}", timeout=2.0) as store:
            with pytest.raises(InvalidSessionId):
                await store.get("")
            with pytest.raises(InvalidSessionId):
                await store.create({}, id="a\x00b")
            with pytest.raises(InvalidState) as bad:
                await store.save("x", {"a": {"b": [math.nan]}})
            assert bad.value.path == '$.a.b[0]'
            with pytest.raises(InvalidTtl):
                await store.touch("x", ttl=-1)
            with pytest.raises(InvalidState):
                await store.append("x", "log", "not a list")

    run(go())


def test_a_restarted_service_is_used_again_by_the_same_store_instance() -> None:
    """FL-2 at the HTTP layer: kill the service, get BackendUnavailable, restart it on the same port."""
    port = _free_port()

    async def go() -> None:
        store = HttpStore(f"http://127.0.0.1:{port}", namespace="restart", timeout=2.0)
        try:
            with running_service_on(port):
                assert (await store.create({"n": 1}, id="r")).state == {"n": 1}
            with pytest.raises(BackendUnavailable):
                await store.get("r")
            with running_service_on(port):
                assert await store.get("r") is None  # a memory service restarted empty: no stale answer
                assert (await store.create({"n": 2}, id="r")).version >= 1
        finally:
            await store.aclose()

    run(go())


def running_service_on(port: int) -> Any:
    """A memory service on a fixed port (what a restart of a deployment looks like)."""
    import contextlib
    import subprocess

    from tests.fixtures.service import ROOT, sessionspec

    @contextlib.contextmanager
    def ctx() -> Iterator[None]:
        process = subprocess.Popen([*sessionspec(), "serve", "--port", str(port)], stdout=subprocess.PIPE,
                                   stderr=subprocess.PIPE, text=True, cwd=ROOT)
        try:
            assert process.stdout is not None
            assert process.stdout.readline().startswith("listening on ")
            yield
        finally:
            process.terminate()
            process.wait(timeout=15)

    return ctx()


@pytest.mark.redis
def test_a_backend_outage_behind_the_service_is_backend_unavailable_and_recovers() -> None:
    """Redis stopped behind a live service: 503 problem -> BackendUnavailable; back up -> the same store works."""
    server = _provision("redis")
    if not server.controllable:
        server.close()
        pytest.skip("the provisioned Redis cannot be stopped and started")
    try:
        with running_service(server.url) as (url, _):
            async def go() -> None:
                async with await HttpStore.connect(url, namespace="outage", timeout=10.0) as store:
                    await store.create({"n": 1}, id="o")
                    await asyncio.to_thread(server.stop)
                    try:
                        errors = await _errors(store)
                    finally:
                        await asyncio.to_thread(server.start)
                    assert set(errors.values()) == {"BackendUnavailable"}, errors
                    for _ in range(200):  # reconnection: bounded retries, no sleep-as-synchronisation
                        try:
                            got = await store.get("o")
                            break
                        except BackendUnavailable:
                            await asyncio.sleep(0.05)
                    else:
                        pytest.fail("the store did not work again after Redis came back")
                    assert got is not None and got.state == {"n": 1}

            run(go())
    finally:
        server.close()
