package webhook

import (
	"context"
	"errors"
	"fmt"
	"log/slog"

	"github.com/tollgate-dev/tollgate/entitlements"
	"github.com/tollgate-dev/tollgate/internal/metrics"
)

// SessionOwners names the user tollgate's billing API created a Checkout
// Session for; *billing.RedisCheckouts is one.
type SessionOwners interface {
	SessionOwner(ctx context.Context, session string) (user string, ok bool, err error)
}

// linker records the user→customer link of a completed checkout, and only
// for a user the session was made for (SPEC "Identity"): the user tollgate's
// billing API recorded when it created the session, else the session's
// metadata.user_id, which only a call with the secret key can set. A
// client_reference_id alone never links: Payment Links and pricing tables
// let the payer choose it, so anyone could pay once and take over a
// victim's identity mapping (link squatting).
type linker struct {
	store   entitlements.Store
	owners  SessionOwners // nil: metadata.user_id only
	log     *slog.Logger
	metrics *metrics.Metrics
}

// link links the checkout's user to j.customer. It fails only when the
// store cannot be read or written (the delivery is retried); a refused or
// conflicting link is logged and counted, and the event is still
// processed, since a retry would not change the answer.
func (l *linker) link(ctx context.Context, j *job, users CheckoutUsers) error {
	user, err := l.userOf(ctx, j, users)
	if err != nil || user == "" {
		return err
	}
	err = l.store.LinkUser(ctx, user, j.customer)
	if errors.Is(err, entitlements.ErrLinkConflict) {
		linked, _, _ := l.store.CustomerForUser(ctx, user)
		l.log.WarnContext(ctx, "webhook: checkout would move a user to another customer; kept the first link (an operator repairs a wrong one with `tollgate link`)",
			"event", j.id, "session", j.session, "user", user, "linked_customer", linked, "checkout_customer", j.customer)
		l.count("conflict")
		return nil
	}
	if err != nil {
		return err
	}
	l.count("linked")
	return nil
}

// userOf is the user a checkout may link, "" for none.
func (l *linker) userOf(ctx context.Context, j *job, users CheckoutUsers) (string, error) {
	var owner string
	var recorded bool
	if l.owners != nil {
		var err error
		if owner, recorded, err = l.owners.SessionOwner(ctx, j.session); err != nil {
			return "", fmt.Errorf("webhook: read checkout owner: %w", err)
		}
	}
	switch {
	case recorded && users.MetaUser != "" && users.MetaUser != owner:
		l.log.WarnContext(ctx, "webhook: checkout not linked: metadata.user_id differs from the user tollgate created the session for",
			"event", j.id, "session", j.session, "user", owner, "metadata_user_id", bounded(users.MetaUser), "checkout_customer", j.customer)
		l.count("mismatch")
		return "", nil
	case recorded:
		return owner, nil
	case users.MetaUser != "":
		return users.MetaUser, nil
	case users.Reference != "":
		// Not an attack in itself (a Payment Link with the app's own
		// reference), but never enough: say why nothing was linked.
		l.log.WarnContext(ctx, "webhook: checkout not linked: only client_reference_id names a user, and the payer can choose it; start checkouts with the billing API or set metadata.user_id",
			"event", j.id, "session", j.session, "client_reference_id", bounded(users.Reference), "checkout_customer", j.customer)
		l.count("unverified")
	}
	return "", nil
}

func (l *linker) count(result string) {
	if l.metrics != nil {
		l.metrics.UserLinks.WithLabelValues(result).Inc()
	}
}

// bounded caps a value the payer (or another integration) chose before it
// is logged.
func bounded(s string) string {
	if len(s) > 100 {
		return s[:100] + "…"
	}
	return s
}
