-- Prepended to every script by reference/redis.py; the key layout is in that module's docstring.
-- KEYS[1] only routes the call to the namespace's shard. ARGV[1] is the prefix "{ns}:" and every
-- key is built from it, so all keys a script touches share the namespace's hash slot.
-- Times are server microseconds (TIME), never the client's clock. Numbers are never turned
-- into strings with `..` or tostring (both round to 14 digits); redis.call converts them exactly.
redis.replicate_commands() -- Redis 6.2: TIME before writes needs effects replication (7: a no-op)
local P = ARGV[1]
local IDS, EXP, OWN, VER = P .. 'ids', P .. 'exp', P .. 'own', P .. 'ver'
local CHUNK = 1000 -- arguments per variadic call: stays far below Lua's unpack limit
local MAX_US = 9007199254740991 -- 2^53 - 1: the largest exact expiry

local function now_us()
  local t = redis.call('TIME')
  return tonumber(t[1]) * 1000000 + tonumber(t[2])
end

-- Called first by every script that can grow memory (create, save, apply, append, touch; never
-- delete or purge, which free it). Redis refuses a script at its memory limit only at its first
-- write, and only if that write is one that may grow memory (SET yes, DEL no): create and save
-- begin by deleting, so without this they wrote on past maxmemory. SETRANGE of nothing is such a
-- write that changes nothing and creates no key: at the limit the script stops here, untouched.
local function refuse_at_memory_limit()
  redis.call('SETRANGE', P .. 'oom', 0, '')
end

local function skey(id) return P .. 's:' .. id end
local function lskey(id) return P .. 'ls:' .. id end
-- ids never contain control characters (ID-2), so NUL ends the id unambiguously
local function lkey(id, key) return P .. 'l:' .. id .. '\0' .. key end
local function oikey(owner) return P .. 'oi:' .. owner end
local function oekey(owner) return P .. 'oe:' .. owner end

-- m = {v, e, o, c, u, t, tus} of a live session, or false when absent or expired at `now`
local function live(id, now)
  local m = redis.call('HMGET', skey(id), 'v', 'e', 'o', 'c', 'u', 't', 'tus')
  if not m[1] or (m[2] and tonumber(m[2]) <= now) then return false end
  return m
end

-- Replies are ONE string, parsed by the client in one step: "\n"-separated lines, the status
-- first (0 ok, 1 not found, 2 exists, 3 version conflict, 4 not a list). Ids, owners and ttl
-- texts hold no control characters and JSON text has no raw newline, so "\n" is unambiguous.
-- a state field "k:<key json>" (meta field names are short words without ':')
local function is_state_field(f)
  local a, b = string.byte(f, 1, 2)
  return a == 107 and b == 58
end

local function num(x) -- exact integer text (tostring and `..` would round to 14 digits)
  if type(x) == 'number' then return string.format('%d', x) end
  return x
end

-- "0\nversion\ncreated\nupdated\nexpires\nttl\nowner" ('' = none) for m = {v, e, o, c, u, t, tus}
local function info(m)
  return table.concat({'0', num(m[1]), num(m[4]), num(m[5]), m[2] and num(m[2]) or '', m[6] or '', m[3] or ''}, '\n')
end

-- remove one incarnation's data (hash, lists, list set)
local function drop(id)
  local ls = lskey(id)
  for _, key in ipairs(redis.call('SMEMBERS', ls)) do redis.call('DEL', lkey(id, key)) end
  redis.call('DEL', skey(id), ls)
end

-- remove an id from every index it is in; OWN says which owner's
local function unindex(id)
  redis.call('ZREM', IDS, id)
  redis.call('ZREM', EXP, id)
  local owner = redis.call('HGET', OWN, id)
  if owner then
    redis.call('ZREM', oikey(owner), id)
    redis.call('ZREM', oekey(owner), id)
    redis.call('HDEL', OWN, id)
  end
end

-- forget up to n sessions that expired at or before `before`. Every write re-scores EXP, so a
-- score that old belongs to a dead incarnation.
local function sweep(before, n)
  local dead = redis.call('ZRANGEBYSCORE', EXP, '-inf', before, 'LIMIT', 0, n)
  for _, id in ipairs(dead) do
    drop(id)
    unindex(id)
  end
  return #dead
end

local function push(key, first, last)
  for a = first, last, CHUNK do
    redis.call('RPUSH', key, unpack(ARGV, a, math.min(a + CHUNK - 1, last)))
  end
end

local function hset(h, fields)
  for a = 1, #fields, CHUNK do
    redis.call('HSET', h, unpack(fields, a, math.min(a + CHUNK - 1, #fields)))
  end
end

-- The pieces of ONE packed argument: JSON texts (and field names holding them) joined by
-- "\n", which JSON text never holds raw. One argument instead of one per piece: the client
-- packs 2 KB of state in one step instead of ~40 (measured: 250 us of client CPU per save).
local function split(s)
  local out, n, pos = {}, 0, 1
  if s == '' then return out end
  while true do
    local nl = string.find(s, '\n', pos, true)
    n = n + 1
    if not nl then
      out[n] = string.sub(s, pos)
      return out
    end
    out[n] = string.sub(s, pos, nl - 1)
    pos = nl + 1
  end
end

-- a state key's appended tail marker "t:<key json>"
local function is_tail_field(f)
  local a, b = string.byte(f, 1, 2)
  return a == 116 and b == 58
end

-- A list with appended items: its head (the JSON text last written whole) and then its tail
-- (the LIST), as one JSON array text.
local function with_tail(id, key, head)
  local items = redis.call('LRANGE', lkey(id, key), 0, -1)
  if #items == 0 then return head end
  local body = table.concat(items, ',')
  if head == '[]' then return '[' .. body .. ']' end
  return string.sub(head, 1, -2) .. ',' .. body .. ']'
end

-- apply a ttl argument: mode 'k' keeps the period, 'n' makes it permanent, 's' sets (text, micros)
local function set_ttl(m, mode, text, micros)
  if mode == 'n' then
    m[6], m[7] = false, false
  elseif mode == 's' then
    m[6], m[7] = text, micros
  end
end

-- A write at `now`: new version (unless touch), sliding expiry on every key of the session in
-- this same script (never a separate step), and the expiry indexes re-scored.
local function stamp(id, m, now, bump)
  local h = skey(id)
  if bump then m[1] = redis.call('INCR', VER) end
  m[5] = now
  local e = false
  if m[7] then e = math.min(now + tonumber(m[7]), MAX_US) end
  m[2] = e
  if e then
    redis.call('HSET', h, 'v', m[1], 'u', now, 'e', e, 't', m[6], 'tus', m[7])
  else
    redis.call('HSET', h, 'v', m[1], 'u', now)
    redis.call('HDEL', h, 'e', 't', 'tus')
  end
  local keys = {h}
  local ls = lskey(id)
  local names = redis.call('SMEMBERS', ls)
  if #names > 0 then
    keys[2] = ls
    for _, key in ipairs(names) do keys[#keys + 1] = lkey(id, key) end
  end
  for _, k in ipairs(keys) do
    if e then redis.call('PEXPIREAT', k, math.ceil(e / 1000)) else redis.call('PERSIST', k) end
  end
  local score = e or '+inf'
  redis.call('ZADD', EXP, score, id)
  if m[3] then redis.call('ZADD', oekey(m[3]), score, id) end
end

-- A write that replaces the whole state (create, save) after drop() cleared the old one:
-- the state fields (split from the packed argument, names included) and every meta field
-- go in ONE HSET; the hash is the session's only key, so only it needs an expiry.
local function write_fresh(id, m, now, fields)
  local h = skey(id)
  m[1] = redis.call('INCR', VER)
  m[5] = now
  local e = false
  if m[7] then e = math.min(now + tonumber(m[7]), MAX_US) end
  m[2] = e
  local n = #fields
  fields[n + 1], fields[n + 2], fields[n + 3], fields[n + 4], fields[n + 5], fields[n + 6] = 'v', m[1], 'c', m[4], 'u', now
  n = n + 6
  if e then
    fields[n + 1], fields[n + 2], fields[n + 3], fields[n + 4], fields[n + 5], fields[n + 6] = 'e', e, 't', m[6], 'tus', m[7]
    n = n + 6
  end
  if m[3] then fields[n + 1], fields[n + 2] = 'o', m[3] end
  hset(h, fields)
  if e then redis.call('PEXPIREAT', h, math.ceil(e / 1000)) end
  local score = e or '+inf'
  redis.call('ZADD', EXP, score, id)
  if m[3] then redis.call('ZADD', oekey(m[3]), score, id) end
end

-- The whole session, or '1' when absent or expired: info and then the state as ONE JSON text,
-- joined from the stored JSON fragments (field names hold each key's JSON text); nothing is decoded.
-- (pieces go into one table joined once: Lua interns every intermediate string it builds)
local function read(id, now)
  local all = redis.call('HGETALL', skey(id))
  local meta, parts, k, at, tails = {}, {false}, 1, {}, {}
  for j = 1, #all, 2 do
    local f, value = all[j], all[j + 1]
    if is_state_field(f) then
      local key = string.sub(f, 3)
      parts[k + 1], parts[k + 2], parts[k + 3], parts[k + 4] = key, ':', value, ','
      at[key] = k + 3
      k = k + 4
    elseif is_tail_field(f) then
      tails[#tails + 1] = string.sub(f, 3)
    else
      meta[f] = value
    end
  end
  if not meta.v or (meta.e and tonumber(meta.e) <= now) then return '1' end
  for _, key in ipairs(tails) do
    local i = at[key]
    if i then parts[i] = with_tail(id, key, parts[i]) end
  end
  parts[1] = table.concat({'0', meta.v, meta.c, meta.u, meta.e or '', meta.t or '', meta.o or '', '{'}, '\n')
  if k > 1 then parts[k] = '}' else parts[2] = '}' end
  return table.concat(parts)
end

-- The live session ARGV[2] for a versioned write (ARGV[3] = expected version, '' = any):
-- m, or false and the refusal to reply ('1' not found, '3\n<actual>' version conflict).
local function writable(now)
  local m = live(ARGV[2], now)
  if not m then return false, '1' end
  if ARGV[3] ~= '' and tonumber(ARGV[3]) ~= tonumber(m[1]) then return false, '3\n' .. num(m[1]) end
  return m
end
