-- save: ARGV = P, id, expected ('' = any), ttl mode (k/n/s), ttl text, ttl micros, state...
local id, now = ARGV[2], now_us()
local m, refusal = writable(now)
if not m then return refusal end
drop(id)
write_state(id, 7, true)
set_ttl(m, ARGV[4], ARGV[5], ARGV[6])
redis.call('HSET', skey(id), 'c', m[4])
if m[3] then redis.call('HSET', skey(id), 'o', m[3]) end
stamp(id, m, now, true)
return info(m)
