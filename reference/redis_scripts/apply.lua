-- apply: ARGV = P, id, expected ('' = any), changes (packed: "<key json>\n<value json>\n...",
-- an empty value deletes the key).
-- One HGETALL serves the liveness check, the old values (and which have appended tails) and the
-- reply, and one HSET writes the changes with the new meta: the reply is joined in memory, not re-read.
refuse_at_memory_limit()
local id, now = ARGV[2], now_us()
local h = skey(id)
local all = redis.call('HGETALL', h)
local meta, vals, order, count, tails = {}, {}, {}, 0, {}
for j = 1, #all, 2 do
  local f = all[j]
  if is_state_field(f) then
    local key = string.sub(f, 3)
    count = count + 1
    order[count] = key
    vals[key] = all[j + 1]
  elseif is_tail_field(f) then
    tails[string.sub(f, 3)] = true
  else
    meta[f] = all[j + 1]
  end
end
if not meta.v or (meta.e and tonumber(meta.e) <= now) then return '1' end
if ARGV[3] ~= '' and tonumber(ARGV[3]) ~= tonumber(meta.v) then return '3\n' .. meta.v end

local changes = split(ARGV[4])
local ls = lskey(id)
local fields = {}
for i = 1, #changes, 2 do
  local key, value = changes[i], changes[i + 1]
  local f = 'k:' .. key
  if tails[key] then -- the whole value is replaced: its appended tail goes
    redis.call('DEL', lkey(id, key))
    redis.call('SREM', ls, key)
    redis.call('HDEL', h, 't:' .. key)
    tails[key] = nil
  end
  if value == '' then
    if vals[key] then redis.call('HDEL', h, f) end
    vals[key] = nil
  else
    if not vals[key] then
      count = count + 1
      order[count] = key
    end
    vals[key] = value
    fields[#fields + 1] = f
    fields[#fields + 1] = value
  end
end

-- stamp (see common.lua) without re-reading: ttl text and period are unchanged by apply
local version = redis.call('INCR', VER)
local e = false
if meta.tus then e = math.min(now + tonumber(meta.tus), MAX_US) end
local n = #fields
fields[n + 1], fields[n + 2], fields[n + 3], fields[n + 4] = 'v', version, 'u', now
if e then fields[n + 5], fields[n + 6] = 'e', e end
hset(h, fields)

-- the reply's state, and the session's tails, which slide with the hash (a permanent session's
-- keys are already persistent: PERSIST ran when it became permanent, new LISTs have no expiry)
-- the reply is pieces joined once by table.concat: no intermediate strings (Lua interns each)
local parts, lists, k = {table.concat({'0', num(version), meta.c, num(now), e and num(e) or '', meta.t or '',
                                        meta.o or '', '{'}, '\n')}, {}, 1
for j = 1, count do
  local key = order[j]
  local value = vals[key]
  if value then
    if tails[key] then
      lists[#lists + 1] = lkey(id, key)
      value = with_tail(id, key, value)
    end
    parts[k + 1], parts[k + 2], parts[k + 3], parts[k + 4] = key, ':', value, ','
    k = k + 4
  end
end
if k > 1 then parts[k] = '}' else parts[2] = '}' end
if e then
  local at = math.ceil(e / 1000)
  redis.call('PEXPIREAT', h, at)
  if #lists > 0 then
    redis.call('PEXPIREAT', ls, at)
    for _, lk in ipairs(lists) do redis.call('PEXPIREAT', lk, at) end
  end
end
local score = e or '+inf'
redis.call('ZADD', EXP, score, id)
if meta.o then redis.call('ZADD', oekey(meta.o), score, id) end
return table.concat(parts)
