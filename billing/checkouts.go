package billing

import (
	"context"
	"errors"
	"strings"
	"time"

	"github.com/redis/go-redis/v9"
	"github.com/stripe/stripe-go/v76"

	"github.com/tollgate-dev/tollgate/internal/store"
	"github.com/tollgate-dev/tollgate/internal/stripeapi"
	"github.com/tollgate-dev/tollgate/proxy"
)

// Checkouts remembers each user's newest Checkout Session, so that a
// second browser tab or a retried click cannot start a second paid
// subscription: the same plan gets the same session back, another plan
// expires the earlier session first.
type Checkouts interface {
	// Recorded returns the user's recorded session and what it sells.
	Recorded(ctx context.Context, user string) (session, offer string, ok bool, err error)
	// Record stores the user's session unless another one was recorded
	// since prev ("" = none): it reports false then, and the caller
	// should defer to the other one.
	Record(ctx context.Context, user, prev, session, offer string, ttl time.Duration) (bool, error)
	// Own records which user a session was created for: the
	// checkout.session.completed webhook links that user, and only that
	// user, to the customer who paid (webhook.SessionOwners).
	Own(ctx context.Context, session, user string, ttl time.Duration) error
}

// checkoutTTL is how long a session is remembered: Stripe's default
// expires_at, after which it cannot be paid anyway.
const checkoutTTL = 24 * time.Hour

// ownerTTL is how long a session's user is remembered: the session's
// lifetime plus the 3 days Stripe retries the completion webhook. A later
// replay still links through the session's metadata.user_id.
const ownerTTL = checkoutTTL + 72*time.Hour

// RedisCheckouts keeps Checkouts in Redis, shared by every replica.
type RedisCheckouts struct {
	rdb  redis.UniversalClient
	keys store.Keys
}

var _ Checkouts = (*RedisCheckouts)(nil)

// NewRedisCheckouts returns Checkouts on an open store connection.
func NewRedisCheckouts(s *store.Store) *RedisCheckouts {
	return &RedisCheckouts{rdb: s.Client, keys: s.Keys}
}

func (c *RedisCheckouts) key(user string) string { return c.keys.Global("billing", "checkout", user) }

// Recorded implements Checkouts.
func (c *RedisCheckouts) Recorded(ctx context.Context, user string) (string, string, bool, error) {
	v, err := c.rdb.Get(ctx, c.key(user)).Result()
	if errors.Is(err, redis.Nil) {
		return "", "", false, nil
	}
	if err != nil {
		return "", "", false, err
	}
	session, offer, _ := strings.Cut(v, " ")
	return session, offer, true, nil
}

// recordScript replaces the user's session only if it is still prev.
var recordScript = redis.NewScript(`
local cur = redis.call('GET', KEYS[1])
local prev = ARGV[1]
if (cur == false and prev ~= '') or (cur ~= false and string.match(cur, '^%S+') ~= prev) then
  return 0
end
redis.call('SET', KEYS[1], ARGV[2], 'PX', ARGV[3])
return 1`)

// Record implements Checkouts.
func (c *RedisCheckouts) Record(ctx context.Context, user, prev, session, offer string, ttl time.Duration) (bool, error) {
	n, err := recordScript.Run(ctx, c.rdb, []string{c.key(user)}, prev, session+" "+offer, ttl.Milliseconds()).Int()
	return n == 1, err
}

func (c *RedisCheckouts) ownerKey(session string) string {
	return c.keys.Global("billing", "session", session)
}

// Own implements Checkouts.
func (c *RedisCheckouts) Own(ctx context.Context, session, user string, ttl time.Duration) error {
	return c.rdb.Set(ctx, c.ownerKey(session), user, ttl).Err()
}

// SessionOwner implements webhook.SessionOwners: the user a session was
// created for by this billing API, ok false when none was recorded.
func (c *RedisCheckouts) SessionOwner(ctx context.Context, session string) (string, bool, error) {
	v, err := c.rdb.Get(ctx, c.ownerKey(session)).Result()
	if errors.Is(err, redis.Nil) {
		return "", false, nil
	}
	if err != nil {
		return "", false, err
	}
	return v, true, nil
}

// offerKey names what a session sells, to tell a repeat from a change of
// mind.
func offerKey(o offer) string { return o.plan + "/" + o.interval }

// reuseCheckout looks at the user's recorded session: the same offer
// still open is answered again; a session that completed moments ago
// (its webhook not yet applied) refuses a second purchase; another offer
// still open is expired, so that only the newest can be paid. It returns
// the recorded session id ("" when none) for Record's compare-and-set.
func (h *Handler) reuseCheckout(c *call, o offer) (prev string, again *sessionAnswer, herr *proxy.HTTPError) {
	if h.checkouts == nil {
		return "", nil, nil
	}
	id, what, ok, err := h.checkouts.Recorded(c.ctx, c.id.User)
	if err != nil {
		return "", nil, errUnavailable.WithCause(err)
	}
	if !ok {
		return "", nil, nil
	}
	p := &stripe.CheckoutSessionParams{}
	p.Context = c.ctx
	p.AddExpand("subscription")
	s, err := h.api.CheckoutSessions.Get(id, p)
	switch {
	case err != nil && stripeapi.IsMissing(err):
		return id, nil, nil
	case err != nil:
		return "", nil, stripeFailure(err)
	case s.Status == stripe.CheckoutSessionStatusComplete && o.recurring() && live(s.Subscription):
		// Paid, its webhook perhaps not applied yet: a second checkout
		// would start a second subscription.
		return "", nil, conflict("checkout_completed", "A checkout of this account has completed; its subscription takes effect in a moment.")
	case s.Status != stripe.CheckoutSessionStatusOpen:
		return id, nil, nil
	case what == offerKey(o):
		return id, &sessionAnswer{ID: s.ID, URL: s.URL}, nil
	}
	ep := &stripe.CheckoutSessionExpireParams{}
	ep.Context = c.ctx
	ep.SetIdempotencyKey(c.idempotencyKey("checkout-expire-" + id))
	if _, err := h.api.CheckoutSessions.Expire(id, ep); err != nil && !stripeapi.IsMissing(err) {
		// Refused when it is no longer open: expired by a concurrent
		// request (fine), or paid meanwhile (a second purchase is not).
		gp := &stripe.CheckoutSessionParams{}
		gp.Context = c.ctx
		now, gerr := h.api.CheckoutSessions.Get(id, gp)
		switch {
		case gerr == nil && now.Status == stripe.CheckoutSessionStatusExpired:
		case gerr == nil && now.Status == stripe.CheckoutSessionStatusComplete:
			return "", nil, conflict("checkout_completed", "A checkout of this account has completed; its subscription takes effect in a moment.")
		default:
			return "", nil, stripeFailure(err)
		}
	}
	return id, nil, nil
}

// live reports whether a checkout's subscription still runs (unknown
// counts as running: better a refused second purchase than a double one).
func live(sub *stripe.Subscription) bool {
	if sub == nil || sub.Status == "" {
		return true
	}
	return sub.Status != stripe.SubscriptionStatusCanceled && sub.Status != stripe.SubscriptionStatusIncompleteExpired
}
