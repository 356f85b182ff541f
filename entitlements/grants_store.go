package entitlements

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"slices"
	"sort"
	"strconv"
	"time"

	"github.com/redis/go-redis/v9"
)

var _ GrantStore = (*RedisStore)(nil)

// Grants live in one hash per customer, {prefix}{cus_…}:grants (grant id →
// JSON), under the customer's hash tag like its state. A global hash,
// {prefix}grants (grant id → customer), finds a grant's customer for a
// revoke and lists every customer with grants; it is written first and
// removed last, so it may name a grant that is gone (skipped), never miss
// one that exists. Every change is announced on the change feed, so every
// replica re-reads the customer within a second.
func (r *RedisStore) grantsKey(customer string) string { return r.keys.Customer(customer, "grants") }
func (r *RedisStore) grantIndexKey() string            { return r.keys.Global("grants") }
func (r *RedisStore) grantAuditKey() string            { return r.keys.Global("grants", "audit") }

// grantRetention is how long an expired grant stays listed before a later
// change of the same customer's grants drops it (the audit keeps it).
const grantRetention = 30 * 24 * time.Hour

// AuditSize bounds the grant audit stream: the newest entries are kept.
const AuditSize = 10000

// Grants implements GrantStore. An entry that does not decode is skipped:
// a grant only adds, so leaving one out can only deny, never open.
func (r *RedisStore) Grants(ctx context.Context, customer string) ([]Grant, error) {
	vals, err := r.rdb.HVals(ctx, r.grantsKey(customer)).Result()
	if err != nil {
		return nil, fmt.Errorf("entitlements: grants of %s: %w", customer, err)
	}
	return decodeGrants(vals), nil
}

// GrantsMany implements GrantStore with one pipeline.
func (r *RedisStore) GrantsMany(ctx context.Context, customers []string) (map[string][]Grant, error) {
	pipe := r.rdb.Pipeline()
	cmds := make([]*redis.StringSliceCmd, len(customers))
	for i, c := range customers {
		cmds[i] = pipe.HVals(ctx, r.grantsKey(c))
	}
	if _, err := pipe.Exec(ctx); err != nil {
		return nil, fmt.Errorf("entitlements: grants of %d customers: %w", len(customers), err)
	}
	out := map[string][]Grant{}
	for i, cmd := range cmds {
		if gs := decodeGrants(cmd.Val()); len(gs) > 0 {
			out[customers[i]] = gs
		}
	}
	return out, nil
}

func decodeGrants(vals []string) []Grant {
	var out []Grant
	for _, v := range vals {
		var g Grant
		if json.Unmarshal([]byte(v), &g) == nil && g.ID != "" {
			out = append(out, g)
		}
	}
	sort.Slice(out, func(i, j int) bool { return out[i].Created.Before(out[j].Created) })
	return out
}

// AddGrant stores a grant (its ID, Customer and Created set by the caller),
// records it in the audit and announces the customer. A customer may hold
// at most MaxActiveGrants active grants; grants expired longer than 30
// days ago are dropped on the way.
func (r *RedisStore) AddGrant(ctx context.Context, g Grant) error {
	if !ValidGrantID(g.ID) {
		return fmt.Errorf("%w: %q", ErrInvalidGrantID, g.ID)
	}
	cur, err := r.Grants(ctx, g.Customer)
	if err != nil {
		return err
	}
	active := 0
	var stale []string
	for _, c := range cur {
		switch {
		case c.Active(g.Created):
			active++
		case g.Created.Sub(c.Until) > grantRetention:
			stale = append(stale, c.ID)
		}
	}
	if active >= MaxActiveGrants {
		return fmt.Errorf("%w: %s holds %d (revoke some first)", ErrTooManyGrants, g.Customer, active)
	}
	enc, err := json.Marshal(g)
	if err != nil {
		return err
	}
	if err := r.rdb.HSet(ctx, r.grantIndexKey(), g.ID, g.Customer).Err(); err != nil {
		return fmt.Errorf("entitlements: index grant %s: %w", g.ID, err)
	}
	if _, err := r.rdb.TxPipelined(ctx, func(p redis.Pipeliner) error {
		p.HSet(ctx, r.grantsKey(g.Customer), g.ID, enc)
		if len(stale) > 0 {
			p.HDel(ctx, r.grantsKey(g.Customer), stale...)
		}
		return nil
	}); err != nil {
		return fmt.Errorf("entitlements: store grant %s: %w", g.ID, err)
	}
	if len(stale) > 0 {
		_ = r.rdb.HDel(ctx, r.grantIndexKey(), stale...).Err() // a dangling index entry is skipped anyway
	}
	return r.grantChanged(ctx, GrantEvent{Type: GrantCreated, Grant: g, By: g.By, Reason: g.Reason, At: g.Created})
}

// RevokeGrant removes a grant, records who removed it and why in the audit
// and announces the customer. It returns the grant as it was, or
// ErrGrantNotFound.
func (r *RedisStore) RevokeGrant(ctx context.Context, id, by, reason string, at time.Time) (Grant, error) {
	if !ValidGrantID(id) {
		return Grant{}, fmt.Errorf("%w: %q", ErrInvalidGrantID, id)
	}
	customer, err := r.rdb.HGet(ctx, r.grantIndexKey(), id).Result()
	if errors.Is(err, redis.Nil) {
		return Grant{}, fmt.Errorf("%w: %s", ErrGrantNotFound, id)
	}
	if err != nil {
		return Grant{}, fmt.Errorf("entitlements: find grant %s: %w", id, err)
	}
	raw, err := r.rdb.HGet(ctx, r.grantsKey(customer), id).Result()
	if errors.Is(err, redis.Nil) {
		_ = r.rdb.HDel(ctx, r.grantIndexKey(), id).Err()
		return Grant{}, fmt.Errorf("%w: %s", ErrGrantNotFound, id)
	}
	if err != nil {
		return Grant{}, fmt.Errorf("entitlements: read grant %s: %w", id, err)
	}
	gs := decodeGrants([]string{raw})
	g := Grant{ID: id, Customer: customer}
	if len(gs) == 1 {
		g = gs[0]
	}
	if err := r.rdb.HDel(ctx, r.grantsKey(customer), id).Err(); err != nil {
		return Grant{}, fmt.Errorf("entitlements: revoke grant %s: %w", id, err)
	}
	_ = r.rdb.HDel(ctx, r.grantIndexKey(), id).Err() // a dangling index entry is skipped anyway
	return g, r.grantChanged(ctx, GrantEvent{Type: GrantRevoked, Grant: g, By: by, Reason: reason, At: at})
}

// ListGrants returns the stored grants of one customer, or of every
// customer when customer is "", oldest first.
func (r *RedisStore) ListGrants(ctx context.Context, customer string) ([]Grant, error) {
	customers := []string{customer}
	if customer == "" {
		idx, err := r.rdb.HVals(ctx, r.grantIndexKey()).Result()
		if err != nil {
			return nil, fmt.Errorf("entitlements: list grants: %w", err)
		}
		slices.Sort(idx)
		customers = slices.Compact(idx)
	}
	var out []Grant
	for len(customers) > 0 {
		n := min(len(customers), 500)
		m, err := r.GrantsMany(ctx, customers[:n])
		if err != nil {
			return nil, err
		}
		for _, c := range customers[:n] {
			out = append(out, m[c]...)
		}
		customers = customers[n:]
	}
	sort.SliceStable(out, func(i, j int) bool { return out[i].Created.Before(out[j].Created) })
	return out, nil
}

// Types of the grant audit's entries.
const (
	GrantCreated = "grant.created"
	GrantRevoked = "grant.revoked"
)

// GrantEvent is one entry of the grant audit: who created or revoked which
// grant, and why.
type GrantEvent struct {
	ID     string    `json:"id,omitempty"` // the entry's stream id; set when read
	Type   string    `json:"type"`         // grant.created, grant.revoked
	Grant  Grant     `json:"grant"`
	By     string    `json:"by"`
	Reason string    `json:"reason,omitempty"`
	At     time.Time `json:"at"`
	// Host is the machine the command ran on (its host name and pid).
	Host string `json:"host"`
}

// grantChanged records an audit entry, then announces the customer. The
// grant itself is already stored: a failed audit write is returned (the
// operator sees it) but the announcement is still made, so replicas never
// keep applying a revoked grant because the audit was unreachable.
func (r *RedisStore) grantChanged(ctx context.Context, ev GrantEvent) error {
	ev.At, ev.ID = ev.At.UTC(), ""
	host, _ := os.Hostname()
	ev.Host = host + ":" + strconv.Itoa(os.Getpid())
	enc, err := json.Marshal(ev)
	var auditErr error
	if err == nil {
		err = r.rdb.XAdd(ctx, &redis.XAddArgs{Stream: r.grantAuditKey(), MaxLen: AuditSize, Values: []any{"d", enc}}).Err()
	}
	if err != nil {
		auditErr = fmt.Errorf("entitlements: audit %s of %s: %w", ev.Type, ev.Grant.ID, err)
	}
	if err := r.publish(ctx, ev.Grant.Customer); err != nil {
		return errors.Join(auditErr, fmt.Errorf("entitlements: announce %s: %w (replicas apply it at their next refresh)", ev.Grant.Customer, err))
	}
	return auditErr
}

// GrantAudit returns the newest audit entries first, at most limit (0: all
// kept), only those of customer when it is not "".
func (r *RedisStore) GrantAudit(ctx context.Context, customer string, limit int) ([]GrantEvent, error) {
	msgs, err := r.rdb.XRevRange(ctx, r.grantAuditKey(), "+", "-").Result()
	if err != nil {
		return nil, fmt.Errorf("entitlements: read the grant audit: %w", err)
	}
	var out []GrantEvent
	for _, m := range msgs {
		raw, _ := m.Values["d"].(string)
		var ev GrantEvent
		if json.Unmarshal([]byte(raw), &ev) != nil || (customer != "" && ev.Grant.Customer != customer) {
			continue
		}
		ev.ID = m.ID
		out = append(out, ev)
		if limit > 0 && len(out) == limit {
			break
		}
	}
	return out, nil
}
