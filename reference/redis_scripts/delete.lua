-- delete: ARGV = P, id; 1 when a live session was deleted, else 0 (leftovers are cleared too)
local id = ARGV[2]
local m = live(id, now_us())
drop(id)
unindex(id)
if m then return 1 end
return 0
