"""The Lua scripts that change the shared counters: each runs atomically in Redis (or on
the in-process fake), so concurrent gateway processes never interleave inside one."""

RESERVE = """
local worst = tonumber(ARGV[3])
local tokens = tonumber(ARGV[4])
local rpm = tonumber(ARGV[5])
local tpm = tonumber(ARGV[6])
local w = tonumber(ARGV[7])
local n = tonumber(ARGV[8])
local ttl = tonumber(ARGV[9])
for i = 1, n do
  local value = redis.call('GET', KEYS[6 + 2*i - 1])
  if not value then return {'init', i} end
  local reserved = tonumber(redis.call('GET', KEYS[6 + 2*i]) or '0')
  local available
  if ARGV[9 + 2*i - 1] == 'cap' then
    available = tonumber(ARGV[9 + 2*i]) - tonumber(value) - reserved
  else
    available = tonumber(value) - reserved
  end
  if worst > available then return {'deny', i, tostring(available)} end
end
local rpm_left, tpm_left = -1, -1
if rpm > 0 then
  local used = tonumber(redis.call('GET', KEYS[4]) or '0') * w + tonumber(redis.call('GET', KEYS[3]) or '0')
  if used + 1 > rpm then return {'rate', 'requests', tostring(math.max(0, rpm - used))} end
  rpm_left = math.floor(rpm - used - 1)
end
if tpm > 0 then
  local used = tonumber(redis.call('GET', KEYS[6]) or '0') * w + tonumber(redis.call('GET', KEYS[5]) or '0')
  if used + tokens > tpm then return {'rate', 'tokens', tostring(math.max(0, tpm - used))} end
  tpm_left = math.floor(tpm - used - tokens)
end
local reserved_keys = {}
for i = 1, n do
  redis.call('INCRBY', KEYS[6 + 2*i], worst)
  redis.call('EXPIRE', KEYS[6 + 2*i], ttl)
  redis.call('EXPIRE', KEYS[6 + 2*i - 1], ttl)
  reserved_keys[i] = KEYS[6 + 2*i]
end
if rpm > 0 then redis.call('INCR', KEYS[3]); redis.call('EXPIRE', KEYS[3], 180) end
if tpm > 0 then redis.call('INCRBY', KEYS[5], tokens); redis.call('EXPIRE', KEYS[5], 180) end
redis.call('HSET', KEYS[1], 'worst', worst, 'tokens', tokens, 'tpm_key', tpm > 0 and KEYS[5] or '',
           'reserved_keys', table.concat(reserved_keys, ' '))
redis.call('EXPIRE', KEYS[1], ttl)
redis.call('ZADD', KEYS[2], ARGV[2], ARGV[1])
return {'ok', tostring(rpm_left), tostring(tpm_left)}
"""

SETTLE = """
local held = redis.call('EXISTS', KEYS[1]) == 1
local worst, held_tokens = 0, 0
if held then
  worst = tonumber(redis.call('HGET', KEYS[1], 'worst'))
  held_tokens = tonumber(redis.call('HGET', KEYS[1], 'tokens'))
end
local actual = tonumber(ARGV[2])
local n = tonumber(ARGV[4])
for i = 1, n do
  local base = 2 + 3 * (i - 1)
  redis.call('INCR', KEYS[base + 3])
  redis.call('EXPIRE', KEYS[base + 3], tonumber(ARGV[5 + n]))
  if held and redis.call('DECRBY', KEYS[base + 2], worst) < 0 then redis.call('SET', KEYS[base + 2], 0) end
  if actual ~= 0 and redis.call('EXISTS', KEYS[base + 1]) == 1 then
    if not held then
      -- reaped or lost in a flush: a rebuild may or may not have counted this request, so
      -- drop the counter and let the ledger decide
      redis.call('DEL', KEYS[base + 1])
    elseif ARGV[4 + i] == 'cap' then redis.call('INCRBY', KEYS[base + 1], actual)
    else redis.call('DECRBY', KEYS[base + 1], actual) end
  end
end
if held then
  local tpm_key = redis.call('HGET', KEYS[1], 'tpm_key')
  if tpm_key and tpm_key ~= '' and redis.call('EXISTS', tpm_key) == 1 then
    if redis.call('INCRBY', tpm_key, tonumber(ARGV[3]) - held_tokens) < 0 then redis.call('SET', tpm_key, 0, 'KEEPTTL') end
  end
  redis.call('DEL', KEYS[1])
end
redis.call('ZREM', KEYS[2], ARGV[1])
return held and 1 or 0
"""

# Rebuild a counter from the database, unless a settle bumped its version meanwhile.
INIT = """
if (redis.call('GET', KEYS[2]) or '') ~= ARGV[1] then return 0 end
if ARGV[4] == 'force' then redis.call('SET', KEYS[1], ARGV[2], 'EX', tonumber(ARGV[3]))
else redis.call('SET', KEYS[1], ARGV[2], 'NX', 'EX', tonumber(ARGV[3])) end
return 1
"""

# Release reservations of requests that never settled (their process died).
REAP = """
local expired = redis.call('ZRANGEBYSCORE', KEYS[1], '-inf', ARGV[1], 'LIMIT', 0, 500)
for _, gen in ipairs(expired) do
  local res = 'th:res:' .. gen
  local worst = tonumber(redis.call('HGET', res, 'worst') or '0')
  local keys = redis.call('HGET', res, 'reserved_keys') or ''
  for key in string.gmatch(keys, '%S+') do
    if redis.call('DECRBY', key, worst) < 0 then redis.call('SET', key, 0) end
    -- its process died between commit and settle, perhaps: rebuild the counter from the ledger
    local prefix = string.sub(key, 1, -10)
    redis.call('INCR', prefix .. ':ver')
    redis.call('DEL', prefix .. ':spent', prefix .. ':balance')
  end
  redis.call('DEL', res)
  redis.call('ZREM', KEYS[1], gen)
end
return #expired
"""

ALL = {"reserve": RESERVE, "settle": SETTLE, "init": INIT, "reap": REAP}
