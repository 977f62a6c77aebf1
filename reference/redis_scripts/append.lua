-- append: ARGV = P, id, expected ('' = any), key json, item json... ; O(items), never O(list length).
-- A list's items live in two parts: its head, the JSON text in "k:<key>" as the last whole write
-- (create, save, apply) left it, and its tail, a LIST of the items appended since, marked by
-- "t:<key>". Only the first append after a whole write reads the head (to check it is a list);
-- later ones RPUSH without reading anything of the list.
local id, key, now = ARGV[2], ARGV[4], now_us()
local m, refusal = writable(now)
if not m then return refusal end
local h, n = skey(id), #ARGV - 4
if redis.call('HEXISTS', h, 't:' .. key) == 0 then
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
stamp(id, m, now, true)
return info(m)
