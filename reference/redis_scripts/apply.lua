-- apply: ARGV = P, id, expected ('' = any), change records (a 'd' record deletes the key)...
-- One HGETALL serves the liveness check, the old values ('L' = a LIST) and the reply, and one
-- HSET writes the changes with the new meta: the reply is joined in memory, not re-read.
local id, now = ARGV[2], now_us()
local h = skey(id)
local all = redis.call('HGETALL', h)
local meta, vals, order, count = {}, {}, {}, 0
for j = 1, #all, 2 do
  local f = all[j]
  if is_state_field(f) then
    local key = string.sub(f, 3)
    count = count + 1
    order[count] = key
    vals[key] = all[j + 1]
  else
    meta[f] = all[j + 1]
  end
end
if not meta.v or (meta.e and tonumber(meta.e) <= now) then return '1' end
if ARGV[3] ~= '' and tonumber(ARGV[3]) ~= tonumber(meta.v) then return '3\n' .. meta.v end

local ls = lskey(id)
local fields, i = {}, 4
while i <= #ARGV do
  local key, tag = ARGV[i], ARGV[i + 1]
  local f, old = 'k:' .. key, vals[key]
  if old == 'L' then
    redis.call('DEL', lkey(id, key))
    redis.call('SREM', ls, key)
  end
  if tag == 'd' then
    if old then redis.call('HDEL', h, f) end
    vals[key] = nil
    i = i + 2
  else
    if not old then
      count = count + 1
      order[count] = key
    end
    fields[#fields + 1] = f
    if tag == 'j' then
      vals[key] = ARGV[i + 2]
      i = i + 3
    else -- 'l' n item1..itemn
      local n = tonumber(ARGV[i + 2])
      vals[key] = 'L'
      redis.call('SADD', ls, key)
      push(lkey(id, key), i + 3, i + 2 + n)
      i = i + 3 + n
    end
    fields[#fields + 1] = vals[key]
  end
end

-- stamp (see common.lua) without re-reading: ttl text and period are unchanged by apply
local version = redis.call('INCR', VER)
local e = false
if meta.tus then e = math.min(now + tonumber(meta.tus), MAX_US) end
local n = #fields
fields[n + 1], fields[n + 2], fields[n + 3], fields[n + 4] = 'v', version, 'u', now
if e then fields[n + 5], fields[n + 6] = 'e', e end
for a = 1, #fields, CHUNK do
  redis.call('HSET', h, unpack(fields, a, math.min(a + CHUNK - 1, #fields)))
end

-- the reply's state, and the session's LISTs, which slide with the hash (a permanent session's
-- keys are already persistent: PERSIST ran when it became permanent, new LISTs have no expiry)
-- the reply is pieces joined once by table.concat: no intermediate strings (Lua interns each)
local parts, lists, k = {table.concat({'0', num(version), meta.c, num(now), e and num(e) or '', meta.t or '',
                                        meta.o or '', '{'}, '\n')}, {}, 1
for j = 1, count do
  local key = order[j]
  local value = vals[key]
  if value then
    parts[k + 1], parts[k + 2] = key, ':'
    if value == 'L' then
      local lk = lkey(id, key)
      lists[#lists + 1] = lk
      value = '[' .. table.concat(redis.call('LRANGE', lk, 0, -1), ',') .. ']'
    end
    parts[k + 3], parts[k + 4] = value, ','
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
