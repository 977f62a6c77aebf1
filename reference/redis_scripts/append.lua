-- append: ARGV = P, id, expected ('' = any), key json, item json... ; O(items), never O(list length).
-- A list's items live in two parts: its head, the JSON text in "k:<key>" as the last whole write
-- (create, save, apply) left it, and its tail, a LIST of the items appended since, marked by
-- "t:<key>". Only the first append after a whole write reads the head (to check it is a list);
-- later ones RPUSH without reading anything of the list.
refuse_at_memory_limit()
local id, key, now = ARGV[2], ARGV[4], now_us()
local h = skey(id)
-- live()'s fields and the tail marker in one read
local m = redis.call('HMGET', h, 'v', 'e', 'o', 'c', 'u', 't', 'tus', 't:' .. key)
if not m[1] or (m[2] and tonumber(m[2]) <= now) then return '1' end
if ARGV[3] ~= '' and tonumber(ARGV[3]) ~= tonumber(m[1]) then return '3\n' .. num(m[1]) end
local n = #ARGV - 4
if not m[8] then
  local f = 'k:' .. key
  local current = redis.call('HGET', h, f)
  if current and string.byte(current, 1) ~= 91 then return '4\n' .. string.sub(current, 1, 1) end -- not '['
  if not current then redis.call('HSET', h, f, '[]') end
  if n > 0 then
    redis.call('HSET', h, 't:' .. key, '1')
    redis.call('SADD', lskey(id), key)
  end
end
if n > 0 then push(lkey(id, key), 5, #ARGV) end

-- stamp (see common.lua) for a write that keeps the ttl: only v, u and e change, and a permanent
-- session's keys are already persistent (a new LIST has no expiry)
m[1], m[5] = redis.call('INCR', VER), now
local e = false
if m[7] then e = math.min(now + tonumber(m[7]), MAX_US) end
m[2] = e
if e then
  redis.call('HSET', h, 'v', m[1], 'u', now, 'e', e)
  local at, ls = math.ceil(e / 1000), lskey(id)
  redis.call('PEXPIREAT', h, at)
  local names = redis.call('SMEMBERS', ls)
  if #names > 0 then
    redis.call('PEXPIREAT', ls, at)
    for _, k in ipairs(names) do redis.call('PEXPIREAT', lkey(id, k), at) end
  end
else
  redis.call('HSET', h, 'v', m[1], 'u', now)
end
local score = e or '+inf'
redis.call('ZADD', EXP, score, id)
if m[3] then redis.call('ZADD', oekey(m[3]), score, id) end
return info(m)
