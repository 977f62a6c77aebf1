-- purge_expired: ARGV = P, batch size; the caller repeats until a batch comes back short
return sweep(now_us(), tonumber(ARGV[2]))
