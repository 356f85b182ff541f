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
// holds.
//
// A share with no r: field yet is new, or its ledger was lost and opened
// again from the meter's count: then ARGV[4] says what is already in.
//
// Lua numbers are doubles: every value stays far below 2^53 (limits are
// clamped to maxQuotaUnits), and every number written is formatted with %d,
// because tostring would write 1e+15.
var leaseScript = redis.NewScript(`
local id, seq, cum, base = ARGV[1], tonumber(ARGV[2]), tonumber(ARGV[3]), tonumber(ARGV[4])
local hold, need, want, limit = tonumber(ARGV[5]), tonumber(ARGV[6]), tonumber(ARGV[7]), tonumber(ARGV[8])
local ttl, div, init = tonumber(ARGV[9]), tonumber(ARGV[11]), ARGV[12]
local led, lea = KEYS[1], KEYS[2]
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
if redis.call('EXISTS', led) == 0 then
  if init == '' then return {-1} end
  redis.call('DEL', lea)
  redis.call('HSET', led, 'used', init)
end
local used = tonumber(redis.call('HGET', led, 'used')) or 0
local others, mine, exists = 0, 0, false
local all = redis.call('HGETALL', lea)
for i = 1, #all, 2 do
  local h, e = string.match(all[i+1], '^(%d+):(%d+)$')
  h, e = tonumber(h), tonumber(e)
  if (not h) or e <= now then
    redis.call('HDEL', lea, all[i])
  elseif all[i] == id then
    mine, exists = h, true
  else
    others = others + h
  end
end
local rcum, rseq = base, 0
local r = redis.call('HGET', led, 'r:' .. id)
if r then
  local a, b = string.match(r, '^(%d+):(%d+)$')
  rcum, rseq = tonumber(a) or base, tonumber(b) or 0
end
if seq <= rseq then
  return {0, 0, mine, used, others, limit - used - others - mine}
end
if cum > rcum then used = used + cum - rcum end
local free = limit - used - others
local backed = hold
if not exists then backed = math.max(0, math.min(hold, free)) end
free = free - backed
local g = 0
if need > 0 and free >= need then
  g = math.min(free, math.max(want, math.floor(free / div)))
end
free = free - g
local lease = backed + g
if lease > 0 then
  redis.call('HSET', lea, id, string.format('%d:%d', lease, now + ttl))
else
  redis.call('HDEL', lea, id)
end
redis.call('HSET', led, 'used', string.format('%d', used), 'r:' .. id, string.format('%d:%d', math.max(cum, rcum), seq))
redis.call('EXPIREAT', led, ARGV[10])
redis.call('EXPIREAT', lea, ARGV[10])
return {1, g, backed, used, others, free}
`)

// Lease call statuses.
const (
	leaseMissing = -1 // the ledger does not exist: open it from the meter
	leaseStale   = 0  // a repeated or overtaken call: nothing changed
	leaseApplied = 1
)

// maxQuotaUnits clamps limits and counts sent to the ledger, whose Lua
// numbers are exact only below 2^53. A limit this large is no limit.
const maxQuotaUnits = 1 << 50

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
		return leaseReply{}, fmt.Errorf("meter: quota lease %s: %w", c.s.key, err)
	}
	return parseLease(res, err)
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
			errs[i] = fmt.Errorf("meter: quota lease %s: %w", calls[i].s.key, err)
			continue
		}
		replies[i], errs[i] = parseLease(res, err)
	}
	return replies, errs
}

// parseLease reads leaseScript's answer.
func parseLease(res []int64, err error) (leaseReply, error) {
	if err != nil {
		return leaseReply{}, err
	}
	if len(res) >= 1 && res[0] == leaseMissing {
		return leaseReply{status: leaseMissing}, nil
	}
	if len(res) < 6 {
		return leaseReply{}, fmt.Errorf("meter: quota lease: unexpected reply %v", res)
	}
	return leaseReply{status: res[0], granted: res[1], backed: res[2], used: res[3], others: res[4], free: res[5]}, nil
}
