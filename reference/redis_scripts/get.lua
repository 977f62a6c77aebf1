-- get: ARGV = P, id
return read(ARGV[2], now_us())
