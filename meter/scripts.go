package meter

import (
	"strconv"
	"time"

	"github.com/redis/go-redis/v9"
)

// The scripts never do arithmetic on a stored value before checking it
// (countScript's count): Redis Lua numbers are doubles, and issue 9 showed
// what a wrapped or rounded total does. Every check comes before the first
// write, because Redis does not undo a script's writes when it fails.

// flushScript applies one chunk of counts, once: ARGV[2] is the replica's
// flush sequence number, recorded in the marker hash KEYS[1], so a chunk
// sent again after an unknown outcome is skipped (0).
//
// It first checks every entry: each stored total it will add to must be a
// valid count (or absent) and stay at most MaxTotal, and each key must be
// of its type. A customer that fails any check is refused, and then
// nothing at all is written: the answer is {customer, reason, detail, ...}
// and the caller sends the chunk again without those customers (under the
// same number, since it was not recorded). Otherwise it writes the counts,
// then the marker, last, and answers 1.
//
// With ARGV[4] == "1", KEYS[2] (due) and KEYS[3] (customers) are updated
// too (single Redis); on Cluster they are in another slot and the caller
// updates them after the script. A global key of the wrong type fails the
// whole chunk (an error reply, nothing written).
var flushScript = redis.NewScript(countScript + `
local replica, seq, now, global, ttl, gen = ARGV[1], tonumber(ARGV[2]), tonumber(ARGV[3]), ARGV[4] == '1', ARGV[5], ARGV[6]
local marker = KEYS[1]
local last = redis.pcall('HGET', marker, replica)
if type(last) == 'table' then
  if global then return redis.error_reply('TGCORRUPT ' .. marker .. ' is not a hash') end
  return {ARGV[7], 'corrupt', marker .. ' is not a hash'}
end
if last then
  local s = tonumber(string.match(last, '^(%d+)'))
  if s and s >= seq then return 0 end
end
local first = 2
if global then
  first = 4
  if type(redis.pcall('ZSCORE', KEYS[2], '')) == 'table' then return redis.error_reply('TGCORRUPT ' .. KEYS[2] .. ' is not a sorted set') end
  if type(redis.pcall('SISMEMBER', KEYS[3], '')) == 'table' then return redis.error_reply('TGCORRUPT ' .. KEYS[3] .. ' is not a set') end
end

local refused, out, sums = {}, {}, {}
local function refuse(cus, reason, detail)
  if refused[cus] then return end
  refused[cus] = true
  out[#out+1], out[#out+2], out[#out+3] = cus, reason, detail
end
-- add checks that units can be added to field of hash key, counting what
-- earlier entries of the chunk add to the same field.
local function add(cus, key, field, units)
  local id = key .. '\n' .. field
  local cur = sums[id]
  if cur == nil then
    local v = redis.pcall('HGET', key, field)
    if type(v) == 'table' then return refuse(cus, 'corrupt', key .. ' is not a hash') end
    cur = count(v)
    if cur == nil then return refuse(cus, 'corrupt', key .. ' ' .. field .. ' is not a count') end
  end
  if cur > MAX - units then return refuse(cus, 'overflow', key .. ' ' .. field .. ' would pass ' .. MAXS) end
  sums[id] = cur + units
end

local k, a = first, 7
while a <= #ARGV do
  local cus, meter, ws, units, bucket = ARGV[a], ARGV[a+1], ARGV[a+2], count(ARGV[a+4]), ARGV[a+5]
  if not units or units == 0 then
    refuse(cus, 'corrupt', 'units ' .. ARGV[a+4])
  else
    add(cus, KEYS[k], 'counted', units)
    if type(redis.pcall('ZSCORE', KEYS[k+1], '')) == 'table' then refuse(cus, 'corrupt', KEYS[k+1] .. ' is not a sorted set') end
    add(cus, KEYS[k+2], meter .. ':counted', units)
    add(cus, KEYS[k+3], bucket, units)
  end
  k, a = k + 4, a + 6
end
if #out > 0 then return out end

k, a = first, 7
while a <= #ARGV do
  local cus, meter, ws, we, units, bucket = ARGV[a], ARGV[a+1], ARGV[a+2], ARGV[a+3], ARGV[a+4], ARGV[a+5]
  local win, open, totals, rollup = KEYS[k], KEYS[k+1], KEYS[k+2], KEYS[k+3]
  redis.call('HSETNX', win, 'gen', gen)
  redis.call('HINCRBY', win, 'counted', units)
  redis.call('PERSIST', win)
  redis.call('ZADD', open, we, meter .. ':' .. ws)
  redis.call('HINCRBY', totals, meter .. ':counted', units)
  redis.call('HINCRBY', rollup, bucket, units)
  redis.call('EXPIRE', rollup, ttl)
  if global then
    local s = redis.call('ZSCORE', KEYS[2], cus)
    if (not s) or tonumber(s) > tonumber(we) then redis.call('ZADD', KEYS[2], we, cus) end
    redis.call('SADD', KEYS[3], cus)
  end
  k, a = k + 4, a + 6
end
redis.call('HSET', marker, replica, ARGV[2] .. ':' .. ARGV[3])
redis.call('EXPIRE', marker, 2592000)
if redis.call('HLEN', marker) > 32 then
  local all = redis.call('HGETALL', marker)
  for i = 1, #all, 2 do
    local t = tonumber(string.match(all[i+1], ':(%d+)$'))
    if t and t < now - ` + strconv.Itoa(int(markerTrimAge/time.Second)) + ` then redis.call('HDEL', marker, all[i]) end
  end
end
return 1
`)

// beginScript records the intent to report a window, or returns the intent
// already recorded: {1, gen, seq, units, since}. With nothing left to
// report the window leaves the open index and expires after the retention:
// {2}. A window that no longer exists leaves the index: {0}. A window whose
// fields are not valid counts (or whose reported and parked exceed its
// counted) is refused with a TGCORRUPT error and left as it is: reading it
// as 0 would bill its units again.
var beginScript = redis.NewScript(countScript + `
local t = redis.call('TYPE', KEYS[1])['ok']
if t == 'none' then
  redis.call('ZREM', KEYS[2], ARGV[1])
  return {0}
end
if t ~= 'hash' then return redis.error_reply('TGCORRUPT ' .. KEYS[1] .. ' is a ' .. t .. ', not a hash') end
local h = redis.call('HMGET', KEYS[1], 'counted', 'reported', 'parked', 'seq', 'inflight_seq', 'inflight_units', 'gen', 'inflight_at')
local counted, reported, parked, seq = count(h[1]), count(h[2]), count(h[3]), count(h[4])
if not (counted and reported and parked and seq) or reported > counted or parked > counted - reported then
  return redis.error_reply('TGCORRUPT ' .. KEYS[1] .. ': counted, reported, parked or seq is not a valid count')
end
local gen = h[7] or ''
if h[5] then
  local iseq, iunits, iat = count(h[5]), count(h[6]), count(h[8])
  if not (iseq and iunits and iat) or iunits == 0 then
    return redis.error_reply('TGCORRUPT ' .. KEYS[1] .. ': the recorded intent is not a valid count')
  end
  return {1, gen, iseq, iunits, iat}
end
local rest = counted - reported - parked
if rest > 0 then
  seq = seq + 1
  redis.call('HSET', KEYS[1], 'seq', seq, 'inflight_seq', seq, 'inflight_units', rest, 'inflight_at', ARGV[3])
  return {1, gen, seq, rest, tonumber(ARGV[3])}
end
redis.call('ZREM', KEYS[2], ARGV[1])
redis.call('EXPIRE', KEYS[1], ARGV[2])
return {2}
`)

// settleScript ends the recorded intent ARGV[1] (a sequence number) as
// reported or, with KEYS[3] given, as parked with the record ARGV[4] under
// field ARGV[3]. It returns the units settled, 0 if that intent was already
// settled (by this or another batcher). A field that is not a valid count,
// or an add past MaxTotal, fails it before any write (TGCORRUPT,
// TGOVERFLOW): the intent stays, to be settled once repaired.
var settleScript = redis.NewScript(countScript + `
local function read(key, field)
  local v = redis.pcall('HGET', key, field)
  if type(v) == 'table' then return nil end
  return count(v)
end
local cur = redis.pcall('HGET', KEYS[1], 'inflight_seq')
if type(cur) == 'table' then return redis.error_reply('TGCORRUPT ' .. KEYS[1] .. ' is not a hash') end
if cur ~= ARGV[1] then return 0 end
local field = 'reported'
if KEYS[3] then field = 'parked' end
local tfield = ARGV[2] .. ':' .. field
local u, have, total = read(KEYS[1], 'inflight_units'), read(KEYS[1], field), read(KEYS[2], tfield)
if not (u and have and total) or u == 0 then
  return redis.error_reply('TGCORRUPT ' .. KEYS[1] .. ' ' .. field .. ' or ' .. KEYS[2] .. ' ' .. tfield .. ' is not a valid count')
end
if have > MAX - u or total > MAX - u then
  return redis.error_reply('TGOVERFLOW ' .. KEYS[1] .. ' ' .. field .. ' or ' .. KEYS[2] .. ' ' .. tfield .. ' would pass ' .. MAXS)
end
if KEYS[3] then
  if type(redis.pcall('HEXISTS', KEYS[3], ARGV[3])) == 'table' then return redis.error_reply('TGCORRUPT ' .. KEYS[3] .. ' is not a hash') end
  redis.call('HSET', KEYS[3], ARGV[3], ARGV[4])
end
redis.call('HINCRBY', KEYS[1], field, u)
redis.call('HDEL', KEYS[1], 'inflight_seq', 'inflight_units', 'inflight_at')
redis.call('HINCRBY', KEYS[2], tfield, u)
return u
`)
