"""Raw-driver baselines: redis-py and asyncpg doing the equivalent of each store operation.

Fairness: the raw client gets the same server, the same number of connections, connection
settings and admission as the store (Redis: the store's own pool's connection arguments behind
the same FIFO semaphore the store uses; Postgres: a pool built from the store's pool's own
arguments), the same ids and payloads.
It encodes with the stores' own encoder (``sessionspec.reference._json.dumps``: orjson when
installed, the same text as ``json.dumps`` with the stores' options) and decodes what it reads
into a dict, as an application would, with the stores' own parser (``_json.loads``), so a faster
encoder or parser speeds both sides alike (until 2026-12-06 the raw side encoded with ``json``,
~13 us more per 2 KB state, which flattered the stores' save ratios). What it does NOT do is the
store's contract: versions, expiry bookkeeping, owner indexes, validation and the copy of the
state; the ratio is the price of those.

Equivalents (Redis): get = GET of the state as one JSON string (the issue's baseline; beside it,
HGETALL of a hash holding one JSON text per key, the store's own layout, and GET through stock
redis-py's BlockingConnectionPool);
save = SET ... EX; apply = HSET of one field; append = RPUSH of one JSON text.
Equivalents (Postgres): get = SELECT state by primary key; save = UPDATE SET state;
apply = UPDATE SET state = state || $2 (jsonb merge); append = INSERT of one row into an
items table (the store also writes one items row per append, plus the session row).
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Mapping
from typing import Any

import asyncpg
from redis.asyncio import BlockingConnectionPool, ConnectionPool, Redis

from sessionspec.reference._json import dumps as _dumps
from sessionspec.reference._json import loads

__all__ = ["RawPostgres", "RawRedis", "dumps"]

TTL_SECONDS = 3600


def dumps(value: Any) -> str:
    """The stores' own encoder (``_json.dumps``), as text: what an application would send."""
    return _dumps(value).decode("utf-8")


class RawRedis:
    """redis-py commands on keys under ``{bench-raw-<tag>}:``, admitted like the store's calls.

    The store queues its callers in a FIFO gate (a semaphore of max_connections) in front of a
    plain pool, so the raw client does exactly that too. Stock redis-py's way, a
    BlockingConnectionPool of the same size, is measured beside it for get (``get_blocking``):
    with 1000 tasks its waiters are served out of order (p99 in seconds) and cost more CPU.
    """

    def __init__(self, client: Redis, blocking: Redis, max_connections: int, tag: str) -> None:
        self.client = client
        self.blocking = blocking
        self.gate = asyncio.Semaphore(max_connections)
        self.prefix = "{bench-raw-" + tag + "}:"

    @classmethod
    def like(cls, pool: ConnectionPool, tag: str) -> RawRedis:
        """Clients with the connection settings and connection count of ``pool`` (the store's)."""
        plain = ConnectionPool(connection_class=pool.connection_class, max_connections=pool.max_connections,
                               **pool.connection_kwargs)
        blocking = BlockingConnectionPool(connection_class=pool.connection_class,
                                          max_connections=pool.max_connections, **pool.connection_kwargs)
        return cls(Redis.from_pool(plain), Redis.from_pool(blocking), pool.max_connections, tag)

    def settings(self) -> dict[str, Any]:
        pool = self.client.connection_pool
        kwargs = {k: v for k, v in pool.connection_kwargs.items() if k not in ("password", "retry")}
        return {"max_connections": pool.max_connections, "admission": "FIFO semaphore of max_connections",
                **{k: repr(v) for k, v in kwargs.items()}}

    async def seed(self, states: Mapping[str, Mapping[str, Any]]) -> None:
        async with self.client.pipeline(transaction=False) as pipe:
            for sid, state in states.items():
                pipe.set(self.prefix + "s:" + sid, dumps(state), ex=TTL_SECONDS)
                pipe.hset(self.prefix + "h:" + sid, mapping={k: dumps(v) for k, v in state.items()})
                pipe.expire(self.prefix + "h:" + sid, TTL_SECONDS)
            await pipe.execute()

    async def get(self, sid: str) -> dict[str, Any]:
        async with self.gate:
            text = await self.client.get(self.prefix + "s:" + sid)
        assert text is not None, f"raw session {sid} is missing"
        state: dict[str, Any] = loads(text)
        return state

    async def get_blocking(self, sid: str) -> dict[str, Any]:
        text = await self.blocking.get(self.prefix + "s:" + sid)
        assert text is not None, f"raw session {sid} is missing"
        state: dict[str, Any] = loads(text)
        return state

    async def get_hash(self, sid: str) -> dict[str, Any]:
        async with self.gate:
            raw = await self.client.hgetall(self.prefix + "h:" + sid)  # type: ignore[misc]
        return {k.decode() if isinstance(k, bytes) else k: loads(v) for k, v in raw.items()}

    async def save(self, sid: str, state: Mapping[str, Any]) -> None:
        async with self.gate:
            await self.client.set(self.prefix + "s:" + sid, dumps(state), ex=TTL_SECONDS)

    async def apply(self, sid: str, key: str, value: Any) -> None:
        async with self.gate:
            await self.client.hset(self.prefix + "h:" + sid, key, dumps(value))

    async def append(self, sid: str, key: str, item: Any) -> None:
        async with self.gate:
            await self.client.rpush(self.prefix + "l:" + sid + "\0" + key, dumps(item))

    async def aclose(self) -> None:
        async for batch in _batches(self.client.scan_iter(match=self.prefix + "*", count=1000)):
            await self.client.unlink(*batch)
        await self.client.aclose()
        await self.blocking.aclose()


async def _batches(keys: AsyncIterator[bytes], size: int = 500) -> AsyncIterator[list[bytes]]:
    batch: list[bytes] = []
    async for key in keys:
        batch.append(key)
        if len(batch) >= size:
            yield batch
            batch = []
    if batch:
        yield batch


class RawPostgres:
    """asyncpg statements on throwaway tables (sessions, items, sessions with lz4), on a pool like the store's."""

    def __init__(self, pool: asyncpg.Pool, tag: str, settings: Mapping[str, Any]) -> None:
        self.pool = pool
        self.table = f"bench_raw_{tag}"
        self.items = f"bench_raw_items_{tag}"
        self.lz4_table = f"bench_raw_lz4_{tag}"
        self.lz4 = False
        """Whether the server has lz4, and so the third table (state compressed with lz4, as the store's)."""
        self._settings = dict(settings)
        self._get = f"SELECT state FROM {self.table} WHERE id = $1"
        self._save = f"UPDATE {self.table} SET state = $2 WHERE id = $1"
        self._apply = f"UPDATE {self.table} SET state = state || $2::jsonb WHERE id = $1"
        self._apply_lz4 = f"UPDATE {self.lz4_table} SET state = state || $2::jsonb WHERE id = $1"
        self._append = f"INSERT INTO {self.items} (id, key, items) VALUES ($1, $2, $3)"

    @classmethod
    async def like(cls, pool: asyncpg.Pool, tag: str) -> RawPostgres:
        """A pool built with exactly the arguments of ``pool`` (the store's): sizes, timeouts, and its
        setup/init/reset hooks (PostgresStore skips asyncpg's reset query, a round trip per release).

        asyncpg keeps them only in private attributes; they are read, never changed.
        """
        args = {"min_size": pool._minsize, "max_size": pool._maxsize, "max_queries": pool._max_queries,
                "max_inactive_connection_lifetime": pool._max_inactive_connection_lifetime,
                "setup": pool._setup, "init": pool._init, "reset": pool._reset}
        raw = cls(await asyncpg.create_pool(*pool._connect_args, **args, **pool._connect_kwargs), tag,
                  {k: (v if isinstance(v, int | float) or v is None else repr(v)) for k, v in
                   {**args, **pool._connect_kwargs}.items() if k != "password"})
        await raw.pool.execute(f"""
            CREATE TABLE {raw.table} (id text COLLATE "C" PRIMARY KEY, state jsonb NOT NULL);
            CREATE TABLE {raw.items} (id text COLLATE "C" NOT NULL, key text COLLATE "C" NOT NULL,
                seq bigint GENERATED ALWAYS AS IDENTITY, items jsonb NOT NULL, PRIMARY KEY (id, key, seq))""")
        try:  # the judged raw table keeps the server's default compression; this one is for comparison
            await raw.pool.execute(f"""CREATE TABLE {raw.lz4_table}
                (id text COLLATE "C" PRIMARY KEY, state jsonb COMPRESSION lz4 NOT NULL)""")
            raw.lz4 = True
        except (asyncpg.FeatureNotSupportedError, asyncpg.PostgresSyntaxError):
            pass
        return raw

    def settings(self) -> dict[str, Any]:
        return self._settings

    async def seed(self, states: Mapping[str, Mapping[str, Any]]) -> None:
        rows = [(sid, dumps(state)) for sid, state in states.items()]
        for table in [self.table, *([self.lz4_table] if self.lz4 else [])]:
            await self.pool.executemany(f"INSERT INTO {table} VALUES ($1, $2)", rows)

    async def get(self, sid: str) -> dict[str, Any]:
        state: dict[str, Any] = loads(await self.pool.fetchval(self._get, sid))
        return state

    async def save(self, sid: str, state: Mapping[str, Any]) -> None:
        await self.pool.execute(self._save, sid, dumps(state))

    async def apply(self, sid: str, key: str, value: Any) -> None:
        await self.pool.execute(self._apply, sid, dumps({key: value}))

    async def apply_lz4(self, sid: str, key: str, value: Any) -> None:
        await self.pool.execute(self._apply_lz4, sid, dumps({key: value}))

    async def append(self, sid: str, key: str, item: Any) -> None:
        await self.pool.execute(self._append, sid, key, dumps([item]))

    async def aclose(self) -> None:
        await self.pool.execute(f"DROP TABLE IF EXISTS {self.table}, {self.items}, {self.lz4_table}")
        await self.pool.close()

