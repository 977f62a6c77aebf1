"""OpenAI Agents SDK ``RedisSession``: target ``sessionspec.adapters.agents_redis:factory``.

The run's provisioned Redis (``_servers``); one ``redis.asyncio`` client per store, a
``RedisSession`` per call with ``key_prefix="sessionspec:<namespace>"`` and the session's
period as the SDK's own ``ttl`` (an ``int`` of seconds, so the adapter rounds the
contract's period *up* to whole seconds: the SDK's documented unit). Expiry is native
(``PEXPIREAT`` on every ``add_items``, agents/extensions/memory/redis_session.py), so reads
are not filtered and ``raw_ttl`` is Redis's own ``PTTL`` of the history list. Claims
``core``, ``shared`` and ``durable`` (the provisioned Redis keeps its data across a restart).
See ``_agents`` for the mapping.
"""

from __future__ import annotations

import contextlib
from collections.abc import AsyncIterator
from typing import Any

from sessionspec.conformance.contract import SessionStore

from . import _servers
from ._agents import AgentsStore
from ._base import whole_seconds

__all__ = ["command_counts", "drop_namespace", "factory", "raw_ttl", "start_backend", "stop_backend"]


class RedisSessionStore(AgentsStore):
    native_ttl = True

    def __init__(self, namespace: str, client: Any) -> None:
        super().__init__(namespace)
        self.client = client
        self.prefix = f"sessionspec:{namespace}"
        import redis

        self.connectivity_errors = (OSError, ConnectionError, TimeoutError, redis.ConnectionError,
                                    redis.TimeoutError)

    @contextlib.asynccontextmanager
    async def _open(self, id: str, ttl: float | None = None) -> AsyncIterator[Any]:
        from agents.extensions.memory import RedisSession

        yield RedisSession(id, redis_client=self.client, key_prefix=self.prefix, ttl=whole_seconds(ttl))

    def messages_key(self, id: str) -> str:
        return f"{self.prefix}:{id}:messages"

    async def _close(self) -> None:
        await self.client.aclose(close_connection_pool=True)


def factory(namespace: str) -> RedisSessionStore:
    """Agents SDK RedisSession (native whole-second expiry; create-if-absent and versions emulated)"""
    import redis.asyncio

    # The SDK holds one connection per in-flight write (WATCH/MULTI); redis-py's default pool
    # raises MaxConnectionsError past 100 instead of waiting, so queue for a connection instead.
    pool = redis.asyncio.BlockingConnectionPool.from_url(_servers.server_url("redis"), max_connections=100,
                                                         timeout=20, socket_connect_timeout=3)
    client = redis.asyncio.Redis(connection_pool=pool)
    store = RedisSessionStore(namespace, client)
    store.capabilities = frozenset({"core", "shared", "durable"})
    return store


def _store(store: SessionStore) -> RedisSessionStore:
    assert isinstance(store, RedisSessionStore)
    return store


async def raw_ttl(store: SessionStore, id: str) -> float | None:
    rs = _store(store)
    ms = int(await rs.client.pttl(rs.messages_key(id)))
    if ms == -2:
        raise KeyError(id)
    return None if ms == -1 else ms / 1000


async def command_counts(store: SessionStore) -> dict[str, int]:
    stats = await _store(store).client.info("commandstats")
    return {str(k).removeprefix("cmdstat_"): int(v["calls"]) for k, v in stats.items() if isinstance(v, dict)}


async def drop_namespace(store: SessionStore, namespace: str) -> None:
    rs = _store(store)
    pattern = "".join("\\" + c if c in "*?[]\\" else c for c in rs.prefix) + ":*"
    keys = [key async for key in rs.client.scan_iter(match=pattern, count=1000)]
    for start in range(0, len(keys), 500):
        await rs.client.unlink(*keys[start:start + 500])


async def stop_backend() -> None:
    await _servers.stop("redis")


async def start_backend() -> None:
    await _servers.start("redis")
