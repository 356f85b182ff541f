package main

import (
	"context"
	"slices"

	"github.com/tollgate-dev/tollgate/entitlements"
	"github.com/tollgate-dev/tollgate/webhook"
)

// sourceGrant is the source of a grant change in tollgate events.
const sourceGrant = "grant"

// eventEntry is one entry of tollgate events: a webhook delivery from the
// delivery log, or a grant or revoke from the grant audit (source grant,
// event the grant's id, replica the host the command ran on), with who,
// why and the grant.
type eventEntry struct {
	webhook.Delivery
	By     string              `json:"by,omitempty"`
	Reason string              `json:"reason,omitempty"`
	Grant  *entitlements.Grant `json:"grant,omitempty"`
}

// grantEntries reads the grant changes f selects from the grant audit. A
// grant change is never a failed delivery: -failed selects none.
func grantEntries(ctx context.Context, audit *entitlements.RedisStore, f webhook.Filter) ([]eventEntry, error) {
	if f.Failed {
		return nil, nil
	}
	evs, err := audit.GrantAudit(ctx, f.Customer, 0)
	if err != nil {
		return nil, err
	}
	var out []eventEntry
	for _, ev := range evs {
		d := webhook.Delivery{ID: ev.ID, Event: ev.Grant.ID, Type: ev.Type, Customer: ev.Grant.Customer,
			Source: sourceGrant, Replica: ev.Host, At: ev.At}
		if !f.Match(d) || d.At.Before(f.Since) {
			continue
		}
		g := ev.Grant
		out = append(out, eventEntry{Delivery: d, By: ev.By, Reason: ev.Reason, Grant: &g})
	}
	return out, nil
}

// mergeEntries lists deliveries and grant changes together, newest first,
// at most limit (0: all).
func mergeEntries(deliveries []webhook.Delivery, grants []eventEntry, limit int) []eventEntry {
	out := make([]eventEntry, 0, len(deliveries)+len(grants))
	for _, d := range deliveries {
		out = append(out, eventEntry{Delivery: d})
	}
	out = append(out, grants...)
	slices.SortStableFunc(out, func(a, b eventEntry) int { return b.At.Compare(a.At) })
	if limit > 0 && len(out) > limit {
		out = out[:limit]
	}
	return out
}

// detail is an entry's last column: a delivery's error, or who changed
// which grant, what it adds and why.
func (e eventEntry) detail() string {
	if e.Grant == nil {
		return oneLine(e.Error, 100)
	}
	s := "by " + dash(e.By) + "; " + describeGrant(*e.Grant)
	if e.Reason != "" {
		s += "; reason: " + e.Reason
	}
	return oneLine(s, 200)
}
