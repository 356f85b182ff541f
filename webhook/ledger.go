package webhook

import (
	"context"
	"crypto/rand"
	"errors"
	"fmt"
	"strings"
	"time"

	"github.com/redis/go-redis/v9"

	"github.com/tollgate-dev/tollgate/internal/store"
)

// ClaimState is the answer to Ledger.Claim.
type ClaimState int

// Claim states.
const (
	Claimed ClaimState = iota // this caller processes the event now
	Done                      // processed before: do nothing
	Busy                      // another delivery is processing it right now
)

// Ledger makes each event id take effect once across every replica: an
// event is claimed for processing under a lock that expires on its own (a
// replica that dies mid-event holds it for at most the lock's TTL), and
// marked done only after its effect is stored.
type Ledger interface {
	// Claim takes the event's processing lock for ttl. The token
	// identifies the claim for Release.
	Claim(ctx context.Context, event string, ttl time.Duration) (state ClaimState, token string, err error)
	// Done marks the event processed for ttl, replacing the lock.
	Done(ctx context.Context, event string, ttl time.Duration) error
	// Release gives up a claim without marking the event done (processing
	// failed; Stripe's retry may claim it again at once). It does nothing
	// when the lock is no longer the caller's.
	Release(ctx context.Context, event, token string) error
	// State reports what the ledger holds for an event: "done", "locked"
	// or "" (never taken, or forgotten after the dedup TTL).
	State(ctx context.Context, event string) (string, error)
}

// RedisLedger is the Ledger on Redis: one key per event,
// prefix + "webhook:event:" + id, holding "lock:<token>" with the
// processing TTL while an event is processed, then "done" with the dedup
// TTL. One key per event keeps every step a single-key command, atomic on a
// single Redis and on Cluster alike.
type RedisLedger struct {
	rdb  redis.UniversalClient
	keys store.Keys
}

var _ Ledger = (*RedisLedger)(nil)

// NewRedisLedger returns a Ledger on an open store connection.
func NewRedisLedger(rdb redis.UniversalClient, keys store.Keys) *RedisLedger {
	return &RedisLedger{rdb: rdb, keys: keys}
}

const (
	doneValue  = "done"
	lockPrefix = "lock:"
)

func (l *RedisLedger) key(event string) string { return l.keys.Global("webhook", "event", event) }

// Claim implements Ledger with SET NX PX, then a GET to tell a finished
// event from one in progress.
func (l *RedisLedger) Claim(ctx context.Context, event string, ttl time.Duration) (ClaimState, string, error) {
	token, key := rand.Text(), l.key(event)
	// Twice at most: the key may expire between the SET and the GET.
	for range 2 {
		ok, err := l.rdb.SetNX(ctx, key, lockPrefix+token, ttl).Result()
		if err != nil {
			return 0, "", fmt.Errorf("webhook: claim %s: %w", event, err)
		}
		if ok {
			return Claimed, token, nil
		}
		v, err := l.rdb.Get(ctx, key).Result()
		switch {
		case errors.Is(err, redis.Nil):
			continue
		case err != nil:
			return 0, "", fmt.Errorf("webhook: claim %s: %w", event, err)
		case v == doneValue:
			return Done, "", nil
		default:
			return Busy, "", nil
		}
	}
	return Busy, "", nil
}

// Done implements Ledger. It overwrites whatever is there: the effect is
// stored, so the event is done even if this replica's lock had expired and
// another replica is processing it again (re-fetching is idempotent).
func (l *RedisLedger) Done(ctx context.Context, event string, ttl time.Duration) error {
	if err := l.rdb.Set(ctx, l.key(event), doneValue, ttl).Err(); err != nil {
		return fmt.Errorf("webhook: mark %s done: %w", event, err)
	}
	return nil
}

// releaseScript deletes the lock only if it is still the caller's.
var releaseScript = redis.NewScript(`
if redis.call('GET', KEYS[1]) == ARGV[1] then
  return redis.call('DEL', KEYS[1])
end
return 0`)

// Release implements Ledger.
func (l *RedisLedger) Release(ctx context.Context, event, token string) error {
	if err := releaseScript.Run(ctx, l.rdb, []string{l.key(event)}, lockPrefix+token).Err(); err != nil {
		return fmt.Errorf("webhook: release %s: %w", event, err)
	}
	return nil
}

// State implements Ledger.
func (l *RedisLedger) State(ctx context.Context, event string) (string, error) {
	v, err := l.rdb.Get(ctx, l.key(event)).Result()
	switch {
	case errors.Is(err, redis.Nil):
		return "", nil
	case err != nil:
		return "", err
	case strings.HasPrefix(v, lockPrefix):
		return "locked", nil
	}
	return v, nil
}
