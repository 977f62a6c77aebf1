-- touch: ARGV = P, id, ttl mode (k/n/s), ttl text, ttl micros; slides expiry, keeps the version
refuse_at_memory_limit()
local id = ARGV[2]
local now = now_us()
local m = live(id, now)
if not m then return '1' end
set_ttl(m, ARGV[3], ARGV[4], ARGV[5])
stamp(id, m, now, false)
return info(m)
