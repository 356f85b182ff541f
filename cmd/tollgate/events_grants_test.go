package main

import (
	"context"
	"encoding/json"
	"strings"
	"testing"
	"time"

	"github.com/tollgate-dev/tollgate/entitlements"
	"github.com/tollgate-dev/tollgate/webhook"
)

// `tollgate events` lists grants and revokes from the grant audit beside
// the webhook deliveries, newest first, with who, what and why; its
// filters apply to them too, and -failed leaves them out.
func TestEventsListsGrantChanges(t *testing.T) {
	rd := testrigRedis(t)
	cfg := operatorConfig(t, rd, "", "")
	st := openOp(t, rd)
	ctx := context.Background()
	log := webhook.NewDeliveryLog(st.Client, st.Keys, 0, 0)
	grants := entitlements.NewRedisStore(st)
	now := time.Now().Add(-time.Minute)
	record := func(ev, customer, result string, at time.Time) {
		t.Helper()
		d := webhook.Delivery{Event: ev, Type: "invoice.paid", Customer: customer, Result: result, Status: 200, Source: "webhook", At: at}
		if err := log.Record(ctx, d); err != nil {
			t.Fatal(err)
		}
	}
	record("evt_1", "cus_A", "processed", now.Add(-4*time.Minute))
	g := entitlements.Grant{ID: entitlements.NewGrantID(), Customer: "cus_A", Plan: "pro", Reason: "pilot", By: "alice",
		Created: now.Add(-3 * time.Minute)}
	if err := grants.AddGrant(ctx, g); err != nil {
		t.Fatal(err)
	}
	record("evt_2", "cus_B", "failed", now.Add(-2*time.Minute))
	if _, err := grants.RevokeGrant(ctx, g.ID, "bob", "pilot over", now.Add(-time.Minute)); err != nil {
		t.Fatal(err)
	}
	other := entitlements.Grant{ID: entitlements.NewGrantID(), Customer: "cus_B", Features: []string{"sso"}, Reason: "deal",
		By: "carol", Created: now.Add(-5 * time.Minute)}
	if err := grants.AddGrant(ctx, other); err != nil {
		t.Fatal(err)
	}

	for _, c := range []struct {
		name    string
		args    []string
		wantOut []string // in stdout, in this order
		notOut  []string
	}{
		{"all", nil, []string{g.ID, "grant.revoked", "by bob; plan pro; until revoked; reason: pilot over",
			"evt_2", g.ID, "grant.created", "by alice; plan pro; until revoked; reason: pilot", "evt_1", other.ID,
			"2 deliveries and 3 grant changes, newest first; the log keeps the last 10000 for 168h0m0s; the grant audit keeps the last 10000 changes."}, nil},
		{"grants only", []string{"-type", "grant.*"}, []string{"grant.revoked", "grant.created", other.ID, "0 deliveries and 3 grant changes"},
			[]string{"evt_"}},
		{"one customer", []string{"-customer", "cus_A"}, []string{"grant.revoked", "grant.created", "evt_1"},
			[]string{other.ID, "evt_2"}},
		{"failed leaves grants out", []string{"-failed"}, []string{"evt_2", "1 deliveries,"}, []string{"grant."}},
		// The delivery log selects by when an entry was written (all just
		// now here), the audit by when the grant changed.
		{"since", []string{"-since", "150s"}, []string{"grant.revoked", "evt_2", "evt_1"}, []string{"grant.created"}},
		{"limit", []string{"-limit", "1"}, []string{"grant.revoked", "0 deliveries and 1 grant changes"}, []string{"evt_2"}},
	} {
		t.Run(c.name, func(t *testing.T) {
			code, out, errOut := runCLI(append([]string{"events", "-config", cfg}, c.args...)...)
			if code != 0 {
				t.Fatalf("events %v = %d: %s", c.args, code, errOut)
			}
			wantInOrder(t, "events "+strings.Join(c.args, " "), out, c.wantOut)
			for _, n := range c.notOut {
				if strings.Contains(out, n) {
					t.Errorf("events %v output has %q:\n%s", c.args, n, out)
				}
			}
		})
	}

	code, out, _ := runCLI("events", "-config", cfg, "-json", "-type", "grant.created", "-customer", "cus_A")
	var e struct {
		webhook.Delivery
		By, Reason string
		Grant      *entitlements.Grant
	}
	if err := json.Unmarshal([]byte(strings.TrimSpace(out)), &e); code != 0 || err != nil {
		t.Fatalf("events -json = %d (%v):\n%s", code, err, out)
	}
	if e.Type != "grant.created" || e.Source != "grant" || e.Event != g.ID || e.Customer != "cus_A" || e.By != "alice" ||
		e.Reason != "pilot" || e.Grant == nil || e.Grant.Plan != "pro" || e.Replica == "" || e.ID == "" || !e.At.Equal(g.Created) {
		t.Errorf("events -json grant line = %+v; want grant.created of %s by alice, why, the grant, host and time", e, g.ID)
	}
}
