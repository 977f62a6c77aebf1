-- create: ARGV = P, id, owner ('' = none), ttl text ('' = never), ttl micros, grace micros,
-- state (packed, as save's)
refuse_at_memory_limit()
local id, owner = ARGV[2], ARGV[3]
local now = now_us()
if live(id, now) then return '2' end
-- an earlier incarnation may linger (expired this microsecond, or still indexed): clear it
drop(id)
unindex(id)
local m = {false, false, false, now, now, false, false}
set_ttl(m, ARGV[4] == '' and 'n' or 's', ARGV[4], ARGV[5])
redis.call('ZADD', IDS, 0, id)
if owner ~= '' then
  m[3] = owner
  redis.call('HSET', OWN, id, owner)
  redis.call('ZADD', oikey(owner), 0, id)
end
write_fresh(id, m, now, split(ARGV[7]))
-- every create forgets two long-dead sessions, so indexes never grow without bound
sweep(now - tonumber(ARGV[6]), 2)
return info(m)
