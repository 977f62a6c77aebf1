"""Stores for the manager's unit tests: MemoryStore, and real Redis / Postgres when they can be provisioned.

``stores`` is a fixture yielding ``open(namespace=None)``, an async context manager of a
fresh store (same namespace -> an independent instance over the same data, for the
cross-instance tests). A missing server is a skip, or a failure with SESSIONSPEC_REQUIRE_BACKENDS=1.
"""

from __future__ import annotations

import contextlib
import uuid
from collections.abc import AsyncIterator, Callable, Iterator
from typing import Any

import pytest

from sessionspec.conformance.contract import SessionStore
from sessionspec.conformance.provision import Server
from sessionspec.reference.memory import MemoryStore
from tests.fixtures.servers import provisioned

BACKENDS = [pytest.param("memory", id="memory"),
            pytest.param("redis", marks=pytest.mark.redis, id="redis"),
            pytest.param("postgres", marks=pytest.mark.postgres, id="postgres")]
Opener = Callable[..., contextlib.AbstractAsyncContextManager[SessionStore]]


def _server(kind: str) -> Iterator[Server]:
    with provisioned(kind) as server:
        yield server


@pytest.fixture(scope="module")
def manager_redis_server() -> Iterator[Server]:
    pytest.importorskip("redis")
    yield from _server("redis")


@pytest.fixture(scope="module")
def manager_postgres_server() -> Iterator[Server]:
    pytest.importorskip("asyncpg")
    yield from _server("postgres")


def opener(kind: str, url: str | None) -> Opener:
    shared: dict[str, MemoryStore] = {}

    @contextlib.asynccontextmanager
    async def open_store(namespace: str | None = None, **options: Any) -> AsyncIterator[SessionStore]:
        ns = namespace or f"m{uuid.uuid4().hex[:12]}"
        store: Any
        if kind == "memory":
            store = shared.setdefault(ns, MemoryStore(**options))
        elif kind == "redis":
            from sessionspec.reference.redis import RedisStore

            store = RedisStore.from_url(url or "", namespace=ns, **options)
        else:
            from sessionspec.reference.postgres import PostgresStore

            store = await PostgresStore.connect(url or "", namespace=ns, **options)
        try:
            yield store
        finally:
            await store.aclose()

    return open_store


@pytest.fixture(params=BACKENDS)
def stores(request: pytest.FixtureRequest) -> Opener:
    kind: str = request.param
    if kind == "memory":
        return opener(kind, None)
    server: Server = request.getfixturevalue(f"manager_{kind}_server")
    return opener(kind, server.url)

