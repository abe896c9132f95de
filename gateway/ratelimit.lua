-- GCRA over several limits at once, all or nothing. See gateway/ratelimit.py.
--
-- KEYS[i]         one state key per applicable limit, all in one hash slot ("rl:{tenant}:...").
--                 The value is the limit's theoretical arrival time (TAT) in microseconds.
-- ARGV[1]         "reserve": admit only if every limit has room, then consume from all of them;
--                 "adjust":  apply the costs unconditionally (settling; a cost may be negative).
-- ARGV[2]         period in microseconds (60e6 for per-minute limits).
-- ARGV[2i+1]      limit i (units per period, > 0).
-- ARGV[2i+2]      cost i (requests or tokens).
--
-- Returns {allowed (0/1), refused index (0 = none), retry after (us), then for every limit the
-- TAT minus now in us after this call}. Time comes from Redis so every gateway process agrees.
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000000 + tonumber(t[2])
local reserve = ARGV[1] == 'reserve'
local period = tonumber(ARGV[2])
-- Float rounding slack so "exactly at the limit" is not refused (1 ms, far below one unit).
local slack = 1000

local old_tats, new_tats = {}, {}
local refused, retry = 0, 0
for i = 1, #KEYS do
  local limit = tonumber(ARGV[2 * i + 1])
  local cost = tonumber(ARGV[2 * i + 2])
  local tat = tonumber(redis.call('GET', KEYS[i]) or '0')
  if tat < now then tat = now end
  local new_tat = tat + cost * (period / limit)
  -- A refund never banks credit below "now" (the bucket is then simply full).
  if new_tat < now then new_tat = now end
  old_tats[i], new_tats[i] = tat, new_tat
  local wait = new_tat - now - period
  if reserve and wait > slack and wait > retry then
    refused, retry = i, wait
  end
end

local result = {refused == 0 and 1 or 0, refused, math.ceil(retry)}
for i = 1, #KEYS do
  local tat = old_tats[i]
  if refused == 0 then
    tat = new_tats[i]
    local ttl_ms = math.ceil((tat - now) / 1000)
    if ttl_ms > 0 then
      redis.call('SET', KEYS[i], string.format('%.17g', tat), 'PX', ttl_ms)
    else
      redis.call('DEL', KEYS[i])
    end
  end
  result[3 + i] = math.ceil(tat - now)
end
return result
