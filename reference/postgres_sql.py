"""What PostgresStore sends: the schema, one statement per call, and the JSON representation.

The schema and the write functions live in ``postgres_schema.sql`` (shipped as package data);
see ``postgres.py`` for the design. Every statement here is one round trip, prepared once per
connection by asyncpg's statement cache. ``encode_json``/``decode_json`` map state to and from
the text jsonb stores losslessly (NUL-bearing strings escaped, floats kept floats).
"""

from __future__ import annotations

import hashlib
import re
from decimal import Decimal
from importlib import resources
from typing import Any, Final

import asyncpg

from ._json import dumps, loads

__all__ = [
    "APPEND", "APPEND_FAST", "APPLY", "APPLY_FAST", "APPLY_FAST_SET", "COUNT_ALL", "COUNT_OWNER", "CREATE", "DELETE",
    "EXPIRE_DUE", "GET", "LIST_ALL", "LIST_OWNER", "PURGE", "SAVE", "SAVE_FAST", "SCHEMA_SQL", "SCHEMA_VERSION",
    "TOUCH", "decode_json", "encode_json", "encode_state", "escape", "install_schema",
]

SCHEMA_SQL: Final = resources.files(__package__).joinpath("postgres_schema.sql").read_text("utf-8")
SCHEMA_VERSION: Final = hashlib.sha256(SCHEMA_SQL.encode()).hexdigest()[:16]
SCHEMA_LOCK: Final = 0x5E55_1045_BEC0  # pg_advisory_xact_lock key for installing the schema

LIVE = "(s.expires_at IS NULL OR s.expires_at > {now})"
INFO = "s.owner, s.version, s.created_at, s.updated_at, s.expires_at, s.ttl"
# A row comes back live or expired (live = false, no state): an expired one is not "gone" until
# EXPIRE_DUE has deleted it, since a write that found it live a moment before may still commit.
GET = f"""
SELECT l.live, {INFO}, CASE WHEN l.live THEN s.state END AS state,
       CASE WHEN l.live AND cardinality(s.item_keys) > 0 THEN
       (SELECT jsonb_agg(jsonb_build_array(i.key, i.items) ORDER BY i.key, i.version)
          FROM sessionspec.items i WHERE i.namespace = s.namespace AND i.id = s.id) END AS tails
  FROM sessionspec.sessions s CROSS JOIN LATERAL (SELECT {LIVE.format(now="clock_timestamp()")} AS live) l
 WHERE s.namespace = $1 AND s.id = $2"""
# No row back: not found or expired; EXPIRE_DUE tells them apart (true: gone) and makes the expiry stick.
TOUCH = f"""
WITH c AS (SELECT clock_timestamp() AS t)
UPDATE sessionspec.sessions s
   SET updated_at = c.t, ttl = CASE WHEN $3 THEN s.ttl ELSE $4 END,
       expires_at = c.t + sessionspec.period(CASE WHEN $3 THEN s.ttl ELSE $4::float8 END)
  FROM c WHERE s.namespace = $1 AND s.id = $2 AND {LIVE.format(now="c.t")}
RETURNING {INFO}"""
EXPIRE_DUE = "SELECT sessionspec.expire_due($1, $2)"
NOW = "(SELECT clock_timestamp())"  # an InitPlan: read once, and usable as an index bound
LIST = f"""
SELECT s.id, {INFO} FROM sessionspec.sessions s
 WHERE s.namespace = $1 AND s.id > $2 AND {LIVE.format(now=NOW)}{{owner}}
 ORDER BY s.id LIMIT $3"""
# An owner's list also bounds the slot (sessions_owner_id_slot_idx): statement_timestamp() is at
# or before the clock_timestamp() that LIVE reads, so this drops only sessions LIVE would drop,
# and drops them in the index, without visiting their rows.
_OWNER = (" AND s.owner = $4 AND coalesce(s.expiry_slot, 9223372036854775807)"
          " >= sessionspec.expiry_slot(statement_timestamp())")
LIST_ALL, LIST_OWNER = LIST.format(owner=""), LIST.format(owner=_OWNER)
# Counts read the (…, expiry_slot) indexes: permanent sessions and the slots after the current
# one index-only; only the current slot's rows are checked against expires_at in the heap, so
# the work is O(live), never O(expired). One instant for all three: statement_timestamp().
_SLOT_NOW = "sessionspec.expiry_slot(statement_timestamp())"
_COUNT = f"""
SELECT (SELECT count(*) FROM sessionspec.sessions s WHERE {{where}} AND s.expiry_slot IS NULL)
     + (SELECT count(*) FROM sessionspec.sessions s WHERE {{where}} AND s.expiry_slot > {_SLOT_NOW})
     + (SELECT count(*) FROM sessionspec.sessions s WHERE {{where}} AND s.expiry_slot = {_SLOT_NOW}
                                                     AND s.expires_at > statement_timestamp())"""
COUNT_ALL = _COUNT.format(where="s.namespace = $1")
COUNT_OWNER = _COUNT.format(where="s.namespace = $1 AND s.owner = $2")
CREATE = "SELECT * FROM sessionspec.create_session($1, $2, $3, $4, $5)"
SAVE = "SELECT * FROM sessionspec.save_session($1, $2, $3, $4, $5, $6)"
# save's fast path, sent as a plain statement like apply's (below): a live session with no
# appended items, at the expected version, replaced in one UPDATE; no row back (not found,
# expired, version conflict, appended items to drop) means: ask save_session, which tells them
# apart. Same parameters as SAVE: (namespace, id, state, expected, keep ttl, ttl).
SAVE_FAST = f"""
UPDATE sessionspec.sessions s
   SET state = $3, version = nextval('sessionspec.versions'), updated_at = statement_timestamp(),
       ttl = CASE WHEN $5 THEN s.ttl ELSE $6 END,
       expires_at = statement_timestamp() + sessionspec.period(CASE WHEN $5 THEN s.ttl ELSE $6::float8 END)
 WHERE s.namespace = $1 AND s.id = $2 AND {LIVE.format(now="statement_timestamp()")}
   AND ($4::bigint IS NULL OR s.version = $4) AND cardinality(s.item_keys) = 0
RETURNING {INFO}"""
APPLY = "SELECT * FROM sessionspec.apply_changes($1, $2, $3, $4, $5, $6)"
# apply's fast path, sent as a plain statement (no PL/pgSQL call: ~15% less server CPU). It
# matches only a session with no appended items (item_keys empty), so it never reads
# sessionspec.items, whose rows this statement's snapshot could show stale. Waiting for the
# row lock re-checks the WHERE on the newest row version (EvalPlanQual): an append that
# committed meanwhile has set item_keys, so the row no longer matches. No row back (not found,
# expired, version conflict, appended items) means: ask apply_changes, which tells them apart.
# Its clock is statement_timestamp(): when this statement arrived, one value for the whole
# statement, as the functions read clock_timestamp() once as they start (a CTE reading
# clock_timestamp() costs a join); unlike now() it does not freeze inside a transaction.
_APPLY_FAST = f"""
UPDATE sessionspec.sessions s
   SET state = {{state}} || {{changes}}::jsonb, version = nextval('sessionspec.versions'),
       updated_at = statement_timestamp(), expires_at = statement_timestamp() + sessionspec.period(s.ttl)
 WHERE s.namespace = $1 AND s.id = $2 AND {LIVE.format(now="statement_timestamp()")}
   AND ({{expected}}::bigint IS NULL OR s.version = {{expected}}) AND cardinality(s.item_keys) = 0
RETURNING {INFO}, s.state, NULL::jsonb AS tails"""
# Deleting no keys still costs `state - '{}'` a copy of the document (measured: ~10% of the
# statement's server time), so an apply without deletions sends the variant without it, and
# without the text[] parameter: (namespace, id, changes, expected) instead of
# (namespace, id, deleted, changes, expected).
APPLY_FAST = _APPLY_FAST.format(state="(s.state - $3::text[])", changes="$4", expected="$5")
APPLY_FAST_SET = _APPLY_FAST.format(state="s.state", changes="$3", expected="$4")
APPEND = "SELECT * FROM sessionspec.append_items($1, $2, $3, $4, $5)"
# append's fast path, one plain statement: a live session whose key already continues in
# sessionspec.items (every append after a key's first) gets a new version and expiry and one
# items row, in one statement (a data-modifying CTE: the row is locked by the UPDATE before the
# INSERT, as in append_items). It never reads the state. No row back (not found, expired,
# version conflict, the key's first append) means: ask append_items. Same parameters as APPEND:
# (namespace, id, key, items, expected). An empty items list inserts no row.
APPEND_FAST = f"""
WITH s AS (
    UPDATE sessionspec.sessions s
       SET version = nextval('sessionspec.versions'), updated_at = statement_timestamp(),
           expires_at = statement_timestamp() + sessionspec.period(s.ttl)
     WHERE s.namespace = $1 AND s.id = $2 AND {LIVE.format(now="statement_timestamp()")}
       AND ($5::bigint IS NULL OR s.version = $5) AND $3 = ANY(s.item_keys)
    RETURNING {INFO}
), added AS (
    INSERT INTO sessionspec.items (namespace, id, key, version, items)
    SELECT $1, $2, $3, s.version, $4::jsonb FROM s WHERE jsonb_array_length($4::jsonb) > 0
)
SELECT * FROM s"""
DELETE = "SELECT sessionspec.delete_session($1, $2)"
PURGE = "SELECT sessionspec.purge_batch($1, $2)"


async def install_schema(conn: asyncpg.Connection) -> None:
    """Create or upgrade the schema unless this release's is already there (race-safe)."""
    query = "SELECT value FROM sessionspec.meta WHERE name = 'schema'"
    if await conn.fetchval("SELECT to_regclass('sessionspec.meta') IS NOT NULL"):
        if await conn.fetchval(query) == SCHEMA_VERSION:
            return
    encoding = await conn.fetchval("SHOW server_encoding")
    if encoding != "UTF8":
        raise RuntimeError(f"PostgresStore needs a UTF8 database; this one is {encoding}")
    async with conn.transaction():
        await conn.execute("SELECT pg_advisory_xact_lock($1)", SCHEMA_LOCK)
        if await conn.fetchval("SELECT to_regclass('sessionspec.meta') IS NOT NULL"):
            if await conn.fetchval(query) == SCHEMA_VERSION:
                return
        await conn.execute(SCHEMA_SQL)
        await conn.execute("INSERT INTO sessionspec.meta VALUES ('schema', $1) "
                           "ON CONFLICT (name) DO UPDATE SET value = excluded.value", SCHEMA_VERSION)


# ---------------------------------------------------------------- the JSON representation
_MARK: Final = "\ue000"
_MARK_UTF8: Final = _MARK.encode("utf-8")
_EXPONENT_FLOAT: Final = re.compile(r'"[^"\\]*(?:\\.[^"\\]*)*"|(-?\d+(?:\.\d+)?e\+\d+)')


def escape(s: str) -> str:
    if "\x00" in s or s.startswith(_MARK):
        return _MARK + s.replace(_MARK, _MARK + "\ue001").replace("\x00", _MARK + "\ue002")
    return s


def _unescape(s: str) -> str:
    if s.startswith(_MARK):
        return s[1:].replace(_MARK + "\ue002", "\x00").replace(_MARK + "\ue001", _MARK)
    return s


def _map_strings(value: Any, f: Any) -> Any:
    if isinstance(value, str):
        return f(value)
    if isinstance(value, dict):
        return {f(k): _map_strings(v, f) for k, v in value.items()}
    if isinstance(value, list):
        return [_map_strings(v, f) for v in value]
    return value


def _plain_float(match: re.Match[str]) -> str:
    number = match.group(1)
    if number is None:  # a string literal: leave it alone
        return match.group(0)
    text = format(Decimal(number), "f")
    return text if "." in text else text + ".0"


def encode_json(value: Any) -> str:
    """JSON text for a validated value, in the representation jsonb stores losslessly."""
    return encode_state(value, None)


def encode_state(value: Any, text: bytes | None) -> str:
    """``encode_json(value)``, from the value's JSON text (``_json.dumps``) when the caller has it.

    ``_json.dumps`` (orjson) writes the same values as ``validation.dump_json`` at a tenth of its
    cost; only NUL-bearing strings (and strings that start with the escape mark) need the slow path.
    """
    if text is None:
        text = dumps(value)
    if b"\\u0000" in text or _MARK_UTF8 in text:
        text = dumps(_map_strings(value, escape))
    out = text.decode("utf-8")
    return _EXPONENT_FLOAT.sub(_plain_float, out) if "e+" in out else out


def decode_json(raw: Any) -> Any:
    """The value back from jsonb text (asyncpg's default); the inverse of encode_json."""
    if not isinstance(raw, str):  # a pool with its own jsonb codec
        return _map_strings(raw, _unescape)
    value = loads(raw)
    return _map_strings(value, _unescape) if _MARK in raw else value
