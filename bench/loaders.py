"""Bulk loaders that write sessions directly in each store's own layout (far faster than create()).

Writing 1,000,000 sessions through ``create`` would take many minutes and could not make
expired ones (a ttl must be > 0, and expiry is measured on the server's clock). So each
loader writes exactly what the store's create would have left behind, for sessions last
written at a chosen time: scale.py then checks through the store that it sees precisely
the live ones (get, count and list agree with what was loaded).

Redis (layout in reference/redis.py and redis_scripts/common.lua): the session HASH (meta
fields, and per state key a field "k:" + the key's JSON text holding the value's JSON text)
with PEXPIREAT, the id/owner/expiry ZSETs and the id->owner HASH. An expired session is its
index entries only: Redis itself already dropped the hash at its expiry, and nothing has
purged the indexes yet. Postgres: rows COPied into ``sessionspec.sessions`` (versions from
the store's sequence); expired rows stay until purge_expired, as they would.
State: payload.flat_state (20 keys, ~2 KB, no top-level lists) in 64 variants, or, with
``state=``, one given state for every session (bench/manager.py's sweep loads 1M sessions of
``{"k": 1}``: it measures index work, and 2 GB of payload would only slow the load).
"""

from __future__ import annotations

import math
import random
import secrets
import time
from collections import defaultdict
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from drivers import dumps
from payload import flat_state

__all__ = ["TTL", "Planned", "load_postgres", "load_redis", "plan"]

TTL = 3600.0
VARIANTS = 64


@dataclass(frozen=True, slots=True)
class Planned:
    id: str
    owner: str
    live: bool
    updated_us: int
    """When the session was last written (µs since the epoch); expires TTL later."""


def plan(owners: Sequence[str], count: int, rng: random.Random) -> list[Planned]:
    """``count`` sessions spread round-robin over ``owners``, every other one expired.

    Live ones were written up to 30 min ago (expire in 30-60 min); expired ones expired
    between 1 s and 24 h ago.
    """
    now = time.time_ns() // 1000
    ttl_us = int(TTL * 1e6)
    out = []
    for i in range(count):
        live = (i // len(owners)) % 2 == 0  # alternates within each owner too
        ago = rng.randrange(0, 1800 * 10**6) if live else ttl_us + rng.randrange(10**6, 86_400 * 10**6)
        out.append(Planned(secrets.token_urlsafe(24), owners[i % len(owners)], live, now - ago))
    return out


_FIELDS = [[x for k, v in flat_state(i).items() for x in ("k:" + dumps(k), dumps(v))] for i in range(VARIANTS)]
_TEXTS = [dumps(flat_state(i)) for i in range(VARIANTS)]


def _redis_fields(state: Mapping[str, Any]) -> list[str]:
    return [x for k, v in state.items() for x in ("k:" + dumps(k), dumps(v))]


async def load_redis(client: Any, namespace: str, sessions: Sequence[Planned], first_version: int,
                     chunk: int = 2000, *, state: Mapping[str, Any] | None = None) -> int:
    """Write ``sessions`` into a RedisStore namespace; returns the next free version."""
    variants = _FIELDS if state is None else [_redis_fields(state)]
    p = "{" + namespace + "}:"
    ttl_us = int(TTL * 1e6)
    version = first_version
    for start in range(0, len(sessions), chunk):
        batch = sessions[start:start + chunk]
        ids: list[Any] = []
        exp: list[Any] = []
        own: list[Any] = []
        by_owner: dict[str, list[tuple[str, int]]] = defaultdict(list)
        async with client.pipeline(transaction=False) as pipe:
            for s in batch:
                e = s.updated_us + ttl_us
                if s.live:
                    h = p + "s:" + s.id
                    pipe.execute_command("HSET", h, "v", version, "c", s.updated_us, "u", s.updated_us, "e", e,
                                         "t", repr(TTL), "tus", ttl_us, "o", s.owner,
                                         *variants[version % len(variants)])
                    pipe.execute_command("PEXPIREAT", h, math.ceil(e / 1000))
                version += 1
                ids += (0, s.id)
                exp += (e, s.id)
                own += (s.id, s.owner)
                by_owner[s.owner].append((s.id, e))
            pipe.execute_command("ZADD", p + "ids", *ids)
            pipe.execute_command("ZADD", p + "exp", *exp)
            pipe.execute_command("HSET", p + "own", *own)
            for owner, members in by_owner.items():
                pipe.execute_command("ZADD", p + "oi:" + owner, *(x for sid, _ in members for x in (0, sid)))
                pipe.execute_command("ZADD", p + "oe:" + owner, *(x for sid, e in members for x in (e, sid)))
            pipe.execute_command("SET", p + "ver", version)
            await pipe.execute()
    return version


async def load_postgres(pool: Any, namespace: str, sessions: Sequence[Planned], chunk: int = 20_000, *,
                        state: Mapping[str, Any] | None = None) -> None:
    """COPY ``sessions`` into sessionspec.sessions under ``namespace``, versions from the store's sequence."""
    texts = _TEXTS if state is None else [dumps(state)]
    ttl_us = int(TTL * 1e6)
    for start in range(0, len(sessions), chunk):
        batch = sessions[start:start + chunk]
        last = await pool.fetchval("SELECT setval('sessionspec.versions', nextval('sessionspec.versions') + $1)",
                                   len(batch))
        first = last - len(batch)
        records = []
        for i, s in enumerate(batch):
            at = datetime.fromtimestamp(s.updated_us / 1e6, UTC)
            until = datetime.fromtimestamp((s.updated_us + ttl_us) / 1e6, UTC)
            records.append((namespace, s.id, s.owner, first + i, texts[(first + i) % len(texts)], at, at, TTL, until))
        await pool.copy_records_to_table(
            "sessions", schema_name="sessionspec", records=records, timeout=300,
            columns=["namespace", "id", "owner", "version", "state", "created_at", "updated_at", "ttl", "expires_at"])
        # (the store's pool bounds statements at 5 s; a COPY of 20,000 rows on a busy machine can take longer)


_LOAD_LUA = """
-- ARGV: prefix, ttl text, ttl_us, next version, state fields joined by "\\n", then per session
-- 5 args: id, owner, updated_us, expires_us, live ("1"/"0"). Writes what load_redis writes;
-- the index commands go out once per 500 sessions (a redis.call per member cost ~2x the load).
local p, ttl, tus, version = ARGV[1], ARGV[2], ARGV[3], tonumber(ARGV[4])
local fields = {}
if ARGV[5] ~= '' then
  for f in string.gmatch(ARGV[5], '[^\\n]+') do fields[#fields + 1] = f end
end
local ids, exp, own, oi, oe = {}, {}, {}, {}, {}
local function flush()
  if #ids > 0 then
    redis.call('ZADD', p .. 'ids', unpack(ids))
    redis.call('ZADD', p .. 'exp', unpack(exp))
    redis.call('HSET', p .. 'own', unpack(own))
  end
  for owner, members in pairs(oi) do
    redis.call('ZADD', p .. 'oi:' .. owner, unpack(members))
    redis.call('ZADD', p .. 'oe:' .. owner, unpack(oe[owner]))
  end
  ids, exp, own, oi, oe = {}, {}, {}, {}, {}
end
local n = 0
for a = 6, #ARGV, 5 do
  local id, owner, u, e = ARGV[a], ARGV[a + 1], ARGV[a + 2], ARGV[a + 3]
  if ARGV[a + 4] == '1' then
    local h = p .. 's:' .. id
    redis.call('HSET', h, 'v', version, 'c', u, 'u', u, 'e', e, 't', ttl, 'tus', tus, 'o', owner, unpack(fields))
    redis.call('PEXPIREAT', h, math.ceil(tonumber(e) / 1000))
  end
  version = version + 1
  ids[#ids + 1] = 0; ids[#ids + 1] = id
  exp[#exp + 1] = e; exp[#exp + 1] = id
  own[#own + 1] = id; own[#own + 1] = owner
  if not oi[owner] then oi[owner], oe[owner] = {}, {} end
  local m, x = oi[owner], oe[owner]
  m[#m + 1] = 0; m[#m + 1] = id
  x[#x + 1] = e; x[#x + 1] = id
  n = n + 1
  if n % 500 == 0 then flush() end
end
flush()
redis.call('SET', p .. 'ver', version)
return version
"""


async def load_redis_lua(client: Any, namespace: str, sessions: Sequence[Planned], first_version: int,
                         chunk: int = 10_000, *, state: Mapping[str, Any]) -> int:
    """load_redis's exact layout for one given state, written by a server-side script per chunk.

    The client then packs 5 short arguments per session instead of a ~20-argument HSET and
    four index commands: bench/manager.py loads 1,000,000 sessions this way in seconds,
    where pipelining took ~10 minutes on a busy 2-core machine. One node only (the script
    names its keys at run time, which Redis Cluster does not allow).
    """
    fields = "\n".join(_redis_fields(state))
    if any("\n" in f for f in _redis_fields(state)):
        raise ValueError("state fields must not contain a raw newline (the script splits on it)")
    ttl_us = int(TTL * 1e6)
    script = client.register_script(_LOAD_LUA)
    version = first_version
    for start in range(0, len(sessions), chunk):
        args: list[Any] = ["{" + namespace + "}:", repr(TTL), ttl_us, version, fields]
        for s in sessions[start:start + chunk]:
            args += (s.id, s.owner, s.updated_us, s.updated_us + ttl_us, "1" if s.live else "0")
        version = int(await script(keys=[], args=args))
    return version
