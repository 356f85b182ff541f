package meter

import (
	"context"
	"errors"
	"fmt"
	"strconv"
	"time"

	"github.com/redis/go-redis/v9"
)

// Quota ledger layout (P is redis.prefix, C a customer, {C} its Cluster hash
// tag, S the billing period's start in Unix seconds):
//
//	P{C}:quota:<meter>:S          hash: used (units served in the period, as
//	                              reported by the replicas; opened from the
//	                              meter's count), r:<lease> = "<cumulative
//	                              units>:<call seq>" per share, so that a call
//	                              repeated after an unknown outcome counts
//	                              nothing twice
//	P{C}:quota:<meter>:S:leases   hash lease → "<units held>:<expiry, Unix ms>"
//
// Both keys expire a week after the period ends. What a customer may still
// be admitted is limit - used - Σ held over the leases that have not
// expired; only leaseScript changes them.

// leaseScript is every quota operation: it reports a share's usage
// (cumulative, so idempotent), sets the units the share still holds,
// optionally grants more, and renews the share's lease, all at once.
//
// KEYS: ledger, leases. ARGV: 1 lease id, 2 call seq, 3 units served so far
// (cumulative), 4 of which the ledger acknowledged, 5 units the share holds,
// 6 units needed now (0: no grant), 7 units wanted, 8 limit, 9 lease TTL ms,
// 10 key expiry (Unix s), 11 share divisor, 12 units to open a missing
// ledger with ("": do not open it).
//
// Returns {-1} when the ledger is missing and ARGV[12] is "", else {status,
// granted, backed, used, held by other leases, free}: status 1 applied, 0 a
// stale or repeated call (nothing changed); backed is how much of ARGV[5]
// the ledger still holds for this share (less only when the lease had
// expired and the pool could not hold it all again); free is what no share
// holds (negative when the quota was overrun).
//
// A share with no r: field yet is new, or its ledger was lost and opened
// again from the meter's count: then ARGV[4] says what is already in.
//
// Arithmetic (issue 9): Redis Lua numbers are doubles, exact up to 2^53.
// Every argument and every stored value is read with countScript's count,
// an integer in [0, MaxTotal], before anything is written: an argument out
// of range is refused (TGINVALID), a ledger field that is not a count, or a
// key of the wrong type, fails the call (TGCORRUPT) and leaves the ledger
// as it is, so a damaged ledger refuses its customer instead of reading as
// 0 and opening the quota again. Sums saturate at MaxTotal (sat): used past
// it means the quota is closed, which MaxTotal says as well, and every
// difference of two values in [0, MaxTotal] is exact. Numbers are written
// with %d, because tostring would write 1e+15.
var leaseScript = redis.NewScript(countScript + `
local function sat(a, b)
  if a > MAX - b then return MAX end
  return a + b
end
local function corrupt(what) return redis.error_reply('TGCORRUPT ' .. what) end
local id, init = ARGV[1], ARGV[12]
local seq, cum, base, hold = count(ARGV[2]), count(ARGV[3]), count(ARGV[4]), count(ARGV[5])
local need, want, limit = count(ARGV[6]), count(ARGV[7]), count(ARGV[8])
local ttl, expat, div = count(ARGV[9]), count(ARGV[10]), count(ARGV[11])
if not (seq and cum and base and hold and need and want and limit and ttl and expat and div) or div == 0 or
   (init ~= '' and not count(init)) then
  return redis.error_reply('TGINVALID lease call arguments are not counts in [0, ' .. MAXS .. ']')
end
local led, lea = KEYS[1], KEYS[2]
local lt, at = redis.call('TYPE', led)['ok'], redis.call('TYPE', lea)['ok']
if lt ~= 'none' and lt ~= 'hash' then return corrupt(led .. ' is a ' .. lt .. ', not a hash') end
local open = lt == 'none'
if open and init == '' then return {-1} end
if not open and at ~= 'none' and at ~= 'hash' then return corrupt(lea .. ' is a ' .. at .. ', not a hash') end
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)

-- Read and check everything first.
local used, rcum, rseq = count(init), base, 0
local others, mine, exists, expired = 0, 0, false, {}
if not open then
  local h = redis.call('HMGET', led, 'used', 'r:' .. id)
  used = count(h[1] or '')
  if not used then return corrupt(led .. ' used is not a count') end
  if h[2] then
    local a, b = string.match(h[2], '^(%d+):(%d+)$')
    rcum, rseq = count(a or ''), count(b or '')
    if not (rcum and rseq) then return corrupt(led .. ' r:' .. id .. ' is not <units>:<seq>') end
  end
  local all = {}
  if at == 'hash' then all = redis.call('HGETALL', lea) end
  for i = 1, #all, 2 do
    local a, b = string.match(all[i+1], '^(%d+):(%d+)$')
    local held, exp = count(a or ''), count(b or '')
    if not (held and exp) then return corrupt(lea .. ' ' .. all[i] .. ' is not <units>:<expiry>') end
    if exp <= now then
      expired[#expired+1] = all[i]
    elseif all[i] == id then
      mine, exists = held, true
    else
      others = sat(others, held)
    end
  end
end
if seq <= rseq then
  return {0, 0, mine, used, others, limit - sat(sat(used, others), mine)}
end

-- Then decide: taken is what is used or held, saturated; free = limit -
-- taken is exact and in [-MAX, MAX].
if cum > rcum then used = sat(used, cum - rcum) end
local taken = sat(used, others)
-- A share holds again at most what the ledger holds for it plus what is
-- free (all of it while its lease is valid: hold never exceeds mine).
local backed = math.max(0, math.min(hold, sat(mine, math.max(0, limit - taken))))
taken = sat(taken, backed)
local free = limit - taken
local g = 0
if need > 0 and free >= need then
  g = math.min(free, math.max(want, math.floor(free / div)))
end
free = free - g
local lease = backed + g -- at most limit when g > 0, backed otherwise

-- Then write.
if open then redis.call('DEL', lea) end
for _, f in ipairs(expired) do redis.call('HDEL', lea, f) end
if lease > 0 then
  redis.call('HSET', lea, id, string.format('%d:%d', lease, now + ttl))
else
  redis.call('HDEL', lea, id)
end
redis.call('HSET', led, 'used', string.format('%d', used), 'r:' .. id, string.format('%d:%d', math.max(cum, rcum), seq))
redis.call('EXPIREAT', led, expat)
redis.call('EXPIREAT', lea, expat)
return {1, g, backed, used, others, free}
`)

// Lease call statuses.
const (
	leaseMissing = -1 // the ledger does not exist: open it from the meter
	leaseStale   = 0  // a repeated or overtaken call: nothing changed
	leaseApplied = 1
)

// maxQuotaUnits bounds limits and counts sent to the ledger: MaxTotal, the
// largest count Lua's doubles hold exactly (config.MaxLimit, the largest
// plan limit, is the same). A larger limit from a caller is read as it; a
// larger count saturates at it (the quota is closed).
const maxQuotaUnits = MaxTotal

// shareDivisor sizes shares: a grant takes at least 1/shareDivisor of what
// is free, so a replica far from the limit asks rarely, and grants shrink
// with the remainder, to exactly what requests need once fewer than
// shareDivisor units are free.
const shareDivisor = 64

// leaseCall is one call of leaseScript for a share.
type leaseCall struct {
	s          *Share
	seq        int64
	cum, base  int64
	hold       int64
	need, want int64
	limit      int64
	init       string
	sent       time.Duration // monotonic time the call was sent, for the lease's local expiry
	final      bool          // the share's last call (shutdown)
}

// leaseReply is leaseScript's answer.
type leaseReply struct {
	status                              int64
	granted, backed, used, others, free int64
}

func (q *Quotas) ledgerKeys(k shareKey) []string {
	led := q.keys.Customer(k.customer, "quota", k.meter, strconv.FormatInt(k.period, 10))
	return []string{led, led + ":leases"}
}

func (q *Quotas) leaseArgs(c *leaseCall) []any {
	s := c.s
	return []any{s.id, c.seq, c.cum, c.base, c.hold, c.need, c.want, c.limit,
		q.ttl.Milliseconds(), s.expireAt, shareDivisor, c.init}
}

// call runs one lease call on the request path (a grant).
func (q *Quotas) call(ctx context.Context, c *leaseCall) (leaseReply, error) {
	res, err := leaseScript.Run(ctx, q.rdb, q.ledgerKeys(c.s.key), q.leaseArgs(c)...).Int64Slice()
	if err != nil && !errors.Is(err, redis.Nil) {
		return leaseReply{}, fmt.Errorf("meter: quota lease %s: %w", c.s.key, scriptError(err))
	}
	return parseLease(c, res, err)
}

// callAll runs background lease calls in one pipeline (one round trip on a
// single Redis; one per node on Cluster).
func (q *Quotas) callAll(ctx context.Context, calls []*leaseCall) ([]leaseReply, []error) {
	replies, errs := make([]leaseReply, len(calls)), make([]error, len(calls))
	cmds := make([]*redis.Cmd, len(calls))
	_, _ = q.rdb.Pipelined(ctx, func(p redis.Pipeliner) error {
		for i, c := range calls {
			cmds[i] = leaseScript.EvalSha(ctx, p, q.ledgerKeys(c.s.key), q.leaseArgs(c)...)
		}
		return nil
	})
	for i, cmd := range cmds {
		if err := cmd.Err(); err != nil && redis.HasErrorPrefix(err, "NOSCRIPT") {
			// Not executed: the script is not loaded (a new or restarted
			// Redis). Run loads it.
			cmd = leaseScript.Run(ctx, q.rdb, q.ledgerKeys(calls[i].s.key), q.leaseArgs(calls[i])...)
		}
		res, err := cmd.Int64Slice()
		if err != nil && !errors.Is(err, redis.Nil) {
			errs[i] = fmt.Errorf("meter: quota lease %s: %w", calls[i].s.key, scriptError(err))
			continue
		}
		replies[i], errs[i] = parseLease(calls[i], res, err)
	}
	return replies, errs
}

// parseLease reads leaseScript's answer to c, and refuses one out of range
// (which only a script other than leaseScript could send) rather than add
// it to a share.
func parseLease(c *leaseCall, res []int64, err error) (leaseReply, error) {
	if err != nil {
		return leaseReply{}, err
	}
	if len(res) >= 1 && res[0] == leaseMissing {
		return leaseReply{status: leaseMissing}, nil
	}
	if len(res) < 6 {
		return leaseReply{}, fmt.Errorf("meter: quota lease: unexpected reply %v", res)
	}
	r := leaseReply{status: res[0], granted: res[1], backed: res[2], used: res[3], others: res[4], free: res[5]}
	count := func(n int64) bool { return n >= 0 && n <= MaxTotal }
	if r.status != leaseStale && r.status != leaseApplied || !count(r.granted) || !count(r.used) || !count(r.others) ||
		r.backed < 0 || r.status == leaseApplied && r.backed > c.hold || r.free < -MaxTotal || r.free > MaxTotal {
		return leaseReply{}, fmt.Errorf("meter: quota lease: reply out of range %v", res)
	}
	return r, nil
}
