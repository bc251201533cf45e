-- The account's free calls this minute and today, shared by the router's replicas
-- (free_counter.py).
-- KEYS: this minute's count, today's count.
-- ARGV: per-minute limit, per-day limit, minute key TTL s, day key TTL s, action; then, for
--       the minute and for the day: the calls this replica counted while Redis was away, and
--       the least the count can be (what this replica knows of; a Redis that restarted empty
--       has forgotten it).
-- Actions: "take" counts one call when both counts are under their limits; "spent_minute" and
-- "spent_day" raise a count to its limit (OpenRouter said it is spent); "peek" only reads.
-- Returns {1 if a call was counted else 0, minute count, day count}.
local limits = {tonumber(ARGV[1]), tonumber(ARGV[2])}
local ttls = {ARGV[3], ARGV[4]}
local action = ARGV[5]
local stored, counts = {}, {}
for i = 1, 2 do
  stored[i] = tonumber(redis.call('GET', KEYS[i]) or '0')
  counts[i] = math.max(stored[i] + tonumber(ARGV[4 + 2 * i]), tonumber(ARGV[5 + 2 * i]))
end

local granted = 0
if action == 'take' and counts[1] < limits[1] and counts[2] < limits[2] then
  granted = 1
  counts[1], counts[2] = counts[1] + 1, counts[2] + 1
elseif action == 'spent_minute' then
  counts[1] = math.max(counts[1], limits[1])
elseif action == 'spent_day' then
  counts[2] = math.max(counts[2], limits[2])
end

for i = 1, 2 do
  if counts[i] ~= stored[i] then
    redis.call('SET', KEYS[i], counts[i], 'EX', ttls[i])
  end
end
return {granted, counts[1], counts[2]}
