-- apply: ARGV = P, id, expected ('' = any), change records (a 'd' record deletes the key)...
local id, now = ARGV[2], now_us()
local m, refusal = writable(now)
if not m then return refusal end
write_state(id, 4, false)
stamp(id, m, now, true)
return read(id, now)
