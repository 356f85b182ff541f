package webhook

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus/testutil"
	"github.com/stripe/stripe-go/v76"

	"github.com/tollgate-dev/tollgate/config"
	"github.com/tollgate-dev/tollgate/internal/logging"
	"github.com/tollgate-dev/tollgate/internal/testrig"
)

// owners is a SessionOwners in memory (billing.RedisCheckouts is tested
// in billing).
type owners struct {
	mu   sync.Mutex
	m    map[string]string
	fail error
}

func (o *owners) SessionOwner(_ context.Context, session string) (string, bool, error) {
	o.mu.Lock()
	defer o.mu.Unlock()
	if o.fail != nil {
		return "", false, o.fail
	}
	u, ok := o.m[session]
	return u, ok, nil
}

func (o *owners) set(session, user string) {
	o.mu.Lock()
	defer o.mu.Unlock()
	o.m[session] = user
}

// Link squatting: Payment Links and pricing tables let the payer set
// client_reference_id, so a payer naming a victim must never take over the
// victim's user→customer link. Only the user tollgate created the session
// for, or metadata.user_id, links.
func TestCheckoutLinksOnlyTheSessionsUser(t *testing.T) {
	own := &owners{m: map[string]string{}}
	logs := &testrig.LogBuffer{}
	r := newRig(t, rigOptions{mutate: func(o *Options) {
		o.Owners = own
		o.Logger = logging.New(config.Log{Level: "debug", Format: "json"}, logs)
	}})
	ctx := context.Background()
	for i, c := range []struct {
		name      string
		owner     string // recorded by the billing API; "" for none
		reference string // client_reference_id
		meta      string // metadata.user_id
		prior     string // the victim's existing link
		want      string // the user linked to the checkout's customer; "" for none
		result    string // tollgate_user_links_total result
	}{
		{name: "payment link naming a victim", reference: "victim", result: "unverified"},
		{name: "tollgate's session", owner: "alice", reference: "alice", meta: "alice", want: "alice", result: "linked"},
		{name: "recorded owner only", owner: "alice", want: "alice", result: "linked"},
		{name: "owner beats the reference", owner: "alice", reference: "victim", want: "alice", result: "linked"},
		{name: "metadata only (record expired)", reference: "alice", meta: "alice", want: "alice", result: "linked"},
		{name: "owner and metadata disagree", owner: "alice", meta: "victim", result: "mismatch"},
		{name: "linked elsewhere first", owner: "alice", meta: "alice", prior: "cus_first", result: "conflict"},
		{name: "guest payment", result: ""},
	} {
		t.Run(c.name, func(t *testing.T) {
			cus, session := fmt.Sprintf("cus_l%d", i), fmt.Sprintf("cs_test_l%d", i)
			suffix := fmt.Sprint(i) // fresh user ids per case
			u := func(s string) string {
				if s == "" {
					return ""
				}
				return s + suffix
			}
			r.double.PutCustomer(&stripe.Customer{ID: cus})
			cs := &stripe.CheckoutSession{ID: session, Customer: &stripe.Customer{ID: cus}, Status: "complete",
				ClientReferenceID: u(c.reference), Metadata: map[string]string{}}
			if c.meta != "" {
				cs.Metadata["user_id"] = u(c.meta)
			}
			r.double.PutCheckoutSession(cs)
			if c.owner != "" {
				own.set(session, u(c.owner))
			}
			if c.prior != "" {
				if err := r.store.LinkUser(ctx, u(c.owner), c.prior); err != nil {
					t.Fatal(err)
				}
			}
			before := map[string]float64{}
			for _, res := range []string{"linked", "conflict", "unverified", "mismatch"} {
				before[res] = testutil.ToFloat64(r.metrics.UserLinks.WithLabelValues(res))
			}
			r.mustDeliver(event(t, "evt_"+session, "checkout.session.completed", time.Now(),
				map[string]any{"id": session, "object": "checkout.session"}), resultProcessed)

			for _, user := range []string{u("victim"), u("alice")} {
				got, ok, err := r.store.CustomerForUser(ctx, user)
				if err != nil {
					t.Fatal(err)
				}
				switch {
				case user == u(c.want) && (!ok || got != cus):
					t.Errorf("%s linked to %q (%v); want %s", user, got, ok, cus)
				case user != u(c.want) && ok && got == cus:
					t.Errorf("%s linked to the payer's %s; want no link to it", user, cus)
				}
			}
			if c.prior != "" {
				if got, _, _ := r.store.CustomerForUser(ctx, u(c.owner)); got != c.prior {
					t.Errorf("existing link moved to %q; want it kept at %s", got, c.prior)
				}
				if l := logs.String(); !strings.Contains(l, c.prior) || !strings.Contains(l, `"checkout_customer":"`+cus+`"`) {
					t.Errorf("the conflict was not logged with both customer ids:\n%s", l)
				}
			}
			for res, was := range before {
				want := was
				if res == c.result {
					want++
				}
				if got := testutil.ToFloat64(r.metrics.UserLinks.WithLabelValues(res)); got != want {
					t.Errorf("user_links_total{result=%q} = %v; want %v", res, got, want)
				}
			}
		})
	}
}

// Link squatting while the store fails: if the billing API's record cannot
// be read, the link cannot be decided, so the delivery fails (500) and
// Stripe retries, rather than linking on less.
func TestCheckoutOwnerUnreadableIsRetried(t *testing.T) {
	own := &owners{m: map[string]string{}, fail: errors.New("redis: connection refused")}
	r := newRig(t, rigOptions{mutate: func(o *Options) { o.Owners = own }})
	r.double.PutCustomer(&stripe.Customer{ID: "cus_o"})
	r.double.PutCheckoutSession(&stripe.CheckoutSession{ID: "cs_test_o", Customer: &stripe.Customer{ID: "cus_o"},
		ClientReferenceID: "bob", Status: "complete"})
	if code, resp := r.deliver(event(t, "evt_o", "checkout.session.completed", time.Now(),
		map[string]any{"id": "cs_test_o", "object": "checkout.session"})); code != 500 {
		t.Errorf("delivery = %d %s; want 500 (Stripe retries)", code, resp)
	}
	if _, ok, _ := r.store.CustomerForUser(context.Background(), "bob"); ok {
		t.Errorf("bob was linked while the owner record was unreadable")
	}
}

// Link squatting in trusted payload mode: the session comes from the
// signed event, and there too a client_reference_id alone links nobody.
func TestTrustedPayloadCheckoutNeedsMetadata(t *testing.T) {
	r := newRig(t, rigOptions{trusted: true})
	for _, c := range []struct {
		id   string
		obj  map[string]any
		user string
		want bool
	}{
		{"evt_p1", map[string]any{"id": "cs_test_p1", "object": "checkout.session", "customer": "cus_p1",
			"client_reference_id": "victim_p", "metadata": map[string]any{}}, "victim_p", false},
		{"evt_p2", map[string]any{"id": "cs_test_p2", "object": "checkout.session", "customer": "cus_p2",
			"client_reference_id": "carol", "metadata": map[string]any{"user_id": "carol"}}, "carol", true},
	} {
		r.mustDeliver(event(t, c.id, "checkout.session.completed", time.Now(), c.obj), resultProcessed)
		_, ok, err := r.store.CustomerForUser(context.Background(), c.user)
		if err != nil || ok != c.want {
			t.Errorf("%s: %s linked = %v (%v); want %v", c.id, c.user, ok, err, c.want)
		}
	}
}
