"""RedisStore beyond the conformance suite: what only a look inside Redis can show.

One slot per namespace on a real cluster, expiry written by the same script as the data,
NOSCRIPT recovery, a 1000-task burst queueing on a small pool, append that never touches
the existing list, no KEYS/SCAN behind list/count, complete index cleanup, reconnect after
a restart, and cancellation that cannot leave a stale reply on a pooled connection (forced
with a proxy that holds Redis's replies, so it never depends on timing). A missing server
is a skip with the provisioning error, or a failure when SESSIONSPEC_REQUIRE_BACKENDS=1.
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import os
import re
import sys
import time
import uuid
import warnings
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator
from typing import Any, TypeVar

import pytest

pytest.importorskip("redis", reason="pip install -e '.[redis]'")

from redis.asyncio import BlockingConnectionPool, Redis
from redis.asyncio.cluster import RedisCluster
from redis.asyncio.retry import Retry
from redis.backoff import NoBackoff

from sessionspec.conformance.contract import BackendUnavailable, Session
from sessionspec.conformance.provision import ProvisionError, Server, provision
from sessionspec.conformance.target_redis import command_counts, drop_namespace
from sessionspec.reference.redis import RedisStore

pytestmark = pytest.mark.redis
REQUIRE = os.environ.get("SESSIONSPEC_REQUIRE_BACKENDS") == "1"
T = TypeVar("T")
# ids that would break a naive key scheme: braces (hash tags), separators, globs, NUL-free Unicode
AWKWARD_IDS = ["{t}", "a}b{c", "x:y", "*", "s:x", "l:x", "세션", "🙂", "a" * 256]


def _server(kind: str) -> Iterator[Server]:
    try:
        server = provision(kind)
    except ProvisionError as exc:
        if REQUIRE:
            pytest.fail(f"SESSIONSPEC_REQUIRE_BACKENDS=1 but:\n{exc}")
        pytest.skip(str(exc))
    try:
        yield server
    finally:
        server.close()


@pytest.fixture(scope="module")
def redis_server() -> Iterator[Server]:
    yield from _server("redis")


@pytest.fixture(scope="module")
def cluster_server() -> Iterator[Server]:
    yield from _server("redis-cluster")


def run(make: Callable[[], Awaitable[T]]) -> T:
    return asyncio.run(asyncio.wait_for(make(), 120))  # type: ignore[arg-type]


@contextlib.asynccontextmanager
async def opened(url: str, **options: Any) -> AsyncIterator[RedisStore]:
    async with RedisStore.from_url(url, namespace=f"t{uuid.uuid4().hex[:12]}", **options) as store:
        yield store


@contextlib.asynccontextmanager
async def memory_settings(store: RedisStore) -> AsyncIterator[Callable[[str, str], Awaitable[None]]]:
    """configure(maxmemory, policy) on the shared test server; what it had comes back on exit.

    The policy is set before the limit and restored after it, so the server never holds a
    limit below its use together with a policy that would evict the other tests' keys.
    """
    before = {k: str(v) for k, v in (await store.client.config_get("maxmemory*")).items()}

    async def configure(limit: str, policy: str) -> None:
        await store.client.config_set("maxmemory-policy", policy)
        await store.client.config_set("maxmemory", limit)

    try:
        yield configure
    finally:
        await store.client.config_set("maxmemory", before["maxmemory"])
        await store.client.config_set("maxmemory-policy", before["maxmemory-policy"])


async def delta(store: RedisStore, action: Callable[[], Awaitable[Any]]) -> dict[str, int]:
    """Commands Redis ran during action (INFO commandstats before/after; INFO itself excluded)."""
    before = await command_counts(store)
    await action()
    after = await command_counts(store)
    return {k: n - before.get(k, 0) for k, n in after.items() if n != before.get(k, 0) and k != "info"}


# ---------------------------------------------------------------- layout
@pytest.mark.cluster
def test_every_key_of_a_namespace_lives_in_one_cluster_slot(cluster_server: Server) -> None:
    async def body() -> None:
        async with opened(cluster_server.url) as store:
            assert isinstance(store.client, RedisCluster)
            for i, sid in enumerate(AWKWARD_IDS):
                await store.create({"k": 1, "history": [1, 2]}, id=sid, owner=sid if i % 2 else None, ttl=60)
                await store.append(sid, "log", ["x"])
            await store.list(limit=3)
            await store.purge_expired()
            keys: list[bytes | str] = []
            for node in store.client.get_primaries():
                keys += await store.client.keys(store.prefix.replace("{", "\\{").replace("}", "\\}") + "*",
                                                target_nodes=node)
            assert len(keys) >= 3 * len(AWKWARD_IDS), f"expected the store's keys, found {keys}"
            slots = {await store.client.cluster_keyslot(k.decode() if isinstance(k, bytes) else k) for k in keys}
            assert len(slots) == 1, (
                f"the namespace's keys spread over slots {slots}: a script touching them would fail with "
                "CROSSSLOT on a cluster. Every key must start with the '{{namespace}}' hash tag."
            )
            assert {(await store.get(sid)) is not None for sid in AWKWARD_IDS} == {True}

    run(body)


# ---------------------------------------------------------------- expiry in the same script
def test_expiry_is_written_by_the_same_single_script_as_the_data(redis_server: Server) -> None:
    async def body() -> None:
        async with opened(redis_server.url) as store:
            sid = (await store.create({"a": 1, "history": [1, 2, 3]}, ttl=60)).id  # loads the scripts
            await store.append(sid, "history", [4])  # the list now has a tail: three keys in all

            async def write() -> None:
                await store.append(sid, "history", [5])

            ran = await delta(store, write)
            assert ran.get("evalsha") == 1, f"append must be ONE EVALSHA round trip, Redis ran {ran}"
            assert "pexpireat" in ran and "expire" not in ran and "pexpire" not in ran, ran
            for key in (store.session_key(sid), f"{store.prefix}ls:{sid}", f"{store.prefix}l:{sid}\0\"history\""):
                ttl_ms = await store.client.pttl(key)
                assert 59_000 < ttl_ms <= 60_001, (  # expiry rounds up to the next ms
                    f"{key!r} has PTTL {ttl_ms} right after a write with ttl=60: expiry must be set by the script "
                    "that writes the data, on every key of the session (-1 = never expires: an orphan)"
                )

    run(body)


def test_a_whole_state_write_is_one_hash_and_one_hset(redis_server: Server) -> None:
    async def body() -> None:
        async with opened(redis_server.url) as store:
            sid = (await store.create({"log": [1]}, ttl=60)).id
            await store.append(sid, "log", [2])  # a tail, which the save below must remove
            state = {"a": 1, "pages": ["/a", "/b"], "cart": [{"sku": 1}], "nested": {"x": [1]}}

            async def save() -> None:
                await store.save(sid, state)

            ran = await delta(store, save)
            assert ran.get("evalsha") == 1 and ran.get("hset") == 1 and "rpush" not in ran and "sadd" not in ran, (
                f"save ran {ran}: a whole state is one HSET of its fields and the meta (lists stored whole)")
            keys = [k async for k in store.client.scan_iter(match=store.prefix.replace("{", "\\{").replace("}", "\\}")
                                                            + "[sl]*:" + sid + "*")]
            assert keys == [store.session_key(sid).encode()], f"save left {keys}: the old tail must go"
            got = await store.get(sid)
            assert got is not None and got.state == state

    run(body)


def test_a_flushed_script_cache_is_reloaded_transparently(redis_server: Server) -> None:
    async def body() -> None:
        async with opened(redis_server.url) as store:
            created = await store.create({"a": 1})
            await store.client.script_flush()
            got = await store.get(created.id)
            assert got is not None and got.state == {"a": 1}, "after SCRIPT FLUSH the store must reload (NOSCRIPT)"
            assert (await store.client.script_exists(store._scripts["get"].sha)) == [True]

    run(body)


# ---------------------------------------------------------------- pool
@pytest.mark.parametrize("kind", ["redis", pytest.param("redis-cluster", marks=pytest.mark.cluster)])
def test_a_1000_task_burst_queues_on_a_small_pool_without_errors(kind: str, request: pytest.FixtureRequest) -> None:
    server: Server = request.getfixturevalue("redis_server" if kind == "redis" else "cluster_server")

    async def body() -> None:
        async with opened(server.url, max_connections=8) as store:
            sessions = await asyncio.gather(*(store.create({"i": i}) for i in range(1000)))
            assert len({s.id for s in sessions}) == 1000
            got = await asyncio.gather(*(store.get(s.id) for s in sessions))
            assert [g.state["i"] if g else None for g in got] == list(range(1000))
            if isinstance(store.client, Redis):
                pool = store.client.connection_pool
                opened_connections = len(pool._available_connections) + len(pool._in_use_connections)
                assert opened_connections <= 8, f"the store opened {opened_connections} connections for 8 allowed"

    run(body)


@pytest.mark.parametrize("kind", ["redis", pytest.param("redis-cluster", marks=pytest.mark.cluster)])
def test_from_url_gives_the_asyncio_client_an_asyncio_retry_and_warns_nothing(
        kind: str, request: pytest.FixtureRequest) -> None:
    """An application that opens the store must not get a driver warning in its logs on every start:
    redis-py 6+ converts a sync ``redis.retry.Retry`` given to its asyncio client, with a UserWarning."""
    server: Server = request.getfixturevalue("redis_server" if kind == "redis" else "cluster_server")

    async def body() -> None:
        with warnings.catch_warnings():
            warnings.simplefilter("error")  # any warning while opening and using the store fails here
            async with opened(server.url) as store:
                session = await store.create({"k": 1})
                assert (await store.get(session.id)) is not None

    run(body)


# ---------------------------------------------------------------- costs
def test_append_touches_only_the_new_items_whatever_the_list_length(redis_server: Server) -> None:
    async def body() -> None:
        async with opened(redis_server.url) as store:
            short = await store.create({"history": [0]})
            long = await store.create({"history": list(range(10_000))})
            firsts = [await delta(store, functools.partial(store.append, s.id, "history", ["first"]))
                      for s in (short, long)]
            assert firsts[0] == firsts[1], f"the first append after a whole write ran {firsts}"
            costs = [await delta(store, functools.partial(store.append, s.id, "history", ["new"]))
                     for s in (short, long)]
            assert costs[0] == costs[1], (
                f"append ran {costs[1]} on a 10,000-item list but {costs[0]} on a 1-item list: "
                "MG-5 wants O(items appended), the same commands whatever the length"
            )
            assert costs[1].get("rpush") == 1 and not {"lrange", "del", "lset", "ltrim", "hget"} & set(costs[1]), (
                f"an append after the first ran {costs[1]}: it must push without reading the list")
            key = f"{store.prefix}l:{long.id}\0\"history\""
            assert await store.client.llen(key) == 2, "the tail holds only the appended items"
            assert await store.client.lindex(key, -1) == b'"new"'
            got = await store.get(long.id)
            assert got is not None and got.state["history"] == [*range(10_000), "first", "new"]

    run(body)


def test_list_and_count_run_no_keys_or_scan(redis_server: Server) -> None:
    async def body() -> None:
        async with opened(redis_server.url) as store:
            for i in range(30):
                await store.create({}, owner="alice" if i % 3 else "bob")

            async def listing() -> None:
                page = await store.list(owner="alice", limit=5)
                while page.next_cursor:
                    page = await store.list(owner="alice", limit=5, cursor=page.next_cursor)
                assert await store.count() == 30 and await store.count(owner="bob") == 10
                await store.list(limit=1000)

            ran = await delta(store, listing)
            assert not {"keys", "scan"} & set(ran), f"list/count ran {ran}: KEYS/SCAN block Redis (HY-1)"

    run(body)


def test_purge_and_delete_leave_no_index_entry_behind(redis_server: Server) -> None:
    async def body() -> None:
        async with opened(redis_server.url) as store:
            expiring = await store.create({"h": [1]}, owner="alice", ttl=0.05)
            deleted = await store.create({"h": [1]}, owner="alice", ttl=60)
            kept = await store.create({}, owner="alice")
            assert await store.delete(deleted.id)
            assert expiring.expires_at is not None
            seconds, micros = await store.client.time()  # the store's clock is the server's
            await asyncio.sleep(max(0.0, expiring.expires_at.timestamp() - seconds - micros / 1e6) + 0.01)
            assert await store.get(expiring.id) is None, "a session past its server-side expiry is still visible"
            assert await store.purge_expired() == 1
            p = store.prefix
            remaining = [k.decode() async for k in store.client.scan_iter(match=p + "*")]
            assert sorted(remaining) == sorted([f"{p}s:{kept.id}", f"{p}ids", f"{p}exp", f"{p}own", f"{p}oi:alice",
                                                f"{p}oe:alice", f"{p}ver"]), remaining
            for index in ("ids", "exp", "oi:alice", "oe:alice"):
                assert await store.client.zrange(p + index, 0, -1) == [kept.id.encode()], index
            assert await store.client.hkeys(p + "own") == [kept.id.encode()]

    run(body)


# ---------------------------------------------------------------- failure and recovery
def test_a_restarted_server_is_used_again_by_the_same_store(redis_server: Server) -> None:
    if not redis_server.controllable:
        pytest.skip("the Redis server was given as a URL: it cannot be stopped")

    async def body() -> None:
        async with opened(redis_server.url, timeout=2.0) as store:
            created = await asyncio.gather(*(store.create({"n": i}) for i in range(20)))  # several pooled conns
            await asyncio.to_thread(redis_server.stop)
            try:
                started = time.monotonic()
                with pytest.raises(BackendUnavailable):
                    await store.get(created[0].id)
                assert time.monotonic() - started < 3.0, "BackendUnavailable must come within the timeout"
            finally:
                await asyncio.to_thread(redis_server.start)
            got = await asyncio.gather(*(store.get(s.id) for s in created))
            assert [g.state for g in got if g] == [{"n": i} for i in range(20)], "stale pooled connections leaked"

    run(body)


class HoldingProxy:
    """A TCP proxy to Redis that can hold Redis's replies, so a reply is provably in flight."""

    def __init__(self, host: str, port: int) -> None:
        self.target = (host, port)
        self.hold = False
        self.held = asyncio.Event()
        self.released = asyncio.Event()
        self.server: asyncio.Server | None = None

    async def __aenter__(self) -> HoldingProxy:
        self.server = await asyncio.start_server(self._serve, "127.0.0.1", 0)
        return self

    async def __aexit__(self, *exc: object) -> None:
        assert self.server is not None
        self.server.close()

    @property
    def url(self) -> str:
        assert self.server is not None
        return f"redis://127.0.0.1:{self.server.sockets[0].getsockname()[1]}/0"

    async def _serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        up_reader, up_writer = await asyncio.open_connection(*self.target)

        async def pipe(src: asyncio.StreamReader, dst: asyncio.StreamWriter, gated: bool) -> None:
            with contextlib.suppress(ConnectionError, OSError):
                while data := await src.read(65536):
                    if gated and self.hold:
                        self.held.set()
                        await self.released.wait()
                    dst.write(data)
                    await dst.drain()
            dst.close()

        await asyncio.gather(pipe(reader, up_writer, False), pipe(up_reader, writer, True))


@pytest.mark.parametrize("how", ["task.cancel()", "the store's timeout"])
def test_a_cancelled_call_never_leaves_its_reply_to_the_next_one(redis_server: Server, how: str) -> None:
    host, port = redis_server.url.split("//", 1)[1].split("/", 1)[0].rsplit(":", 1)

    async def body() -> None:
        async with HoldingProxy(host, int(port)) as proxy:
            pool = BlockingConnectionPool.from_url(proxy.url, max_connections=1, timeout=5, protocol=2,
                                                   retry=Retry(NoBackoff(), 0))
            client = Redis.from_pool(pool)  # one connection: the next call reuses it
            store = RedisStore(client, namespace=f"t{uuid.uuid4().hex[:12]}", timeout=1.0)
            try:
                first = await store.create({"who": "first"})
                second = await store.create({"who": "second", "log": []})
                await store.append(second.id, "log", [])  # the script is loaded: no NOSCRIPT detour below
                proxy.hold = True
                call = asyncio.create_task(store.append(second.id, "log", ["cancelled"]))
                await proxy.held.wait()  # Redis ran the append; its reply waits in the proxy
                if how == "task.cancel()":
                    call.cancel()
                    with pytest.raises(asyncio.CancelledError):
                        await call
                else:
                    with pytest.raises(BackendUnavailable):
                        await call
                proxy.hold = False
                proxy.released.set()
                try:
                    got: object = await store.get(first.id)
                except Exception as exc:
                    got = exc
                assert isinstance(got, Session) and got.state == {"who": "first"}, (
                    f"after a cancelled call the next get returned {got!r}: the connection still carried the "
                    "cancelled call's reply (FL-4: a poisoned connection)"
                )
                after = await store.get(second.id)
                assert after is not None and after.state["log"] in ([], ["cancelled"]), after
            finally:
                await client.aclose()

    run(body)


async def _cancel_after(steps: int, make: Callable[[], Awaitable[Any]]) -> str:
    task = asyncio.ensure_future(make())
    for _ in range(steps):
        await asyncio.sleep(0)
    if not task.cancel():
        return "finished first"
    try:
        await task
    except asyncio.CancelledError:
        return "cancelled"
    return "returned normally"


def test_a_cancel_is_never_swallowed_even_on_a_client_with_socket_timeouts(redis_server: Server) -> None:
    """redis-py sends through asyncio.wait_for when socket_timeout is set; on 3.11 that can eat a cancel."""

    async def body() -> None:
        client = Redis.from_url(redis_server.url, socket_timeout=5, protocol=2)  # redis-py's default timeout
        store = RedisStore(client, namespace=f"t{uuid.uuid4().hex[:12]}")
        try:
            created = await store.create({"n": 0})
            ends = {steps: await _cancel_after(steps, functools.partial(store.apply, created.id, {"n": steps}))
                    for steps in range(8)}
            assert "cancelled" in ends.values() and "returned normally" not in ends.values(), (
                f"cancelled after k loop steps, apply ended as {ends}: a cancelled call must raise CancelledError "
                "(FL-4), even when the driver swallowed the cancellation"
            )
        finally:
            await client.aclose()

    run(body)


@pytest.mark.parametrize("kind", ["redis", pytest.param("redis-cluster", marks=pytest.mark.cluster)])
def test_drop_namespace_removes_every_key_of_the_namespace_and_nothing_else(
        kind: str, request: pytest.FixtureRequest) -> None:
    server: Server = request.getfixturevalue("redis_server" if kind == "redis" else "cluster_server")

    async def body() -> None:
        async with opened(server.url) as store, opened(server.url) as neighbour:
            for s in (store, neighbour):
                await s.create({"log": [1]}, id="same-id", owner="o", ttl=60)
            await drop_namespace(store, store.namespace)
            assert await store.get("same-id") is None and await store.count() == 0
            assert await neighbour.get("same-id") is not None, "drop_namespace touched another namespace"

    run(body)


def test_durability_follows_the_server_configuration(redis_server: Server) -> None:
    async def body() -> None:
        async with opened(redis_server.url) as store:
            config = {k: await store.client.config_get(k) for k in ("appendonly", "save")}
            persists = config["appendonly"]["appendonly"] == "yes" or bool(str(config["save"]["save"]))
            assert ("durable" in store.capabilities) == persists, (config, store.capabilities)
            await store.client.config_set("appendonly", "no")
            await store.client.config_set("save", "")
            try:
                async with opened(redis_server.url) as plain:
                    assert "durable" not in plain.capabilities, "a server that does not persist is not durable"
                async with opened(redis_server.url, durable=True) as forced:
                    assert "durable" in forced.capabilities, "an explicit durable=True is an override"
            finally:
                await store.client.config_set("appendonly", str(config["appendonly"]["appendonly"]))
                await store.client.config_set("save", str(config["save"]["save"]))

    run(body)


def test_a_server_that_may_evict_keys_is_refused_naming_the_settings(redis_server: Server) -> None:
    """An evicting server would drop sessions before their period ends and index entries, silently: probe()
    refuses it, and the target says why instead of failing clause after clause at the memory limit."""
    from sessionspec.conformance.targets import TargetError, TargetOptions, open_store, resolve_target

    async def body() -> None:
        async with opened(redis_server.url) as store, memory_settings(store) as configure:
            await configure("1gb", "allkeys-lru")
            with pytest.raises(ValueError, match="maxmemory-policy allkeys-lru with maxmemory 1073741824"):
                async with opened(redis_server.url):
                    pass
            target = resolve_target("redis", TargetOptions(redis_url=redis_server.url))
            try:
                with pytest.raises(TargetError, match="noeviction"):
                    async with open_store(target, f"t{uuid.uuid4().hex[:12]}"):
                        pass
            finally:
                target.close()
            await configure("1gb", "noeviction")  # a limit without eviction: nothing is deleted to make room
            async with opened(redis_server.url) as limited:
                assert await limited.create({"n": 1}) is not None
            await configure("0", "volatile-lru")  # no limit: nothing is ever evicted
            async with opened(redis_server.url) as unlimited:
                assert await unlimited.create({"n": 1}) is not None

    run(body)


def test_at_the_memory_limit_every_growing_write_is_refused_before_it_changes_anything(
        redis_server: Server) -> None:
    """Under maxmemory + noeviction, Redis refuses a script only at its first write that may grow memory,
    and create, save and a list-replacing apply began with a DEL: they wrote on past the limit (measured:
    100 creates of 10 KB all succeeded 200 KB from it) until the kernel killed the server."""
    from sessionspec.conformance.contract import DELETE

    async def body() -> None:
        async with opened(redis_server.url) as store:
            kept = await store.create({"n": 1, "log": [1], "gone": 0})
            kept_info = await store.append(kept.id, "log", [2])  # a tail: save and apply begin by deleting it
            blob = "x" * 10_000
            created = 0
            async with memory_settings(store) as configure:
                limit = int((await store.client.info("memory"))["used_memory"]) + 200_000
                await configure(str(limit), "noeviction")
                with pytest.raises(BackendUnavailable, match="maxmemory"):
                    for _ in range(200):  # bounded: at most 2 MB past the limit when the check is missing
                        await store.create({"blob": blob})
                        created += 1
                past = int((await store.client.info("memory"))["used_memory"]) - limit
                assert past < 64_000, f"{created} creates ran the server {past} bytes past its maxmemory"
                # far past the limit from here on: where memory sits just after a refusal is not exact
                await configure("1", "noeviction")
                refused: dict[str, Callable[[], Awaitable[Any]]] = {
                    "save": lambda: store.save(kept.id, {"blob": blob}),
                    "apply replacing a list": lambda: store.apply(kept.id, {"log": [blob]}),
                    "apply deleting a key": lambda: store.apply(kept.id, {"gone": DELETE, "blob": blob}),
                    "append": lambda: store.append(kept.id, "log", [blob]),
                    "touch": lambda: store.touch(kept.id, ttl=60),
                }
                for name, write in refused.items():
                    with pytest.raises(BackendUnavailable, match="maxmemory"):
                        await write()
                    got = await store.get(kept.id)
                    assert got is not None and got.version == kept_info.version, f"a refused {name} changed it"
                    assert got.state == {"n": 1, "log": [1, 2], "gone": 0}, f"a refused {name} changed the state"
                assert await store.delete(kept.id), "delete frees memory: it must run at the limit"
            assert await store.count() == created, "the refused create must leave nothing behind"

    run(body)


# ---------------------------------------------------------------- the target's errors
def test_a_missing_driver_is_a_target_error_naming_the_extra(monkeypatch: pytest.MonkeyPatch) -> None:
    from sessionspec.conformance.targets import TargetError, TargetOptions, resolve_target

    monkeypatch.setitem(sys.modules, "redis", None)  # `import redis` now raises ImportError
    with pytest.raises(TargetError, match=re.escape("pip install -e '.[redis]'")):
        resolve_target("redis://127.0.0.1:1/0", TargetOptions())


def test_a_server_that_cannot_be_provisioned_is_a_target_error_saying_how_to_fix(
        monkeypatch: pytest.MonkeyPatch) -> None:
    from sessionspec.conformance import provision as provisioning
    from sessionspec.conformance.targets import TargetError, TargetOptions, resolve_target

    def unavailable(kind: str, **kwargs: Any) -> Server:
        raise ProvisionError(f"could not provision a {kind} server; tried:", [("local", "no redis-server on PATH")])

    monkeypatch.setattr(provisioning, "provision", unavailable)
    for spec, hint in (("redis", "--redis-url"), ("redis-cluster", "--redis-cluster-url")):
        with pytest.raises(TargetError) as caught:
            resolve_target(spec, TargetOptions(require_backends=True))
        message = str(caught.value)
        assert "no redis-server on PATH" in message and hint in message and "redis-server" in message, message
