"""RedisStore: the reference store on Redis 6.2+ or Redis Cluster, one Lua script per operation.

Every operation is ONE ``EVALSHA`` (scripts in ``redis_scripts/``, loaded once per server,
reloaded on NOSCRIPT), so each is atomic server-side and costs one round trip. Time is the
server's (``TIME`` inside the script, microseconds); expiry is set with ``PEXPIREAT`` in the
same script as the data, and scripts also treat a session as dead the moment its expiry passes.

Key layout for namespace ``ns`` (prefix ``{ns}:``; ``<k>`` is a state key's JSON text)::

    {ns}:s:<id>          HASH   v version, c created, u updated, e expires (us), t ttl, tus ttl (us),
                                o owner; "k:<k>" per top-level state key: the value's JSON text as
                                the last whole write (create, save, apply) gave it; "t:<k>" = 1 when
                                items were appended to that list since (its tail, below)
    {ns}:l:<id>\\0<k>     LIST   the tail: one JSON text per item appended: append is RPUSH, O(items)
    {ns}:ls:<id>         SET    the <k> whose tail exists, to expire and delete them with the session
    {ns}:ids, {ns}:oi:<owner>   ZSET (scores 0) ids in byte order: list pages with ZRANGEBYLEX
    {ns}:exp, {ns}:oe:<owner>   ZSET (score = expiry, +inf = never): count = ZCARD - ZCOUNT(-inf, now)
    {ns}:own             HASH   id -> owner, so cleanup reaches a dead session's owner indexes
    {ns}:ver             STRING the namespace's version counter (INCR): versions never repeat (VER-2)
    {ns}:oom             never created: each growing write's first command, SETRANGE of nothing,
                                so Redis checks its memory limit before anything changes

A whole-state write (create, save) is one HSET of the state's fields and the meta on a hash
that is the session's only key: a list is stored whole, as its JSON text, like any value, and
only ``append`` splits one into head and tail (the first append after a whole write reads the
head once, to check it is a list; every later one only pushes). State travels as ONE packed
script argument (JSON texts joined by newlines, which JSON text never holds raw): packing ~40
arguments cost redis-py more client CPU than the rest of a save, and writing lists as LISTs
more server CPU than the HSET (before: 0.28x a raw SET of the state's text).

Ids and owners are literal key suffixes after fixed prefixes, and ids never hold control
characters (ID-2), so NUL separates id and key unambiguously. State is stored as JSON text
(``_json.dumps``: orjson, the same values as ``validation.dump_json``); Lua only joins those
fragments into one JSON text for reads and never decodes them (cjson would lose int64
precision and confuse ``[]`` with ``{}``); Python parses it (``_json.loads``). Expired sessions vanish natively; their
index entries are filtered on read and forgotten by ``purge_expired``, two at a time by every
``create``, and by ``list`` when it meets them (a per-owner list only from that owner's indexes:
a ZREM in the global ones, which hold every session, cost the first list of an owner at 1M
sessions 1.6x its time at 10k), so nothing grows without bound.

Cluster trade-off: the namespace is the hash tag (the FIRST ``{...}`` of every key, so braces
in ids are harmless), which keeps every script's keys in one slot and every operation atomic.
One namespace therefore lives on one shard: a cluster scales across namespaces (tenants,
apps), not within one. Redis must not evict keys (``maxmemory-policy noeviction``, or no ``maxmemory``):
an evicted session would vanish before its period ends, an evicted index entry would make counts
wrong. ``probe`` refuses a server that may evict (when CONFIG answers). At a ``noeviction``
limit every write that can grow memory fails with BackendUnavailable before it changes
anything; ``delete`` and ``purge_expired``, which free memory, still run.
"""

from __future__ import annotations

import asyncio
import functools
import hashlib
import secrets
from collections.abc import Mapping, Sequence
from datetime import UTC, datetime
from importlib import resources
from types import TracebackType
from typing import Any, Final, NamedTuple

from redis import exceptions as rex
from redis.asyncio import ConnectionPool, Redis
from redis.asyncio.cluster import RedisCluster
from redis.asyncio.retry import Retry  # the asyncio one: redis-py 6+ converts a sync Retry with a warning
from redis.backoff import ExponentialBackoff, NoBackoff

from sessionspec.conformance.contract import (
    DELETE,
    KEEP,
    BackendUnavailable,
    InvalidState,
    Keep,
    Page,
    Session,
    SessionExists,
    SessionInfo,
    SessionNotFound,
    TtlArg,
    VersionConflict,
)
from sessionspec.conformance.validation import (
    json_path,
    validate_cursor,
    validate_expected_version,
    validate_id,
    validate_key,
    validate_limit,
    validate_owner,
    validate_ttl,
)

from ._json import dumps, loads, validated_items, validated_sets, validated_state

__all__ = ["RedisStore"]

BASE_CAPABILITIES: Final = frozenset({"core", "atomic", "listing", "shared"})
SCRIPTS: Final = ("create", "get", "save", "apply", "append", "touch", "delete", "list", "count", "purge")
MAX_US: Final = 2**53 - 1
"""Expiries are exact integers in Lua's doubles up to here (year 2255); longer ttls are capped."""
GRACE_US: Final = 60_000_000
"""create/list forget index entries of sessions dead this long; purge_expired counts the rest."""
PURGE_BATCH: Final = 500
LIST_SCAN_CAP: Final = 2000
"""Index entries one list call reads at most (a page may come back short, with a cursor)."""
_UNAVAILABLE: Final = (rex.ConnectionError, rex.TimeoutError, rex.ClusterError, rex.RedisClusterException,
                       rex.TryAgainError, rex.ReadOnlyError, rex.OutOfMemoryError, TimeoutError, OSError)
_UNAVAILABLE_REPLIES: Final = ("LOADING", "BUSY", "MISCONF", "MASTERDOWN", "CLUSTERDOWN", "TRYAGAIN", "OOM")
_KINDS: Final = {"n": "null", "{": "an object", '"': "a string", "t": "a boolean", "f": "a boolean"}


class Script(NamedTuple):
    sha: str
    text: str


@functools.cache
def _scripts() -> dict[str, Script]:
    """Each operation's script: common.lua followed by the operation's own file."""
    folder = resources.files("sessionspec.reference.redis_scripts")
    common = (folder / "common.lua").read_text("utf-8")
    texts = {name: common + (folder / f"{name}.lua").read_text("utf-8") for name in SCRIPTS}
    return {name: Script(hashlib.sha1(text.encode(), usedforsecurity=False).hexdigest(), text)
            for name, text in texts.items()}


def _text(value: bytes | str) -> str:
    return value.decode() if isinstance(value, bytes) else value


def _lines(reply: bytes | str, maxsplit: int = -1) -> list[Any]:
    """A script's reply: one string of newline-separated lines (see common.lua)."""
    return reply.split(b"\n" if isinstance(reply, bytes) else "\n", maxsplit)  # type: ignore[arg-type]


def _time(us: bytes | str) -> datetime:
    return datetime.fromtimestamp(int(us) / 1_000_000, UTC)


def _info(sid: str, f: Sequence[Any]) -> SessionInfo:
    """SessionInfo from reply lines [status or id, version, created, updated, expires, ttl, owner]."""
    return SessionInfo(sid, _text(f[6]) or None, int(f[1]), _time(f[2]), _time(f[3]),
                       _time(f[4]) if f[4] else None, float(f[5]) if f[5] else None)


def _session(sid: str, f: Sequence[Any], state: dict[str, Any] | None = None) -> Session:
    """Session from reply lines; a full read carries the state as one JSON text in line 7.

    Built directly, not from an _info() (a frozen dataclass costs a setattr per field)."""
    return Session(sid, _text(f[6]) or None, int(f[1]), _time(f[2]), _time(f[3]),
                   _time(f[4]) if f[4] else None, float(f[5]) if f[5] else None,
                   loads(f[7]) if state is None else state)


def _state_arg(state: Mapping[str, Any]) -> bytes:
    """A whole state as ONE script argument: "k:<key json>\\n<value json>\\n..." (see common.lua)."""
    return b"\n".join([text for key, value in state.items() for text in (b"k:" + dumps(key), dumps(value))])


def _changes_arg(changes: Mapping[str, Any]) -> bytes:
    """Changes as ONE script argument: "<key json>\\n<value json>\\n...", an empty value for DELETE."""
    return b"\n".join([text for key, value in changes.items()
                        for text in (dumps(key), b"" if value is DELETE else dumps(value))])


def _ttl_args(ttl: float | Keep | None) -> tuple[str, str, str]:
    """(mode, text, micros): k keeps the period, n makes it permanent, s sets it."""
    if isinstance(ttl, Keep):
        return "k", "", ""
    if ttl is None:
        return "n", "", ""
    micros = MAX_US if ttl >= MAX_US / 1e6 else max(1, round(ttl * 1_000_000))
    return "s", repr(ttl), str(micros)


def _check_namespace(namespace: object) -> str:
    if not isinstance(namespace, str) or not namespace or "{" in namespace or "}" in namespace:
        raise ValueError(f"namespace must be a non-empty str without braces (it is the hash tag), got {namespace!r}")
    return namespace


class RedisStore:
    """A session store on Redis: core, atomic, listing, shared, and durable when the server persists.

    ``durable=None`` detects durability (CONFIG GET appendonly/save) in :meth:`probe`, which
    ``from_url``'s users and ``async with`` run; until then, and when CONFIG is disabled, the
    store does not claim it. ``timeout`` bounds every operation, queueing for a connection
    included; past it the operation raises BackendUnavailable.
    """

    def __init__(self, client: Redis | RedisCluster, *, namespace: str, default_ttl: float | None = None,
                 timeout: float = 5.0, durable: bool | None = None, max_concurrency: int = 64) -> None:
        default = validate_ttl(default_ttl, allow_keep=False)
        assert not isinstance(default, Keep)
        if not timeout > 0:
            raise ValueError(f"timeout must be > 0 seconds, got {timeout!r}")
        self.namespace = _check_namespace(namespace)
        self.prefix = "{" + namespace + "}:"
        self.default_ttl: float | None = default
        self.timeout = float(timeout)
        self.durable = durable
        self.capabilities: frozenset[str] = BASE_CAPABILITIES | ({"durable"} if durable else set())
        self.client = client
        self._owns_client = False
        self._cluster = isinstance(client, RedisCluster)
        # A FIFO gate in front of the client: 1000 tasks queue fairly. (redis-py's blocking pool
        # lets newcomers overtake woken waiters, so some waited past any timeout; the cluster
        # client would open a connection per concurrent command.)
        self._gate = asyncio.Semaphore(max_concurrency)
        self._ready = not self._cluster
        self._scripts = _scripts()

    @classmethod
    def from_url(cls, url: str, *, namespace: str, default_ttl: float | None = None, timeout: float = 5.0,
                 durable: bool | None = None, max_connections: int = 64, **options: Any) -> RedisStore:
        """A store on its own client: ``redis[s]://`` (pooled) or ``redis[s]+cluster://``.

        Calls get no redis-py retry (a retried EVALSHA could apply twice); the cluster client
        keeps its retry, which re-sends after a lost connection, never after a read timeout
        (there is none: ``timeout`` cancels the call, and a cancelled call is not re-sent).
        """
        scheme, sep, rest = url.partition("://")
        # socket_timeout=None: _run bounds every call itself (one timer per call, not three), and
        # redis-py then sends without asyncio.wait_for, which on Python 3.11 can swallow a cancel.
        common: dict[str, Any] = {"socket_connect_timeout": timeout, "socket_timeout": None, "protocol": 2}
        client: Redis | RedisCluster
        if scheme.lower() in ("redis+cluster", "rediss+cluster"):
            retry = Retry(ExponentialBackoff(cap=0.5, base=0.05), 3)
            client = RedisCluster.from_url(scheme.split("+")[0] + sep + rest, retry=retry, **(common | options))
        else:  # the FIFO gate admits max_connections calls at a time, so this pool never runs dry for
            # the store (direct use of store.client shares its connections)
            pool = ConnectionPool.from_url(url, max_connections=max_connections, retry=Retry(NoBackoff(), 0),
                                           **(common | options))
            client = Redis.from_pool(pool)
        store = cls(client, namespace=namespace, default_ttl=default_ttl, timeout=timeout, durable=durable,
                    max_concurrency=max_connections)
        store._owns_client = True
        return store

    # -- plumbing ---------------------------------------------------------------------
    def session_key(self, id: str) -> str:
        """The Redis key of a session's hash (for backdoors and tests)."""
        return self.prefix + "s:" + id

    async def _prepare(self) -> None:
        """Cluster clients initialise once, before concurrent use (concurrent first use breaks)."""
        async with self._gate:
            if not self._ready:
                await self.client.initialize()  # type: ignore[union-attr]
                self._ready = True

    async def _run(self, name: str, key: str, args: Sequence[Any]) -> Any:
        """One EVALSHA, bounded by the timeout; unreachable Redis -> BackendUnavailable (FL-1).

        A cancelled or timed-out call never poisons its connection: redis-py disconnects a
        connection whose reply was not read (tests/test_redis_store.py checks this).
        """
        script = self._scripts[name]
        task = asyncio.current_task()
        cancels = task.cancelling() if task else 0
        try:
            async with asyncio.timeout(self.timeout):
                if not self._ready:
                    await self._prepare()
                async with self._gate:
                    try:
                        reply = await self.client.evalsha(script.sha, 1, key, self.prefix, *args)
                    except rex.NoScriptError:  # the server lost its scripts (restart, SCRIPT FLUSH): not run
                        await self.client.script_load(script.text)
                        reply = await self.client.evalsha(script.sha, 1, key, self.prefix, *args)
        except _UNAVAILABLE as exc:
            raise BackendUnavailable(f"Redis is unavailable ({type(exc).__name__}: {exc}); "
                                     f"the operation was given {self.timeout:g} s") from exc
        except rex.ResponseError as exc:
            if str(exc).startswith(_UNAVAILABLE_REPLIES):
                raise BackendUnavailable(f"Redis cannot serve the request: {exc}") from exc
            raise
        if task and task.cancelling() > cancels:  # a cancel arrived and a driver swallowed it (3.11's
            raise asyncio.CancelledError          # wait_for does when the send finishes at that moment)
        return reply

    @staticmethod
    def _check(reply: bytes | str, sid: str, expected: int | None = None, key: str = "") -> list[Any]:
        """The reply's lines when its status is 0 (ok); else the contract's error."""
        f = _lines(reply, 7)
        status = int(f[0])
        if status == 1:
            raise SessionNotFound(sid)
        if status == 2:
            raise SessionExists(sid)
        if status == 3:  # only writes with an expected_version get this reply
            assert expected is not None
            raise VersionConflict(sid, expected, int(f[1]))
        if status == 4:
            kind = _KINDS.get(_text(f[1]), "a number")
            raise InvalidState(f"append needs a list, but the stored value is {kind}", json_path("$", key))
        return f

    async def _load_scripts(self) -> None:
        """SCRIPT LOAD every script up front (EVALSHA still reloads on NOSCRIPT, e.g. after a flush)."""
        if isinstance(self.client, RedisCluster):
            for script in self._scripts.values():  # SCRIPT LOAD goes to every primary
                await self.client.script_load(script.text)
            return
        async with self.client.pipeline(transaction=False) as pipe:
            for script in self._scripts.values():
                pipe.script_load(script.text)
            await pipe.execute()

    async def _refuse_eviction(self, target: dict[str, Any]) -> None:
        """Refuse a server that may evict keys: it would drop sessions before their period ends (TTL-1)
        and index entries (wrong counts and listings), silently. Redis evicts only with a ``maxmemory``
        limit and a policy other than ``noeviction``; with CONFIG disabled (managed Redis) it cannot be told.
        """
        try:
            config = await self.client.config_get("maxmemory*", **target)
        except rex.ResponseError:
            return
        values = {_text(k or ""): _text(v or "") for k, v in config.items()}
        policy, limit = values.get("maxmemory-policy", "noeviction"), values.get("maxmemory", "0")
        if policy != "noeviction" and limit not in ("", "0"):
            raise ValueError(
                f"RedisStore needs a server that never evicts keys, but this one runs maxmemory-policy {policy} "
                f"with maxmemory {limit}: at the limit it would delete sessions before their period ends and "
                "index entries, and nothing would tell. Set maxmemory-policy noeviction (Redis then deletes nothing "
                "to make room) or maxmemory 0.")

    async def probe(self) -> RedisStore:
        """Check that Redis answers and will not evict keys, load the scripts, and with ``durable=None``
        detect persistence. A server that may evict keys raises ValueError (see ``_refuse_eviction``)."""
        try:
            async with asyncio.timeout(self.timeout):
                target: dict[str, Any] = {}
                if self._cluster:
                    await self._prepare()
                    target = {"target_nodes": self.client.get_node_from_key(self.prefix)}  # type: ignore[union-attr]
                await self._load_scripts()
                await self._refuse_eviction(target)
                if self.durable is None:
                    try:
                        aof = await self.client.config_get("appendonly", **target)
                        save = await self.client.config_get("save", **target)
                    except rex.ResponseError:  # CONFIG renamed or disabled (managed Redis): do not claim
                        self.durable = False
                    else:
                        values = [_text(v or "") for v in [*aof.values(), *save.values()]]
                        self.durable = (values[:1] == ["yes"]) or any(v.strip() for v in values[1:])
        except _UNAVAILABLE as exc:
            raise BackendUnavailable(f"Redis is unavailable ({type(exc).__name__}: {exc})") from exc
        self.capabilities = BASE_CAPABILITIES | ({"durable"} if self.durable else set())
        return self

    # -- the contract -------------------------------------------------------------------
    async def create(self, state: Mapping[str, Any] | None = None, *, id: str | None = None,
                     owner: str | None = None, ttl: TtlArg = KEEP) -> Session:
        sid = secrets.token_urlsafe(24) if id is None else validate_id(id)
        own = validate_owner(owner)
        period = validate_ttl(ttl)
        data, _ = validated_state({} if state is None else state)
        _, text, micros = _ttl_args(self.default_ttl if isinstance(period, Keep) else period)
        args = (sid, own or "", text, micros, GRACE_US, _state_arg(data))
        f = self._check(await self._run("create", self.session_key(sid), args), sid)
        return _session(sid, f, data)

    async def get(self, id: str) -> Session | None:
        sid = validate_id(id)
        f = _lines(await self._run("get", self.session_key(sid), (sid,)), 7)
        return None if len(f) == 1 else _session(sid, f)

    async def save(self, id: str, state: Mapping[str, Any], *, expected_version: int | None = None,
                   ttl: TtlArg = KEEP) -> Session:
        sid = validate_id(id)
        data, _ = validated_state(state)
        expected = validate_expected_version(expected_version)
        args = (sid, "" if expected is None else expected, *_ttl_args(validate_ttl(ttl)), _state_arg(data))
        f = self._check(await self._run("save", self.session_key(sid), args), sid, expected)
        return _session(sid, f, data)

    async def apply(self, id: str, changes: Mapping[str, Any], *,
                    expected_version: int | None = None) -> Session:
        sid = validate_id(id)
        delta, _ = validated_sets(changes)
        expected = validate_expected_version(expected_version)
        args = (sid, "" if expected is None else expected, _changes_arg(delta))
        return _session(sid, self._check(await self._run("apply", self.session_key(sid), args), sid, expected))

    async def append(self, id: str, key: str, items: Sequence[Any], *,
                     expected_version: int | None = None) -> SessionInfo:
        sid = validate_id(id)
        name = validate_key(key)
        values, _ = validated_items(name, items)
        expected = validate_expected_version(expected_version)
        args = [sid, "" if expected is None else expected, dumps(name), *map(dumps, values)]
        return _info(sid, self._check(await self._run("append", self.session_key(sid), args), sid, expected, name))

    async def touch(self, id: str, *, ttl: TtlArg = KEEP) -> SessionInfo:
        sid = validate_id(id)
        args = (sid, *_ttl_args(validate_ttl(ttl)))
        return _info(sid, self._check(await self._run("touch", self.session_key(sid), args), sid))

    async def delete(self, id: str) -> bool:
        sid = validate_id(id)
        return bool(await self._run("delete", self.session_key(sid), (sid,)))

    async def list(self, *, owner: str | None = None, limit: int = 100, cursor: str | None = None) -> Page:
        own = validate_owner(owner)
        size = validate_limit(limit)
        after = validate_cursor(cursor)
        index = self.prefix + ("ids" if own is None else "oi:" + own)
        args = (own or "", after or "", size, GRACE_US, max(LIST_SCAN_CAP, 2 * size))
        f = _lines(await self._run("list", index, args))
        items = [_info(_text(f[k]), f[k:k + 7]) for k in range(1, len(f), 7)]
        return Page(items, _text(f[0]) or None)

    async def count(self, *, owner: str | None = None) -> int:
        own = validate_owner(owner)
        return int(await self._run("count", self.prefix + ("exp" if own is None else "oe:" + own), ()))

    async def purge_expired(self) -> int:
        total = 0
        while True:
            n = int(await self._run("purge", self.prefix + "exp", (PURGE_BATCH,)))
            total += n
            if n < PURGE_BATCH:
                return total

    async def aclose(self) -> None:
        """Close the client if this store created it (``from_url``); a passed-in client stays open."""
        if self._owns_client:
            self._owns_client = False
            await self.client.aclose()

    async def __aenter__(self) -> RedisStore:
        return await self.probe()

    async def __aexit__(self, exc_type: type[BaseException] | None, exc: BaseException | None,
                        tb: TracebackType | None) -> None:
        await self.aclose()

