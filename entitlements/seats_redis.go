package entitlements

import (
	"context"
	"errors"
	"fmt"
	"strconv"
	"time"

	"github.com/redis/go-redis/v9"

	"github.com/tollgate-dev/tollgate/internal/store"
)

// The seats of one customer live under its hash tag, so that each script
// below is one atomic step on one Cluster slot:
//
//	P{cus}:seats       sorted set: user -> when the seat was taken (Unix ms)
//	P{cus}:seats:seen  hash: user -> last seen (Unix ms)
//	P{cus}:seats:sync  hash: gen (bumped by every change of the holders),
//	                   applied_gen, applied_qty, attempts (billing.seats_sync)
//
// Global keys: the channel P:seats:released announces releases to every
// replica; P:seats:due (customer -> when its quantity update is due, Unix
// ms) and P:seats:customers (every customer whose holders changed) serve
// billing.seats_sync.

// takeScript gives user a seat if it holds one or one is free: a holder is
// never refused, whatever the limit (-1: no limit) says now. It returns
// {held, used, gen}: gen is the new generation when the user took a seat
// now, 0 otherwise.
var takeScript = redis.NewScript(`
local now = ARGV[3]
if redis.call('ZSCORE', KEYS[1], ARGV[1]) then
  redis.call('HSET', KEYS[2], ARGV[1], now)
  return {1, redis.call('ZCARD', KEYS[1]), 0}
end
local used = redis.call('ZCARD', KEYS[1])
local limit = tonumber(ARGV[2])
if limit >= 0 and used >= limit then
  return {0, used, 0}
end
redis.call('ZADD', KEYS[1], now, ARGV[1])
redis.call('HSET', KEYS[2], ARGV[1], now)
return {1, used + 1, redis.call('HINCRBY', KEYS[3], 'gen', 1)}
`)

// releaseScript frees user's seat. It returns {released, used, gen}.
var releaseScript = redis.NewScript(`
local n = redis.call('ZREM', KEYS[1], ARGV[1])
redis.call('HDEL', KEYS[2], ARGV[1])
local gen = 0
if n == 1 then gen = redis.call('HINCRBY', KEYS[3], 'gen', 1) end
return {n, redis.call('ZCARD', KEYS[1]), gen}
`)

// seatStore is the Redis side of Seats.
type seatStore struct {
	rdb  redis.UniversalClient
	keys store.Keys
}

func (r seatStore) holdersKey(customer string) string { return r.keys.Customer(customer, "seats") }
func (r seatStore) seenKey(customer string) string    { return r.keys.Customer(customer, "seats", "seen") }
func (r seatStore) syncKey(customer string) string    { return r.keys.Customer(customer, "seats", "sync") }
func (r seatStore) channel() string                   { return r.keys.Global("seats", "released") }
func (r seatStore) dueKey() string                    { return r.keys.Global("seats", "due") }
func (r seatStore) indexKey() string                  { return r.keys.Global("seats", "customers") }

func (r seatStore) scriptKeys(customer string) []string {
	return []string{r.holdersKey(customer), r.seenKey(customer), r.syncKey(customer)}
}

// seatAnswer is what a script answered.
type seatAnswer struct {
	ok   bool
	used int64
	gen  int64 // 0: the holders did not change
}

func (r seatStore) run(ctx context.Context, s *redis.Script, customer string, args ...any) (seatAnswer, error) {
	v, err := s.Run(ctx, r.rdb, r.scriptKeys(customer), args...).Int64Slice()
	if err != nil {
		return seatAnswer{}, err
	}
	if len(v) != 3 {
		return seatAnswer{}, fmt.Errorf("seat script answered %d values", len(v))
	}
	return seatAnswer{ok: v[0] == 1, used: v[1], gen: v[2]}, nil
}

func (r seatStore) take(ctx context.Context, customer, user string, limit int64, now time.Time) (seatAnswer, error) {
	return r.run(ctx, takeScript, customer, user, limit, now.UnixMilli())
}

func (r seatStore) release(ctx context.Context, customer, user string) (seatAnswer, error) {
	a, err := r.run(ctx, releaseScript, customer, user)
	if err != nil || !a.ok {
		return a, err
	}
	// After the release is stored: a replica that gets the message and
	// asks Redis sees the seat free.
	return a, r.rdb.Publish(ctx, r.channel(), customer+"\x00"+user).Err()
}

// SeatHolder is one user holding a seat.
type SeatHolder struct {
	User     string    `json:"user"`
	Since    time.Time `json:"since"`
	LastSeen time.Time `json:"last_seen"`
}

// list returns up to max holders, the longest-standing first, and how
// many hold a seat in all.
func (r seatStore) list(ctx context.Context, customer string, max int64) ([]SeatHolder, int64, error) {
	pipe := r.rdb.Pipeline()
	zs := pipe.ZRangeWithScores(ctx, r.holdersKey(customer), 0, max-1)
	n := pipe.ZCard(ctx, r.holdersKey(customer))
	seen := pipe.HGetAll(ctx, r.seenKey(customer))
	if _, err := pipe.Exec(ctx); err != nil && !errors.Is(err, redis.Nil) {
		return nil, 0, fmt.Errorf("entitlements: list seats of %s: %w", customer, err)
	}
	out := make([]SeatHolder, 0, len(zs.Val()))
	for _, z := range zs.Val() {
		user, _ := z.Member.(string)
		h := SeatHolder{User: user, Since: time.UnixMilli(int64(z.Score)).UTC()}
		if ms, err := strconv.ParseInt(seen.Val()[user], 10, 64); err == nil {
			h.LastSeen = time.UnixMilli(ms).UTC()
		}
		out = append(out, h)
	}
	return out, n.Val(), nil
}

// inUse counts the holders of each customer (one pipeline).
func (r seatStore) inUse(ctx context.Context, customers []string) (map[string]int64, error) {
	pipe := r.rdb.Pipeline()
	cmds := make([]*redis.IntCmd, len(customers))
	for i, c := range customers {
		cmds[i] = pipe.ZCard(ctx, r.holdersKey(c))
	}
	if _, err := pipe.Exec(ctx); err != nil {
		return nil, fmt.Errorf("entitlements: count seats: %w", err)
	}
	out := make(map[string]int64, len(customers))
	for i, cmd := range cmds {
		if n := cmd.Val(); n > 0 {
			out[customers[i]] = n
		}
	}
	return out, nil
}
