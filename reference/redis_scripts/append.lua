-- append: ARGV = P, id, expected ('' = any), key json, item json... ; O(items), never O(list length)
local id, key, now = ARGV[2], ARGV[4], now_us()
local m, refusal = writable(now)
if not m then return refusal end
local h, f = skey(id), 'k:' .. key
local current = redis.call('HGET', h, f)
if current and current ~= 'L' then return '4\n' .. string.sub(current, 1, 1) end
if not current then
  redis.call('HSET', h, f, 'L')
  redis.call('SADD', lskey(id), key)
end
if #ARGV >= 5 then push(lkey(id, key), 5, #ARGV) end
stamp(id, m, now, true)
return info(m)
