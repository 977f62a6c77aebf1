-- list: KEYS[1] = the id index to page (IDS or an owner's); ARGV = P, owner ('' = all),
-- cursor ('' = from the start), limit, grace micros, scan cap.
-- Reply: one string of lines, the next cursor ('' = last page) and then 7 per item:
-- id, version, created, updated, expires, ttl, owner. Reads at most `cap` index entries (a page
-- may come back short, with a cursor); sessions dead longer than the grace period are forgotten.
local owner, limit, cap = ARGV[2], tonumber(ARGV[4]), tonumber(ARGV[6])
local now = now_us()
local stale = now - tonumber(ARGV[5])
local start = '-'
if ARGV[3] ~= '' then start = '(' .. ARGV[3] end
local out, n, scanned = {''}, 0, 0
local function reply(cursor)
  out[1] = cursor
  return table.concat(out, '\n')
end
while scanned < cap do
  local want = math.min(limit + 1 - n, cap - scanned)
  local batch = redis.call('ZRANGEBYLEX', KEYS[1], start, '+', 'LIMIT', 0, want)
  for _, id in ipairs(batch) do
    scanned = scanned + 1
    local m = redis.call('HMGET', skey(id), 'v', 'e', 'o', 'c', 'u', 't')
    if m[1] and (not m[2] or tonumber(m[2]) > now) then
      if owner == '' or m[3] == owner then
        if n == limit then return reply(out[#out - 6]) end -- one more: the page is full, not last
        n = n + 1
        for _, v in ipairs({id, m[1], m[4], m[5], m[2] or '', m[6] or '', m[3] or ''}) do out[#out + 1] = v end
      else -- a live session of another owner: this owner-index entry is stale
        redis.call('ZREM', KEYS[1], id)
        redis.call('ZREM', oekey(owner), id)
      end
    else
      local score = redis.call('ZSCORE', EXP, id)
      if not score or tonumber(score) <= stale then
        -- every key of a session carries the same expiry (set in one script), so when Redis has
        -- already dropped the hash the rest is gone or goes with it: no lookups in a keyspace
        -- of every session (at 1M sessions each is a cache miss)
        if m[1] then drop(id) end
        if owner == '' then
          unindex(id)
        else -- out of this owner's (small) indexes only: the global ones, a ZREM in a set of every
          -- session each, are left to the sweeps of create and purge_expired, which find it by EXP
          redis.call('ZREM', KEYS[1], id)
          redis.call('ZREM', oekey(owner), id)
        end
      end
    end
  end
  if #batch < want then return reply('') end
  start = '(' .. batch[#batch]
end
return reply(string.sub(start, 2))
