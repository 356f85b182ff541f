package webhook

import (
	"context"
	"fmt"
	"log/slog"
	"strings"
	"testing"
	"time"

	"github.com/stripe/stripe-go/v76"

	"github.com/tollgate-dev/tollgate/internal/testrig"
)

// deliveries returns the entries of the rig's delivery log f selects.
func (r *rig) deliveries(f Filter) []Delivery {
	r.t.Helper()
	out, err := r.log.List(context.Background(), f)
	if err != nil {
		r.t.Fatal(err)
	}
	return out
}

// Every delivery is recorded with what it did: processed, duplicate,
// ignored, failed (with the cause, never Stripe's message to the caller),
// refused as malformed, and refused as unverifiable.
func TestEveryDeliveryIsRecorded(t *testing.T) {
	r := newRig(t, rigOptions{})
	r.double.PutCustomer(&stripe.Customer{ID: "cus_log"})
	r.double.PutSubscription(sub("sub_log", "cus_log", "active", "price_pro", time.Now().Add(time.Hour)))
	before := time.Now()

	ok := subEvent(t, "evt_log_ok", "customer.subscription.updated", "cus_log", "", time.Now())
	r.mustDeliver(ok, resultProcessed)
	r.mustDeliver(ok, resultDuplicate)
	r.mustDeliver(event(t, "evt_log_other", "charge.refunded", time.Now(), map[string]any{"id": "ch_1", "object": "charge"}), resultIgnored)
	r.double.FailNextWith(1, testrig.Fault{Status: 400, Type: "invalid_request_error", ShouldRetry: "false",
		Message: "injected", Method: "GET", PathPrefix: "/v1/subscriptions"})
	if code, _ := r.deliver(subEvent(t, "evt_log_fail", "customer.subscription.created", "cus_log", "", time.Now())); code != 500 {
		t.Fatalf("failing delivery = %d; want 500", code)
	}
	noCustomer := event(t, "evt_log_bad", "invoice.paid", time.Now(), map[string]any{"id": "in_1", "object": "invoice"})
	if code, _ := r.deliver(noCustomer); code != 400 {
		t.Fatalf("malformed delivery = %d; want 400", code)
	}
	if code, _ := post(t, r.url, ok, SignatureHeader(ok, "whsec_wrong", time.Now()), ""); code != 400 {
		t.Fatalf("badly signed delivery = %d; want 400", code)
	}

	got := r.deliveries(Filter{})
	want := []struct {
		event, typ, customer, result string
		status                       int
		errHas                       string
	}{
		{"", "unverified", "", resultInvalid, 400, "no valid signature"},
		{"evt_log_bad", "invoice.paid", "", resultInvalid, 400, "no customer id"},
		{"evt_log_fail", "customer.subscription.created", "cus_log", resultFailed, 500, "injected"},
		{"evt_log_other", "charge.refunded", "", resultIgnored, 200, ""},
		{"evt_log_ok", "customer.subscription.updated", "cus_log", resultDuplicate, 200, ""},
		{"evt_log_ok", "customer.subscription.updated", "cus_log", resultProcessed, 200, ""},
	}
	if len(got) != len(want) {
		t.Fatalf("log holds %d entries; want %d: %+v", len(got), len(want), got)
	}
	for i, w := range want {
		g := got[i]
		if g.Event != w.event || g.Type != w.typ || g.Customer != w.customer || g.Result != w.result || g.Status != w.status ||
			!strings.Contains(g.Error, w.errHas) || (w.errHas == "" && g.Error != "") {
			t.Errorf("entry %d = %+v; want event %q type %q customer %q result %q status %d error with %q",
				i, g, w.event, w.typ, w.customer, w.result, w.status, w.errHas)
		}
		if g.Source != SourceWebhook || g.Replica != ReplicaName() || g.ID == "" || g.DurationMS <= 0 ||
			g.At.Before(before.Add(-time.Second)) || g.At.After(time.Now().Add(time.Second)) {
			t.Errorf("entry %d = %+v; want source webhook, replica %q, an id, a duration and a time of now", i, g, ReplicaName())
		}
	}
}

// The filters of `tollgate events`: customer, type (exact or a ".*"
// prefix), failed only, since, limit; on Redis and on the embedded store.
func TestDeliveryLogFilters(t *testing.T) {
	t.Run("Redis", func(t *testing.T) { testDeliveryLogFilters(t, false) })
	t.Run("Embedded", func(t *testing.T) { testDeliveryLogFilters(t, true) })
}

func testDeliveryLogFilters(t *testing.T, embedded bool) {
	st := openStore(t, embedded)
	l := NewDeliveryLog(st.Client, st.Keys, 0, 0)
	ctx := context.Background()
	for _, d := range []Delivery{
		{Event: "evt_1", Type: "customer.subscription.created", Customer: "cus_a", Result: resultProcessed},
		{Event: "evt_2", Type: "invoice.paid", Customer: "cus_b", Result: resultFailed, Error: "boom"},
		{Event: "evt_3", Type: "customer.subscription.deleted", Customer: "cus_b", Result: resultBusy},
		{Event: "evt_4", Type: "customer.subscription.updated", Customer: "cus_a", Result: resultDuplicate, Source: SourceReplay},
	} {
		if d.Source == "" {
			d.Source = SourceWebhook
		}
		if err := l.Record(ctx, d); err != nil {
			t.Fatal(err)
		}
	}
	ids := func(ds []Delivery) string {
		var out []string
		for _, d := range ds {
			out = append(out, d.Event)
		}
		return strings.Join(out, ",")
	}
	for _, c := range []struct {
		name string
		f    Filter
		want string
	}{
		{"all, newest first", Filter{}, "evt_4,evt_3,evt_2,evt_1"},
		{"customer", Filter{Customer: "cus_a"}, "evt_4,evt_1"},
		{"exact type", Filter{Type: "invoice.paid"}, "evt_2"},
		{"type prefix", Filter{Type: "customer.subscription.*"}, "evt_4,evt_3,evt_1"},
		{"a type is not a prefix without *", Filter{Type: "customer.subscription"}, ""},
		{"failed", Filter{Failed: true}, "evt_3,evt_2"},
		{"failed for a customer", Filter{Failed: true, Customer: "cus_a"}, ""},
		{"source", Filter{Source: SourceReplay}, "evt_4"},
		{"limit", Filter{Limit: 2}, "evt_4,evt_3"},
		{"since the future", Filter{Since: time.Now().Add(time.Minute)}, ""},
		{"since the past", Filter{Since: time.Now().Add(-time.Minute)}, "evt_4,evt_3,evt_2,evt_1"},
	} {
		got, err := l.List(ctx, c.f)
		if err != nil {
			t.Fatal(err)
		}
		if ids(got) != c.want {
			t.Errorf("%s: List(%+v) = %q; want %q", c.name, c.f, ids(got), c.want)
		}
	}
}

// The log keeps at most its size (the newest entries) and nothing older
// than its age, and List pages through a log longer than one read.
func TestDeliveryLogIsCapped(t *testing.T) {
	st := openStore(t, false)
	ctx := context.Background()
	l := NewDeliveryLog(st.Client, st.Keys, 600, time.Hour)
	for i := range 700 {
		if err := l.Record(ctx, Delivery{Event: fmt.Sprintf("evt_%d", i), Type: "invoice.paid", Result: resultProcessed}); err != nil {
			t.Fatal(err)
		}
	}
	all, err := l.List(ctx, Filter{})
	if err != nil {
		t.Fatal(err)
	}
	if len(all) != 600 || all[0].Event != "evt_699" || all[599].Event != "evt_100" {
		t.Fatalf("after 700 writes to a log of 600: %d entries, newest %q, oldest %q; want 600, evt_699, evt_100",
			len(all), all[0].Event, all[len(all)-1].Event)
	}
	// A write trims every entry older than the log's age.
	short := NewDeliveryLog(st.Client, st.Keys, 600, 200*time.Millisecond)
	testrig.WaitFor(t, 10*time.Second, func() error {
		if err := short.Record(ctx, Delivery{Event: "evt_late", Type: "invoice.paid", Result: resultProcessed}); err != nil {
			return err
		}
		if got, err := short.List(ctx, Filter{Event: "evt_699"}); err != nil || len(got) > 0 {
			return fmt.Errorf("an entry older than the age is still there (%v)", err)
		}
		return nil
	})
	rest, err := short.List(ctx, Filter{})
	if err != nil {
		t.Fatal(err)
	}
	for _, d := range rest {
		if d.Event != "evt_late" {
			t.Errorf("after the age trim the log holds %+v; want only recent entries", d)
		}
	}
}

// A log that cannot be written (its Redis is gone) costs only the entry:
// the delivery is processed and answered 200, and the failure is logged.
func TestDeliveryLogFailureNeverFailsTheDelivery(t *testing.T) {
	logRedis := testrig.StartRedis(t, testrig.WithoutPersistence())
	logStore := openStoreURL(t, logRedis.URL())
	var logs testrig.LogBuffer
	r := newRig(t, rigOptions{mutate: func(o *Options) {
		o.Deliveries = NewDeliveryLog(logStore.Client, logStore.Keys, 0, 0)
		o.Logger = slog.New(slog.NewJSONHandler(&logs, nil))
	}})
	r.double.PutCustomer(&stripe.Customer{ID: "cus_nolog"})
	r.double.PutSubscription(sub("sub_nolog", "cus_nolog", "active", "price_pro", time.Now().Add(time.Hour)))
	logRedis.Kill()
	r.mustDeliver(subEvent(t, "evt_nolog", "customer.subscription.created", "cus_nolog", "", time.Now()), resultProcessed)
	if st := r.state("cus_nolog"); st == nil || st.Subscriptions[0].Status != "active" {
		t.Errorf("state after a delivery whose log write failed = %+v; want the subscription", st)
	}
	if !strings.Contains(logs.String(), "delivery log not written") {
		t.Errorf("the failed log write was not logged:\n%s", logs.String())
	}
}

// Unverifiable deliveries come from anyone: a flood of them is recorded
// only a few at a time, and does not push out the real deliveries.
func TestUnverifiedFloodDoesNotFillTheLog(t *testing.T) {
	r := newRig(t, rigOptions{})
	r.double.PutCustomer(&stripe.Customer{ID: "cus_flood"})
	real := subEvent(t, "evt_flood_real", "customer.subscription.created", "cus_flood", "", time.Now())
	r.mustDeliver(real, resultProcessed)
	for range 100 {
		if code, _ := post(t, r.url, real, SignatureHeader(real, "whsec_attacker", time.Now()), ""); code != 400 {
			t.Fatalf("forged delivery = %d; want 400", code)
		}
	}
	unverified := r.deliveries(Filter{Type: "unverified"})
	if n := len(unverified); n < 1 || n > unverifiedBurst+5 {
		t.Errorf("%d of 100 forged deliveries recorded; want between 1 and about %d", n, unverifiedBurst)
	}
	if got := r.deliveries(Filter{Event: "evt_flood_real"}); len(got) != 1 {
		t.Errorf("the real delivery's entries = %+v; want it kept", got)
	}
}
