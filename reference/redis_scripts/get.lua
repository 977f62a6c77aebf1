-- get: ARGV = P, id. This file runs BEFORE common.lua (at the marker below): a session whose
-- hash holds "s", its state's whole JSON text as the last write left it, is answered from one
-- HMGET without the definitions of common.lua (their closures cost ~7 us per call, HGETALL of
-- ~40 fields ~25 us more: get took 45 us of server time, a raw GET 1). A session written by
-- append since ("s" removed) is joined from its fields and tails by common.lua's read().
local f = redis.call('HMGET', KEYS[1], 'v', 'e', 'c', 'u', 't', 'o', 's')
if not f[1] then return '1' end
if f[7] then
  local t = redis.call('TIME')
  if f[2] and tonumber(f[2]) <= tonumber(t[1]) * 1000000 + tonumber(t[2]) then return '1' end
  return table.concat({'0', f[1], f[3], f[4], f[2] or '', f[5] or '', f[6] or '', f[7]}, '\n')
end
--[[common.lua]]
return read(ARGV[2], now_us())
