-- PostgresStore schema and write functions (see reference/postgres.py for the design).
-- Idempotent; installed under pg_advisory_xact_lock by PostgresStore, which records a hash
-- of this file in sessionspec.meta and reinstalls only when the file changes.
-- Every write is one function call: one round trip, one implicit transaction, and each
-- statement inside gets a fresh snapshot (READ COMMITTED), so after a write has locked the
-- session row, reading or deleting its appended items sees every earlier append.

CREATE SCHEMA IF NOT EXISTS sessionspec;

-- One sequence for every version of every session: versions strictly increase per
-- session (drawn after the row lock) and never repeat across incarnations (VER-1, VER-2).
-- CACHE 1 (the default) is required: per-connection caches would hand out values out of order.
CREATE SEQUENCE IF NOT EXISTS sessionspec.versions AS bigint CACHE 1;

CREATE TABLE IF NOT EXISTS sessionspec.sessions (
    namespace  text COLLATE "C" NOT NULL,
    id         text COLLATE "C" NOT NULL,
    owner      text COLLATE "C",
    version    bigint NOT NULL,
    state      jsonb NOT NULL,
    -- top-level keys whose list continues in sessionspec.items (append); for each,
    -- state->key is an array (the head of the list)
    item_keys  text[] COLLATE "C" NOT NULL DEFAULT '{}',
    created_at timestamptz NOT NULL,
    updated_at timestamptz NOT NULL,
    ttl        double precision,
    expires_at timestamptz,
    PRIMARY KEY (namespace, id)
);
-- The minute an expiry falls in (NULL: never expires). The indexes hold this, not expires_at:
-- sliding expiry moves expires_at on every write, and a write that changes an indexed column
-- cannot be a HOT update (a new entry in every index instead of none; measured on apply:
-- 0.57x raw UPDATE with expires_at indexed, 0.68x with the slot). The slot moves once a minute.
-- slot(e) > slot(now) implies e > now (live) and slot(e) < slot(now) implies e < now (dead),
-- so only rows in the current minute's slot need expires_at from the heap.
-- Spelled with timestamptz - timestamptz, an immutable operator (extract(epoch FROM
-- timestamptz) is only stable), so the function sessionspec.expiry_slot (below) inlines into
-- the queries' cached plans. The column spells the same expression out: a function there would
-- be inlined again at every statement's start (measured: ~10% of an apply's server time).
ALTER TABLE sessionspec.sessions ADD COLUMN IF NOT EXISTS expiry_slot bigint  -- = expiry_slot(expires_at)
    GENERATED ALWAYS AS (floor(extract(epoch FROM expires_at - '1970-01-01 00:00:00+00'::timestamptz) / 60)::bigint)
    STORED;
-- room on each page for the new row version of an update: HOT updates (no index writes) when
-- no indexed column changes, i.e. every write but the first in each minute of expiry
ALTER TABLE sessionspec.sessions SET (fillfactor = 90);
-- (earlier releases indexed expires_at itself)
DROP INDEX IF EXISTS sessionspec.sessions_owner_idx;
DROP INDEX IF EXISTS sessionspec.sessions_expiry_idx;
-- list by owner, in id order. The last column (the expiry slot, never NULL: a permanent session
-- sorts last) lets the scan skip sessions dead before the current minute inside the index
-- (an Index Cond on a key column is checked on the index tuple, before any heap visit): without
-- it every dead row of the owner cost a heap visit, and a big owner's cold page at 1M stored
-- sessions read 2.3x the time of the same page at 20k (heap pages not in shared_buffers).
-- expiry_slot is in the other indexes already, so this costs writes no HOT update.
DROP INDEX IF EXISTS sessionspec.sessions_owner_id_idx;  -- (namespace, owner, id): earlier releases
CREATE INDEX IF NOT EXISTS sessions_owner_id_slot_idx
    ON sessionspec.sessions (namespace, owner, id, (coalesce(expiry_slot, 9223372036854775807)))
    WHERE owner IS NOT NULL;
-- count by owner: index-only over the slots after the current one
CREATE INDEX IF NOT EXISTS sessions_owner_slot_idx
    ON sessionspec.sessions (namespace, owner, expiry_slot) WHERE owner IS NOT NULL;
-- purge (slots up to the current one) and count of a whole namespace (index-only, as above)
CREATE INDEX IF NOT EXISTS sessions_slot_idx ON sessionspec.sessions (namespace, expiry_slot);

-- Appended items: one row per append call, so append costs O(items appended), not O(list).
CREATE TABLE IF NOT EXISTS sessionspec.items (
    namespace text COLLATE "C" NOT NULL,
    id        text COLLATE "C" NOT NULL,
    key       text COLLATE "C" NOT NULL,
    version   bigint NOT NULL,
    items     jsonb NOT NULL,
    PRIMARY KEY (namespace, id, key, version)
);

CREATE TABLE IF NOT EXISTS sessionspec.meta (name text PRIMARY KEY, value text NOT NULL);

-- A session's state is compressed again on every write (a 2 KB state already is) and read back
-- by every write's RETURNING: lz4 does both several times faster than the default pglz
-- (measured with pgbench on apply: +19% statements per second, 15% larger values). Servers
-- built without lz4, and PostgreSQL before 14, keep the default. Values written before keep
-- theirs until rewritten.
DO $$
BEGIN
    ALTER TABLE sessionspec.sessions ALTER COLUMN state SET COMPRESSION lz4;
    ALTER TABLE sessionspec.items ALTER COLUMN items SET COMPRESSION lz4;
EXCEPTION WHEN feature_not_supported OR syntax_error OR invalid_parameter_value THEN
    RAISE NOTICE 'sessionspec: lz4 compression unavailable (%), keeping the default', SQLERRM;
END $$;

-- The functions and their result type are replaced as a whole (this script runs only when
-- its hash changed): an old overload left behind would make calls ambiguous.
DO $$
DECLARE
    f regprocedure;
BEGIN
    FOR f IN SELECT p.oid::regprocedure FROM pg_proc p WHERE p.pronamespace = 'sessionspec'::regnamespace LOOP
        EXECUTE 'DROP FUNCTION ' || f;
    END LOOP;
END $$;
DROP TYPE IF EXISTS sessionspec.outcome;

-- What every write function returns. status: 0 ok, 1 not found, 2 version conflict
-- (version = the stored one), 3 exists, 4 append target not a list (detail = its JSON type).
-- tails: [[key, [items...]], ...] ordered by key then append, to extend state[key] with.
CREATE TYPE sessionspec.outcome AS (
    status int, version bigint, owner text, created_at timestamptz, updated_at timestamptz,
    expires_at timestamptz, ttl double precision, state jsonb, tails jsonb, detail text);

-- A ttl in seconds as an interval (NULL stays NULL). Capped at 1e10 s (~317 years) so
-- expires_at stays a representable timestamp for any finite ttl.
CREATE OR REPLACE FUNCTION sessionspec.period(ttl double precision) RETURNS interval
LANGUAGE sql IMMUTABLE PARALLEL SAFE
AS $$ SELECT make_interval(secs => CASE WHEN ttl > 1e10 THEN 1e10 ELSE ttl END) $$;

-- The slot of an expiry, as the column expiry_slot holds it (see the table).
CREATE OR REPLACE FUNCTION sessionspec.expiry_slot(t timestamptz) RETURNS bigint
LANGUAGE sql IMMUTABLE PARALLEL SAFE
AS $$ SELECT floor(extract(epoch FROM t - '1970-01-01 00:00:00+00'::timestamptz) / 60)::bigint $$;

-- A call that finds a session expired makes the expiry an event before it answers "gone": it
-- deletes the row (and its items) if it is still expired, else learns that a write extended it
-- first. A write decides "live" on its snapshot a moment before it locks and commits; without
-- this, one that decided just before the expiry could commit after a call had answered "gone",
-- and the session would be back (CC-8). Whichever locks the row first wins: the write (the
-- delete then re-checks the new row, which is live) or the delete (the write then finds no row).
-- Returns true when the session is gone, false when a live row is there.
CREATE OR REPLACE FUNCTION sessionspec.expire_due(p_ns text, p_id text) RETURNS boolean
LANGUAGE plpgsql AS $$
DECLARE
    had_items boolean;
BEGIN
    DELETE FROM sessionspec.sessions s
     WHERE s.namespace = p_ns AND s.id = p_id AND s.expires_at <= clock_timestamp()
    RETURNING cardinality(s.item_keys) > 0 INTO had_items;
    IF FOUND THEN
        IF had_items THEN
            DELETE FROM sessionspec.items i WHERE i.namespace = p_ns AND i.id = p_id;
        END IF;
        RETURN true;
    END IF;
    PERFORM FROM sessionspec.sessions s WHERE s.namespace = p_ns AND s.id = p_id;  -- a fresh snapshot
    RETURN NOT FOUND;
END $$;

-- Why a conditional write matched no row: lock the row (FOR UPDATE) and classify it on the
-- clock read after the lock (the wait may be long). An expired row is deleted here, by
-- expire_due, before status 1 answers "gone". status 0 means live, at the expected
-- version, and now locked by this transaction, with updated_at = the instant it was found live
-- (the caller's write time); then the appended items of the keys in p_drop (NULL: all keys) are
-- dropped, as save/apply replace them.
CREATE OR REPLACE FUNCTION sessionspec.lock_live(
    p_ns text, p_id text, p_expected bigint, p_drop text[] DEFAULT '{}')
RETURNS sessionspec.outcome LANGUAGE plpgsql AS $$
DECLARE
    r sessionspec.outcome;
    cur sessionspec.sessions;
    there boolean;
    t timestamptz;
BEGIN
    SELECT * INTO cur FROM sessionspec.sessions s WHERE s.namespace = p_ns AND s.id = p_id FOR UPDATE;
    there := FOUND;
    t := clock_timestamp();
    IF NOT there THEN
        r.status := 1;
    ELSIF cur.expires_at <= t THEN
        r.status := 1;
        PERFORM sessionspec.expire_due(p_ns, p_id);  -- we hold the lock and the clock only moves on: it deletes
    ELSIF p_expected IS NOT NULL AND cur.version <> p_expected THEN
        r.status := 2;
        r.version := cur.version;
    ELSE
        r.status := 0;
        r.updated_at := t;
        IF p_drop IS NULL OR cur.item_keys && p_drop THEN
            DELETE FROM sessionspec.items i
             WHERE i.namespace = p_ns AND i.id = p_id AND (p_drop IS NULL OR i.key = ANY(p_drop));
            UPDATE sessionspec.sessions s
               SET item_keys = ARRAY(SELECT k FROM unnest(s.item_keys) k WHERE p_drop IS NOT NULL AND k <> ALL(p_drop))
             WHERE s.namespace = p_ns AND s.id = p_id;
        END IF;
    END IF;
    RETURN r;
END $$;

CREATE OR REPLACE FUNCTION sessionspec.create_session(
    p_ns text, p_id text, p_owner text, p_state jsonb, p_ttl double precision)
RETURNS sessionspec.outcome LANGUAGE plpgsql AS $$
DECLARE
    t timestamptz := clock_timestamp();
    r sessionspec.outcome;
BEGIN
    FOR attempt IN 1..10 LOOP
        INSERT INTO sessionspec.sessions AS s
            (namespace, id, owner, version, state, created_at, updated_at, ttl, expires_at)
        VALUES (p_ns, p_id, p_owner, nextval('sessionspec.versions'), p_state, t, t, p_ttl,
                t + sessionspec.period(p_ttl))
        ON CONFLICT (namespace, id) DO NOTHING
        RETURNING 0, s.version, s.owner, s.created_at, s.updated_at, s.expires_at, s.ttl INTO r;
        IF FOUND THEN
            RETURN r;
        END IF;
        -- The id is taken. An expired holder is replaced by a new incarnation (LC-2).
        UPDATE sessionspec.sessions s
           SET owner = p_owner, version = nextval('sessionspec.versions'), state = p_state,
               item_keys = '{}', created_at = t, updated_at = t, ttl = p_ttl,
               expires_at = t + sessionspec.period(p_ttl)
         WHERE s.namespace = p_ns AND s.id = p_id AND s.expires_at <= t
        RETURNING 0, s.version, s.owner, s.created_at, s.updated_at, s.expires_at, s.ttl INTO r;
        IF FOUND THEN
            DELETE FROM sessionspec.items i WHERE i.namespace = p_ns AND i.id = p_id;
            RETURN r;
        END IF;
        PERFORM FROM sessionspec.sessions s
         WHERE s.namespace = p_ns AND s.id = p_id AND (s.expires_at IS NULL OR s.expires_at > t);
        IF FOUND THEN
            r.status := 3;
            RETURN r;
        END IF;
        -- deleted between our statements: try again
    END LOOP;
    RAISE EXCEPTION 'sessionspec: create of % kept racing with deletes', p_id USING ERRCODE = '40001';
END $$;

CREATE OR REPLACE FUNCTION sessionspec.save_session(
    p_ns text, p_id text, p_state jsonb, p_expected bigint, p_keep_ttl boolean, p_ttl double precision)
RETURNS sessionspec.outcome LANGUAGE plpgsql AS $$
DECLARE
    t timestamptz := clock_timestamp();
    r sessionspec.outcome;
BEGIN
    FOR attempt IN 1..2 LOOP
        -- fast path: a session without appended items is replaced in one statement
        UPDATE sessionspec.sessions s
           SET state = p_state, version = nextval('sessionspec.versions'), updated_at = t,
               ttl = CASE WHEN p_keep_ttl THEN s.ttl ELSE p_ttl END,
               expires_at = t + sessionspec.period(CASE WHEN p_keep_ttl THEN s.ttl ELSE p_ttl END)
         WHERE s.namespace = p_ns AND s.id = p_id AND (s.expires_at IS NULL OR s.expires_at > t)
           AND (p_expected IS NULL OR s.version = p_expected) AND cardinality(s.item_keys) = 0
        RETURNING 0, s.version, s.owner, s.created_at, s.updated_at, s.expires_at, s.ttl INTO r;
        IF FOUND THEN
            RETURN r;
        END IF;
        EXIT WHEN attempt = 2;
        r := sessionspec.lock_live(p_ns, p_id, p_expected, NULL);  -- locked, items gone: now it cannot miss
        IF r.status <> 0 THEN
            RETURN r;
        END IF;
        t := r.updated_at;  -- when it was found live, after the wait for the lock
    END LOOP;
    RAISE EXCEPTION 'sessionspec: save of % missed its locked row', p_id USING ERRCODE = '40001';
END $$;

CREATE OR REPLACE FUNCTION sessionspec.apply_changes(
    p_ns text, p_id text, p_changes jsonb, p_deleted text[], p_keys text[], p_expected bigint)
RETURNS sessionspec.outcome LANGUAGE plpgsql AS $$
DECLARE
    t timestamptz := clock_timestamp();
    r sessionspec.outcome;
BEGIN
    FOR attempt IN 1..2 LOOP
        -- fast path: no changed key continues in sessionspec.items
        UPDATE sessionspec.sessions s
           SET state = (s.state - p_deleted) || p_changes, version = nextval('sessionspec.versions'),
               updated_at = t, expires_at = t + sessionspec.period(s.ttl)
         WHERE s.namespace = p_ns AND s.id = p_id AND (s.expires_at IS NULL OR s.expires_at > t)
           AND (p_expected IS NULL OR s.version = p_expected) AND NOT (s.item_keys && p_keys)
        RETURNING 0, s.version, s.owner, s.created_at, s.updated_at, s.expires_at, s.ttl, s.state,
                  CASE WHEN cardinality(s.item_keys) > 0 THEN '[]'::jsonb END INTO r;
        IF FOUND THEN
            IF r.tails IS NOT NULL THEN  -- we hold the row lock: this sees every append before us
                SELECT jsonb_agg(jsonb_build_array(i.key, i.items) ORDER BY i.key, i.version) INTO r.tails
                  FROM sessionspec.items i WHERE i.namespace = p_ns AND i.id = p_id;
            END IF;
            RETURN r;
        END IF;
        EXIT WHEN attempt = 2;
        r := sessionspec.lock_live(p_ns, p_id, p_expected, p_keys);  -- the changed keys' items go
        IF r.status <> 0 THEN
            RETURN r;
        END IF;
        t := r.updated_at;
    END LOOP;
    RAISE EXCEPTION 'sessionspec: apply to % missed its locked row', p_id USING ERRCODE = '40001';
END $$;

CREATE OR REPLACE FUNCTION sessionspec.append_items(
    p_ns text, p_id text, p_key text, p_items jsonb, p_expected bigint)
RETURNS sessionspec.outcome LANGUAGE plpgsql AS $$
DECLARE
    t timestamptz := clock_timestamp();
    r sessionspec.outcome;
    kind text;
BEGIN
    FOR attempt IN 1..10 LOOP
        -- Once a key has appended items its head is known to be an array, so the common
        -- case never reads (detoasts) the state: the row update reuses the TOAST pointer.
        UPDATE sessionspec.sessions s
           SET version = nextval('sessionspec.versions'), updated_at = t,
               expires_at = t + sessionspec.period(s.ttl),
               item_keys = CASE WHEN p_key = ANY(s.item_keys) THEN s.item_keys ELSE s.item_keys || p_key END,
               state = CASE WHEN p_key = ANY(s.item_keys) OR s.state ? p_key THEN s.state
                            ELSE s.state || jsonb_build_object(p_key, '[]'::jsonb) END
         WHERE s.namespace = p_ns AND s.id = p_id AND (s.expires_at IS NULL OR s.expires_at > t)
           AND (p_expected IS NULL OR s.version = p_expected)
           AND CASE WHEN p_key = ANY(s.item_keys) THEN true
                    ELSE coalesce(jsonb_typeof(s.state -> p_key), 'array') = 'array' END
        RETURNING 0, s.version, s.owner, s.created_at, s.updated_at, s.expires_at, s.ttl INTO r;
        IF FOUND THEN
            IF jsonb_array_length(p_items) > 0 THEN
                INSERT INTO sessionspec.items (namespace, id, key, version, items)
                VALUES (p_ns, p_id, p_key, r.version, p_items);
            END IF;
            RETURN r;
        END IF;
        r := sessionspec.lock_live(p_ns, p_id, p_expected);
        IF r.status <> 0 THEN
            RETURN r;
        END IF;
        t := r.updated_at;
        SELECT jsonb_typeof(s.state -> p_key) INTO kind FROM sessionspec.sessions s
         WHERE s.namespace = p_ns AND s.id = p_id AND NOT p_key = ANY(s.item_keys);
        IF kind IS NOT NULL AND kind <> 'array' THEN
            r.status := 4;
            r.detail := kind;
            RETURN r;
        END IF;
        -- changed between our statements: try again (we hold the lock now)
    END LOOP;
    RAISE EXCEPTION 'sessionspec: append to % kept racing', p_id USING ERRCODE = '40001';
END $$;

CREATE OR REPLACE FUNCTION sessionspec.delete_session(p_ns text, p_id text) RETURNS boolean
LANGUAGE plpgsql AS $$
DECLARE
    t timestamptz := clock_timestamp();
    live boolean;
    had_items boolean;
BEGIN
    DELETE FROM sessionspec.sessions s WHERE s.namespace = p_ns AND s.id = p_id
    RETURNING (s.expires_at IS NULL OR s.expires_at > t), cardinality(s.item_keys) > 0 INTO live, had_items;
    IF had_items THEN
        DELETE FROM sessionspec.items i WHERE i.namespace = p_ns AND i.id = p_id;
    END IF;
    RETURN coalesce(live, false);
END $$;

-- One bounded batch of purge_expired; the client loops while a batch comes back full.
CREATE OR REPLACE FUNCTION sessionspec.purge_batch(p_ns text, p_limit int) RETURNS int
LANGUAGE plpgsql AS $$
DECLARE
    t timestamptz := clock_timestamp();
    n int;
    with_items text[];
BEGIN
    WITH gone AS (
        DELETE FROM sessionspec.sessions s
         WHERE s.ctid = ANY(ARRAY(SELECT e.ctid FROM sessionspec.sessions e
                                   WHERE e.namespace = p_ns AND e.expiry_slot <= sessionspec.expiry_slot(t)
                                     AND e.expires_at <= t  -- from the heap: only the current slot can fail it
                                   ORDER BY e.expiry_slot LIMIT p_limit))  -- ordered: walks the index
           AND s.expires_at <= t  -- rechecked if a writer got there first (it then stays)
        RETURNING s.id, s.item_keys)
    SELECT count(*), array_agg(g.id) FILTER (WHERE cardinality(g.item_keys) > 0) INTO n, with_items FROM gone g;
    IF with_items IS NOT NULL THEN
        DELETE FROM sessionspec.items i WHERE i.namespace = p_ns AND i.id = ANY(with_items);
    END IF;
    RETURN n;
END $$;
