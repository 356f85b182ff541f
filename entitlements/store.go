package entitlements

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"math/rand/v2"
	"time"

	"github.com/redis/go-redis/v9"

	"github.com/tollgate-dev/tollgate/internal/store"
)

// Store keeps customer state shared by every replica.
type Store interface {
	// Get returns the stored state, or ErrNotFound.
	Get(ctx context.Context, customer string) (*State, error)
	// GetMany returns the states found (missing customers are absent).
	GetMany(ctx context.Context, customers []string) (map[string]*State, error)
	// Update atomically replaces a customer's state with fn's result; fn
	// gets the current state (nil when none) and may be called again if a
	// concurrent writer got there first. Returning a nil state deletes it;
	// returning cur itself changes nothing. Every replica is told of a
	// change.
	Update(ctx context.Context, customer string, fn func(cur *State) (*State, error)) error
	// Customers lists every customer with stored state (for reconciliation).
	Customers(ctx context.Context) ([]string, error)
	// LinkUser records which customer a user (JWT subject) belongs to;
	// the first link wins, and a different customer later gets
	// ErrLinkConflict (a payer can set client_reference_id on Payment
	// Links, so a later checkout must not move a user to another customer).
	// CustomerForUser reads it back.
	LinkUser(ctx context.Context, user, customer string) error
	CustomerForUser(ctx context.Context, user string) (string, bool, error)
	// Watch delivers the ids of customers whose state changed, until ctx
	// ends; see Watcher.
	Watch(ctx context.Context) Watcher
	// Acquire takes a named lease for ttl if nobody holds it; it is how one
	// replica at a time runs a periodic job.
	Acquire(ctx context.Context, name string, ttl time.Duration) (bool, error)
	Ping(ctx context.Context) error
}

// Watcher is a live change feed. Next blocks up to timeout for the next
// event: a changed customer id, a confirmation that every change before
// it has been delivered (Sync), or an error after which the caller should
// Close and Watch again.
type Watcher interface {
	Next(ctx context.Context, timeout time.Duration) (WatchEvent, error)
	// Probe asks for a Sync event; changes published before the probe are
	// delivered before it.
	Probe(ctx context.Context) error
	Close() error
}

// WatchEvent is one Watcher event.
type WatchEvent struct {
	Customer   string // a customer whose state changed
	Subscribed bool   // the feed is (re)established: reload everything
	Sync       bool   // the answer to Probe
	Timeout    bool   // nothing within the timeout
}

// RedisStore is the Store on Redis (or the embedded Redis-protocol store):
// one JSON value per customer under its hash tag, a set indexing the
// customers, and a pub/sub channel announcing changes.
type RedisStore struct {
	rdb  redis.UniversalClient
	keys store.Keys
	// cluster is set on Redis Cluster, where the customer index (a global
	// key) is in another slot than the state and cannot be part of the
	// state's MULTI/EXEC (CROSSSLOT): Update maintains it around the
	// transaction instead (see reindex).
	cluster bool
	// switched, when set (Sentinel), returns a channel closed when the
	// store's primary next changes; see Watch.
	switched func() <-chan struct{}
}

var _ Store = (*RedisStore)(nil)

// NewRedisStore returns a Store on an open store connection.
func NewRedisStore(s *store.Store) *RedisStore {
	_, cluster := s.Client.(*redis.ClusterClient)
	return &RedisStore{rdb: s.Client, keys: s.Keys, cluster: cluster, switched: s.PrimarySwitched}
}

func (r *RedisStore) stateKey(customer string) string { return r.keys.Customer(customer, "state") }
func (r *RedisStore) indexKey() string                { return r.keys.Global("customers") }
func (r *RedisStore) channel() string                 { return r.keys.Global("changes") }
func (r *RedisStore) userKey(user string) string      { return r.keys.Global("user", user) }

// Get implements Store.
func (r *RedisStore) Get(ctx context.Context, customer string) (*State, error) {
	b, err := r.rdb.Get(ctx, r.stateKey(customer)).Bytes()
	if errors.Is(err, redis.Nil) {
		return nil, ErrNotFound
	}
	if err != nil {
		return nil, fmt.Errorf("entitlements: get %s: %w", customer, err)
	}
	return decodeState(customer, b)
}

func decodeState(customer string, b []byte) (*State, error) {
	var st State
	if err := json.Unmarshal(b, &st); err != nil {
		return nil, fmt.Errorf("entitlements: decode %s: %w", customer, err)
	}
	return &st, nil
}

// GetMany implements Store with one pipeline (Cluster splits it by node;
// MGET would fail across slots).
func (r *RedisStore) GetMany(ctx context.Context, customers []string) (map[string]*State, error) {
	pipe := r.rdb.Pipeline()
	cmds := make([]*redis.StringCmd, len(customers))
	for i, c := range customers {
		cmds[i] = pipe.Get(ctx, r.stateKey(c))
	}
	if _, err := pipe.Exec(ctx); err != nil && !errors.Is(err, redis.Nil) {
		return nil, fmt.Errorf("entitlements: get %d customers: %w", len(customers), err)
	}
	out := make(map[string]*State, len(customers))
	for i, cmd := range cmds {
		b, err := cmd.Bytes()
		if errors.Is(err, redis.Nil) {
			continue
		}
		if err != nil {
			return nil, err
		}
		st, err := decodeState(customers[i], b)
		if err != nil {
			return nil, err
		}
		out[customers[i]] = st
	}
	return out, nil
}

// Update implements Store with WATCH/MULTI: a concurrent write to the same
// customer aborts the transaction and fn runs again on the newer state, so
// two events for one customer can never interleave their writes.
func (r *RedisStore) Update(ctx context.Context, customer string, fn func(cur *State) (*State, error)) error {
	key := r.stateKey(customer)
	for attempt := 0; attempt < 50; attempt++ {
		unchanged, created, deleted := false, false, false
		err := r.rdb.Watch(ctx, func(tx *redis.Tx) error {
			var cur *State
			b, err := tx.Get(ctx, key).Bytes()
			switch {
			case errors.Is(err, redis.Nil):
			case err != nil:
				return err
			default:
				if cur, err = decodeState(customer, b); err != nil {
					return err
				}
			}
			next, err := fn(cur)
			if err != nil {
				return err
			}
			if next == cur && cur != nil {
				unchanged = true
				return nil
			}
			created, deleted = cur == nil && next != nil, next == nil
			if r.cluster && created {
				// Indexed before the state exists: a crash after the
				// commit must not leave a stored customer out of the index
				// (an index entry without state is only one more customer
				// for reconciliation to check).
				if err := r.rdb.SAdd(ctx, r.indexKey(), customer).Err(); err != nil {
					return err
				}
			}
			_, err = tx.TxPipelined(ctx, func(p redis.Pipeliner) error {
				if next == nil {
					p.Del(ctx, key)
					if !r.cluster {
						p.SRem(ctx, r.indexKey(), customer)
					}
				} else {
					next.Customer = customer
					enc, err := json.Marshal(next)
					if err != nil {
						return err
					}
					p.Set(ctx, key, enc, 0)
					if !r.cluster {
						p.SAdd(ctx, r.indexKey(), customer)
					}
				}
				return nil
			})
			return err
		}, key)
		if errors.Is(err, redis.TxFailedErr) {
			// Another writer won; back off a little (jittered) and retry
			// on its state.
			t := time.NewTimer(time.Duration(rand.Int64N(int64(attempt+1) * int64(time.Millisecond))))
			select {
			case <-ctx.Done():
				t.Stop()
				return ctx.Err()
			case <-t.C:
			}
			continue
		}
		if err != nil {
			return fmt.Errorf("entitlements: update %s: %w", customer, err)
		}
		if unchanged {
			return nil
		}
		if r.cluster {
			if err := r.reindex(ctx, customer, created, deleted); err != nil {
				return fmt.Errorf("entitlements: index %s: %w", customer, err)
			}
		}
		// Announce after the write is committed; a lost announcement is
		// healed by the periodic refresh.
		if err := r.publish(ctx, customer); err != nil {
			return fmt.Errorf("entitlements: announce %s: %w", customer, err)
		}
		return nil
	}
	return fmt.Errorf("entitlements: update %s: too much contention", customer)
}

// publish announces a change to every watcher. PUBLISH is routed by the
// channel's slot, like the watchers' SUBSCRIBE: go-redis sends a plain
// Publish, a keyless command, to any Cluster node, which relays it to the
// others over the cluster bus, so a Probe's PING on the watcher's node
// could be answered before an earlier change arrived there. On the
// watchers' own node Redis delivers the message before any later PONG.
func (r *RedisStore) publish(ctx context.Context, customer string) error {
	cmd := redis.NewIntCmd(ctx, "publish", r.channel(), customer)
	cmd.SetFirstKeyPos(1)
	_ = r.rdb.Process(ctx, cmd)
	return cmd.Err()
}

// reindex updates the customer index after a committed write on Cluster,
// where it cannot be in the write's transaction. A delete removes the
// customer, then puts it back if a concurrent write stored it again
// meanwhile; a write that created the customer adds it again (once more
// after the SADD before the commit), since a concurrent delete's SREM may
// have come in between. Either way, once writes stop, every stored
// customer is indexed.
func (r *RedisStore) reindex(ctx context.Context, customer string, created, deleted bool) error {
	switch {
	case created:
		return r.rdb.SAdd(ctx, r.indexKey(), customer).Err()
	case !deleted:
		return nil // the customer existed, so it was indexed
	}
	if err := r.rdb.SRem(ctx, r.indexKey(), customer).Err(); err != nil {
		return err
	}
	n, err := r.rdb.Exists(ctx, r.stateKey(customer)).Result()
	if err != nil || n == 0 {
		return err
	}
	return r.rdb.SAdd(ctx, r.indexKey(), customer).Err()
}

// Customers implements Store.
func (r *RedisStore) Customers(ctx context.Context) ([]string, error) {
	return r.rdb.SMembers(ctx, r.indexKey()).Result()
}

// LinkUser implements Store.
func (r *RedisStore) LinkUser(ctx context.Context, user, customer string) error {
	prev, err := r.rdb.SetArgs(ctx, r.userKey(user), customer, redis.SetArgs{Mode: "NX", Get: true}).Result()
	switch {
	case errors.Is(err, redis.Nil):
		return nil // linked now
	case err != nil:
		return fmt.Errorf("entitlements: link user: %w", err)
	case prev != customer:
		return fmt.Errorf("%w: user %s is linked to %s, not %s", ErrLinkConflict, user, prev, customer)
	}
	return nil
}

// Relink replaces a user's link (an operator's repair: LinkUser never
// moves a user); an empty customer removes it. It returns the customer
// the user was linked to before ("" for none). Replicas that cached the
// old link follow within auth's link TTL (30 s by default).
func (r *RedisStore) Relink(ctx context.Context, user, customer string) (string, error) {
	var prev string
	var err error
	if customer == "" {
		prev, err = r.rdb.GetDel(ctx, r.userKey(user)).Result()
	} else {
		prev, err = r.rdb.SetArgs(ctx, r.userKey(user), customer, redis.SetArgs{Get: true}).Result()
	}
	if errors.Is(err, redis.Nil) {
		return "", nil
	}
	if err != nil {
		return "", fmt.Errorf("entitlements: relink user: %w", err)
	}
	return prev, nil
}

// CustomerForUser implements Store (and auth.UserLinks).
func (r *RedisStore) CustomerForUser(ctx context.Context, user string) (string, bool, error) {
	c, err := r.rdb.Get(ctx, r.userKey(user)).Result()
	if errors.Is(err, redis.Nil) {
		return "", false, nil
	}
	if err != nil {
		return "", false, fmt.Errorf("entitlements: user link: %w", err)
	}
	return c, true, nil
}

// Acquire implements Store.
func (r *RedisStore) Acquire(ctx context.Context, name string, ttl time.Duration) (bool, error) {
	return r.rdb.SetNX(ctx, r.keys.Global("lease", name), "1", ttl).Result()
}

// Ping implements Store.
func (r *RedisStore) Ping(ctx context.Context) error { return r.rdb.Ping(ctx).Err() }
