-- count: KEYS[1] = an expiry index (EXP or an owner's); ARGV = P. O(log n): no scan.
local now = now_us()
return redis.call('ZCARD', KEYS[1]) - redis.call('ZCOUNT', KEYS[1], '-inf', now)
