-- A replica's refreshed catalogue, shared with the others unless a newer one is already
-- (shared_state.py).
-- KEYS: the catalogue, its version ("<version> <fetched at, Unix seconds>").
-- ARGV: the catalogue as JSON, its version text, its fetch time.
-- Returns 1 when it was written, 0 when the shared one was fetched at the same time or later.
local current = redis.call('GET', KEYS[2])
if current then
  local fetched_at = tonumber(string.match(current, '(%S+)$'))
  if fetched_at and fetched_at >= tonumber(ARGV[3]) then
    return 0
  end
end
redis.call('SET', KEYS[1], ARGV[1])
redis.call('SET', KEYS[2], ARGV[2])
return 1
