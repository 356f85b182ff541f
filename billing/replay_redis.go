package billing

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"strings"
	"time"

	"github.com/redis/go-redis/v9"

	"github.com/tollgate-dev/tollgate/internal/store"
)

// RedisReplays keeps Replays in Redis, shared by every replica: one key
// per user, call and client key, holding either a running execution
// ("P <fingerprint> <token>") or the first answer ("D <fingerprint>
// <status> <body>").
type RedisReplays struct {
	rdb  redis.UniversalClient
	keys store.Keys
}

var _ Replays = (*RedisReplays)(nil)

// NewRedisReplays returns Replays on an open store connection.
func NewRedisReplays(s *store.Store) *RedisReplays {
	return &RedisReplays{rdb: s.Client, keys: s.Keys}
}

func (r *RedisReplays) key(k string) string { return r.keys.Global("billing", "idempotency", k) }

func pending(c Claim) string { return "P " + c.Fingerprint + " " + c.Token }

// claimScript takes the key for a new execution, or returns what holds it.
var claimScript = redis.NewScript(`
local cur = redis.call('GET', KEYS[1])
if cur then return cur end
redis.call('SET', KEYS[1], ARGV[1], 'PX', ARGV[2])
return false`)

// Claim implements Replays.
func (r *RedisReplays) Claim(ctx context.Context, key string, c Claim, ttl time.Duration) (*Held, error) {
	v, err := claimScript.Run(ctx, r.rdb, []string{r.key(key)}, pending(c), ttl.Milliseconds()).Text()
	if errors.Is(err, redis.Nil) {
		return nil, nil // claimed
	}
	if err != nil {
		return nil, fmt.Errorf("billing: claim idempotency key: %w", err)
	}
	return parseHeld(v)
}

// parseHeld reads a stored value.
func parseHeld(v string) (*Held, error) {
	kind, rest, _ := strings.Cut(v, " ")
	fp, rest, _ := strings.Cut(rest, " ")
	switch kind {
	case "P":
		return &Held{Fingerprint: fp}, nil
	case "D":
		var a Answer
		status, body, _ := strings.Cut(rest, " ")
		if _, err := fmt.Sscanf(status, "%d", &a.Status); err != nil || !json.Valid([]byte(body)) {
			return nil, ErrReplayCorrupt
		}
		a.Body = json.RawMessage(body)
		return &Held{Fingerprint: fp, Answer: &a}, nil
	}
	return nil, ErrReplayCorrupt
}

// settleScript replaces the key's value with ARGV[2] (or deletes it when
// ARGV[2] is empty) only while it is still the claim ARGV[1].
var settleScript = redis.NewScript(`
if redis.call('GET', KEYS[1]) ~= ARGV[1] then return 0 end
if ARGV[2] == '' then
  redis.call('DEL', KEYS[1])
else
  redis.call('SET', KEYS[1], ARGV[2], 'PX', ARGV[3])
end
return 1`)

// Save implements Replays.
func (r *RedisReplays) Save(ctx context.Context, key string, c Claim, a Answer, ttl time.Duration) error {
	v := fmt.Sprintf("D %s %d %s", c.Fingerprint, a.Status, a.Body)
	n, err := settleScript.Run(ctx, r.rdb, []string{r.key(key)}, pending(c), v, ttl.Milliseconds()).Int()
	if err != nil {
		return fmt.Errorf("billing: store idempotent answer: %w", err)
	}
	if n == 0 {
		return ErrClaimLost
	}
	return nil
}

// Release implements Replays.
func (r *RedisReplays) Release(ctx context.Context, key string, c Claim) error {
	if err := settleScript.Run(ctx, r.rdb, []string{r.key(key)}, pending(c), "", 0).Err(); err != nil {
		return fmt.Errorf("billing: release idempotency key: %w", err)
	}
	return nil
}
