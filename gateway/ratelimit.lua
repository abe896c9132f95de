-- Sliding-window log, plus an optional GCRA burst limit, over several limits at once, all or
-- nothing. See gateway/ratelimit.py for the semantics and why.
--
-- KEYS[2i-1]      limit i's log: a sorted set of admitted entries "<time us>-<seq>:<cost>"
--                 scored by their Redis time in microseconds.
-- KEYS[2i]        limit i's hash: "total" (sum of the costs in the log), "seq" (makes entries
--                 unique), "tat" (the burst limit's theoretical arrival time, in us).
--                 All keys share one hash slot ("rl:{tenant}:...").
-- ARGV[1]         "reserve": admit only if every limit has room, then add an entry to each;
--                 "adjust":  change the cost of an entry still in the window (settling; never
--                            refuses);
--                 "peek":    read each limit's state, changing nothing.
-- ARGV[2]         the window in microseconds (60e6 for per-minute limits).
-- reserve/peek:   ARGV[3i], ARGV[3i+1], ARGV[3i+2] = limit i (> 0), cost i (requests or
--                 tokens; ignored by peek), burst i (0 = no burst limit; requests only).
-- adjust:         ARGV[3i], ARGV[3i+1], ARGV[3i+2] = entry id i, its old cost, its new cost.
--
-- reserve/peek return {allowed (0/1), refused index (0 = none), retry after (us), then per
-- limit: used in the window, remaining now, us until back to its initial state, entry id}.
-- Time comes from Redis so every gateway process agrees.
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000000 + tonumber(t[2])
local mode = ARGV[1]
local window = tonumber(ARGV[2])
-- An entry scored at or before the horizon has left the window: the window is (now - w, now].
local horizon = now - window
-- Float rounding slack for the burst limit's interval (1 ms, far below one request).
local slack = 1000

local function cost_of(member)
  return tonumber(string.match(member, ':(%d+)$'))
end

if mode == 'adjust' then
  for i = 1, #KEYS / 2 do
    local log, meta = KEYS[2 * i - 1], KEYS[2 * i]
    local id, old, new = ARGV[3 * i], tonumber(ARGV[3 * i + 1]), tonumber(ARGV[3 * i + 2])
    local score = redis.call('ZSCORE', log, id .. ':' .. old)
    -- An entry that has left the window already stopped counting: nothing to correct.
    if score and tonumber(score) > horizon and new ~= old then
      redis.call('ZREM', log, id .. ':' .. old)
      redis.call('ZADD', log, score, id .. ':' .. new)
      redis.call('HINCRBY', meta, 'total', new - old)
    end
  end
  return {1}
end

local reserve = mode == 'reserve'
local n = #KEYS / 2
local totals, tats, news = {}, {}, {}
local refused, retry = 0, 0
for i = 1, n do
  local log, meta = KEYS[2 * i - 1], KEYS[2 * i]
  local limit = tonumber(ARGV[3 * i])
  local cost = tonumber(ARGV[3 * i + 1])
  local burst = tonumber(ARGV[3 * i + 2])
  local total = 0
  if reserve then
    -- Drop what left the window; O(entries dropped), each entry is dropped once.
    total = tonumber(redis.call('HGET', meta, 'total') or '0')
    local gone = redis.call('ZRANGEBYSCORE', log, '-inf', horizon)
    if #gone > 0 then
      for _, member in ipairs(gone) do total = total - cost_of(member) end
      redis.call('ZREMRANGEBYSCORE', log, '-inf', horizon)
      if total < 0 then total = 0 end
      redis.call('HSET', meta, 'total', total)
    end
  else
    -- peek writes nothing: sum what is in the window.
    for _, member in ipairs(redis.call('ZRANGEBYSCORE', log, '(' .. horizon, '+inf')) do
      total = total + cost_of(member)
    end
  end
  totals[i] = total

  local wait = 0
  if reserve and total + cost > limit then
    -- Oldest first, until enough has left the window for this cost to fit.
    local excess, start = total + cost - limit, 0
    while wait == 0 do
      local batch = redis.call('ZRANGE', log, start, start + 99, 'WITHSCORES')
      if #batch == 0 then wait = window break end -- not reached while "total" is consistent
      for j = 1, #batch, 2 do
        excess = excess - cost_of(batch[j])
        if excess <= 0 then
          wait = tonumber(batch[j + 1]) + window - now
          break
        end
      end
      start = start + 100
    end
  end

  if burst > 0 then
    local interval = window / limit
    local tat = tonumber(redis.call('HGET', meta, 'tat') or '0')
    if tat < now then tat = now end
    tats[i] = tat
    news[i] = tat + cost * interval
    local burst_wait = news[i] - now - burst * interval
    if reserve and burst_wait > slack and burst_wait > wait then wait = burst_wait end
  end
  if wait > retry then refused, retry = i, wait end
end

local result = {refused == 0 and reserve and 1 or 0, refused, math.ceil(retry)}
for i = 1, n do
  local log, meta = KEYS[2 * i - 1], KEYS[2 * i]
  local limit = tonumber(ARGV[3 * i])
  local cost = tonumber(ARGV[3 * i + 1])
  local burst = tonumber(ARGV[3 * i + 2])
  local id = ''
  if reserve and refused == 0 then
    -- Unique even for simultaneous requests: Redis time plus a per-limit counter.
    id = string.format('%.0f', now) .. '-' .. redis.call('HINCRBY', meta, 'seq', 1)
    redis.call('ZADD', log, now, id .. ':' .. cost)
    totals[i] = redis.call('HINCRBY', meta, 'total', cost)
    if burst > 0 then
      tats[i] = news[i]
      redis.call('HSET', meta, 'tat', string.format('%.17g', news[i]))
    end
    -- The newest entry (and the burst level) is gone after one window: idle keys vanish.
    local ttl_ms = math.ceil(window / 1000) + 1
    redis.call('PEXPIRE', log, ttl_ms)
    redis.call('PEXPIRE', meta, ttl_ms)
  end
  local remaining = limit - totals[i]
  local reset = 0
  local newest = redis.call('ZRANGE', log, -1, -1, 'WITHSCORES')
  if #newest > 0 and tonumber(newest[2]) > horizon then
    reset = tonumber(newest[2]) + window - now
  end
  if burst > 0 then
    local interval = window / limit
    local level = tats[i] - now
    local burst_left = math.floor((burst * interval - level + slack) / interval)
    if burst_left < remaining then remaining = burst_left end
    if level > reset then reset = level end
  end
  if remaining < 0 then remaining = 0 end
  result[3 + 4 * (i - 1) + 1] = totals[i]
  result[3 + 4 * (i - 1) + 2] = remaining
  result[3 + 4 * (i - 1) + 3] = math.ceil(reset)
  result[3 + 4 * (i - 1) + 4] = id
end
return result
