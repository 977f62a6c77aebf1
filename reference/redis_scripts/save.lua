-- save: ARGV = P, id, expected ('' = any), ttl mode (k/n/s), ttl text, ttl micros, state (packed:
-- "k:<key json>\n<value json>\n..."). The old state, lists and appended tails go (drop); the new
-- state and the meta are one HSET.
refuse_at_memory_limit()
local id, now = ARGV[2], now_us()
local m, refusal = writable(now)
if not m then return refusal end
drop(id)
set_ttl(m, ARGV[4], ARGV[5], ARGV[6])
write_fresh(id, m, now, split(ARGV[7]))
return info(m)
