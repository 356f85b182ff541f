package webhook

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"time"

	"github.com/redis/go-redis/v9"

	"github.com/tollgate-dev/tollgate/internal/store"
)

// Queue is the durable queue of events to forward, shared by every
// replica: a sorted set of event ids scored by when each is next due
// (unix ms), a hash of the queued items, and a dead-letter list. Every key
// carries the {webhook-forward} hash tag, so the scripts that touch several
// of them stay atomic on Redis Cluster too.
//
// A worker claims the earliest due item by moving its score a lease into
// the future; if the worker dies, the lease runs out and any replica's
// worker claims it again (at-least-once). Enqueueing an event already
// queued changes nothing.
type Queue struct {
	rdb              redis.UniversalClient
	due, items, dead string
}

// maxDeadLetters bounds the dead-letter list (the oldest are dropped).
const maxDeadLetters = 10000

// NewQueue returns the forwarding queue on an open store connection.
func NewQueue(rdb redis.UniversalClient, keys store.Keys) *Queue {
	return &Queue{
		rdb:   rdb,
		due:   keys.Global("{webhook-forward}", "due"),
		items: keys.Global("{webhook-forward}", "items"),
		dead:  keys.Global("{webhook-forward}", "dead"),
	}
}

// item is one queued event.
type item struct {
	ID        string    `json:"id"`
	Type      string    `json:"type"`
	Body      []byte    `json:"body"` // exactly as Stripe sent it
	Attempts  int       `json:"attempts"`
	Enqueued  time.Time `json:"enqueued"`
	LastError string    `json:"last_error,omitempty"`
	lease     int64     // the claim's score, unix ms
}

// DeadLetter is an event whose forwarding was given up.
type DeadLetter struct {
	ID        string    `json:"id"`
	Type      string    `json:"type"`
	Body      []byte    `json:"body"`
	Attempts  int       `json:"attempts"`
	Enqueued  time.Time `json:"enqueued"`
	LastError string    `json:"last_error"`
	Buried    time.Time `json:"buried"`
}

// Enqueue queues an event for forwarding, due now.
func (q *Queue) Enqueue(ctx context.Context, id, typ string, body []byte) error {
	now := time.Now()
	b, err := json.Marshal(item{ID: id, Type: typ, Body: body, Enqueued: now.UTC()})
	if err != nil {
		return err
	}
	_, err = q.rdb.TxPipelined(ctx, func(p redis.Pipeliner) error {
		p.HSetNX(ctx, q.items, id, b)
		p.ZAddNX(ctx, q.due, redis.Z{Score: float64(now.UnixMilli()), Member: id})
		return nil
	})
	if err != nil {
		return fmt.Errorf("webhook: queue %s for forwarding: %w", id, err)
	}
	return nil
}

// claimScript leases the earliest due item: KEYS due, items; ARGV now
// (ms), lease end (ms). It returns {id, item or false}, or false.
var claimScript = redis.NewScript(`
local ids = redis.call('ZRANGEBYSCORE', KEYS[1], '-inf', ARGV[1], 'LIMIT', 0, 1)
if #ids == 0 then return false end
redis.call('ZADD', KEYS[1], ARGV[2], ids[1])
return {ids[1], redis.call('HGET', KEYS[2], ids[1])}`)

// claim leases the earliest due item until now+lease; nil when none is due.
func (q *Queue) claim(ctx context.Context, now time.Time, lease time.Duration) (*item, error) {
	until := now.Add(lease).UnixMilli()
	res, err := claimScript.Run(ctx, q.rdb, []string{q.due, q.items}, now.UnixMilli(), until).Slice()
	if errors.Is(err, redis.Nil) {
		return nil, nil
	}
	if err != nil {
		return nil, fmt.Errorf("webhook: claim a forward: %w", err)
	}
	id, _ := res[0].(string)
	raw, _ := res[1].(string)
	var it item
	if err := json.Unmarshal([]byte(raw), &it); err != nil || it.ID != id {
		// An id without its item cannot be delivered: drop it.
		return nil, errors.Join(fmt.Errorf("webhook: queued forward %s is unreadable, dropped", id), q.done(ctx, id))
	}
	it.lease = until
	return &it, nil
}

// done removes a delivered item.
func (q *Queue) done(ctx context.Context, id string) error {
	_, err := q.rdb.TxPipelined(ctx, func(p redis.Pipeliner) error {
		p.ZRem(ctx, q.due, id)
		p.HDel(ctx, q.items, id)
		return nil
	})
	return err
}

// retryScript reschedules an item if the caller's lease is still the
// current one: KEYS due, items; ARGV id, lease, item, next due.
var retryScript = redis.NewScript(`
if tonumber(redis.call('ZSCORE', KEYS[1], ARGV[1])) ~= tonumber(ARGV[2]) then return 0 end
redis.call('HSET', KEYS[2], ARGV[1], ARGV[3])
redis.call('ZADD', KEYS[1], ARGV[4], ARGV[1])
return 1`)

// retry saves the item's attempt count and makes it due again at next.
func (q *Queue) retry(ctx context.Context, it *item, next time.Time) error {
	b, err := json.Marshal(it)
	if err != nil {
		return err
	}
	return retryScript.Run(ctx, q.rdb, []string{q.due, q.items}, it.ID, it.lease, b, next.UnixMilli()).Err()
}

// buryScript moves an item to the dead-letter list if the caller's lease
// is still the current one: KEYS due, items, dead; ARGV id, lease, letter,
// list bound.
var buryScript = redis.NewScript(`
if tonumber(redis.call('ZSCORE', KEYS[1], ARGV[1])) ~= tonumber(ARGV[2]) then return 0 end
redis.call('ZREM', KEYS[1], ARGV[1])
redis.call('HDEL', KEYS[2], ARGV[1])
redis.call('LPUSH', KEYS[3], ARGV[3])
redis.call('LTRIM', KEYS[3], 0, tonumber(ARGV[4]) - 1)
return 1`)

func (q *Queue) bury(ctx context.Context, it *item, now time.Time) error {
	b, err := json.Marshal(DeadLetter{ID: it.ID, Type: it.Type, Body: it.Body, Attempts: it.Attempts,
		Enqueued: it.Enqueued, LastError: it.LastError, Buried: now.UTC()})
	if err != nil {
		return err
	}
	return buryScript.Run(ctx, q.rdb, []string{q.due, q.items, q.dead}, it.ID, it.lease, b, maxDeadLetters).Err()
}

// Pending returns how many events wait to be forwarded (including those
// being delivered right now).
func (q *Queue) Pending(ctx context.Context) (int64, error) {
	return q.rdb.ZCard(ctx, q.due).Result()
}

// Queued describes one event waiting to be forwarded.
type Queued struct {
	Attempts  int       // failed attempts so far
	Due       time.Time // next attempt (or the end of a delivery's lease)
	LastError string
}

// Lookup returns the state of one queued event; false when it is not
// queued (never, or already delivered or dead-lettered).
func (q *Queue) Lookup(ctx context.Context, id string) (Queued, bool, error) {
	score, err := q.rdb.ZScore(ctx, q.due, id).Result()
	if errors.Is(err, redis.Nil) {
		return Queued{}, false, nil
	}
	if err != nil {
		return Queued{}, false, err
	}
	raw, err := q.rdb.HGet(ctx, q.items, id).Bytes()
	if err != nil {
		return Queued{}, false, err
	}
	var it item
	if err := json.Unmarshal(raw, &it); err != nil {
		return Queued{}, false, err
	}
	return Queued{Attempts: it.Attempts, Due: time.UnixMilli(int64(score)), LastError: it.LastError}, true, nil
}

// DeadLetters returns the events whose forwarding was given up, newest
// first.
func (q *Queue) DeadLetters(ctx context.Context) ([]DeadLetter, error) {
	raw, err := q.rdb.LRange(ctx, q.dead, 0, -1).Result()
	if err != nil {
		return nil, err
	}
	out := make([]DeadLetter, 0, len(raw))
	for _, r := range raw {
		var d DeadLetter
		if err := json.Unmarshal([]byte(r), &d); err != nil {
			return nil, err
		}
		out = append(out, d)
	}
	return out, nil
}
