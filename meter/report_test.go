package meter

import (
	"context"
	"errors"
	"fmt"
	"math/rand/v2"
	"net/http"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/alicebob/miniredis/v2"
	"github.com/redis/go-redis/v9"
	"github.com/stripe/stripe-go/v76"

	"github.com/tollgate-dev/tollgate/config"
	"github.com/tollgate-dev/tollgate/internal/metrics"
	"github.com/tollgate-dev/tollgate/internal/store"
	"github.com/tollgate-dev/tollgate/internal/testrig"
)

// waitReported polls until the double's accepted meter events add up to
// want for every customer.
func waitReported(t *testing.T, d *testrig.StripeDouble, want map[string]int64, timeout time.Duration) {
	t.Helper()
	testrig.WaitFor(t, timeout, func() error {
		if got := sumEvents(d); !equalSums(got, want) {
			return fmt.Errorf("reported %v; want %v", got, want)
		}
		return nil
	})
}

// waitRow polls until the (customer, "calls") row of `tollgate usage`
// satisfies check. The batcher records a report in Redis only after Stripe
// answered, so the row trails the double's records: a test that waited for
// those waits for the row with this.
func waitRow(t *testing.T, r *rig, customer string, check func(Row) error) {
	t.Helper()
	testrig.WaitFor(t, 10*time.Second, func() error { return check(r.usageRow(customer, "calls")) })
}

// checkEvents checks every accepted event: unique identifier, timestamp
// inside a 1 s window, the configured event name.
func checkEvents(t *testing.T, d *testrig.StripeDouble) {
	t.Helper()
	if twice := d.AcceptedTwice(); len(twice) > 0 {
		t.Errorf("identifiers accepted twice: %v", twice)
	}
	for _, e := range d.MeterEvents() {
		if e.EventName != "api_calls" || len(e.Identifier) > 100 || e.Value <= 0 {
			t.Errorf("event %+v: want event_name api_calls, identifier ≤ 100 chars, positive value", e)
		}
		parts := strings.Split(e.Identifier, "-")
		if ws, err := strconv.ParseInt(parts[len(parts)-3], 10, 64); err != nil || e.Timestamp*1000 < ws || e.Timestamp*1000 >= ws+1000 {
			t.Errorf("event %s: timestamp %d is not inside its window", e.Identifier, e.Timestamp)
		}
	}
}

// Two replicas count; one reports. Stripe fails a share of calls with 500
// and 429 and times out some after recording them: every unit still
// arrives exactly once.
// countUnderFaults counts n random amounts for customers customers, on two
// meters in turn, with the clock a window further every 240 counts, while
// the double fails a share of meter events with 500 and times out some
// after recording them, and from halfway also answers a share with 429.
// It returns what each customer must be billed, and leaves the clock at
// the real time so every window closes.
func countUnderFaults(d *testrig.StripeDouble, clk *fakeClock, a, b *Meter, seed uint64, customers, n int) map[string]int64 {
	d.FailRateWith(0.2, 1, testrig.Fault{Status: 500, Type: "api_error", Message: "An unknown error occurred", ShouldRetry: "true", PathPrefix: "/v1/billing/meter_events"})
	d.TimeoutAfterRecord(0.15, 2)
	want := make(map[string]int64)
	rng := rand.New(rand.NewPCG(seed, seed+1))
	for i := range n {
		c, u := cus(rng.IntN(customers)), int64(1+rng.IntN(5))
		want[c] += u
		[]*Meter{a, b}[i%2].Count(c, "calls", u)
		if i%240 == 239 {
			clk.Add(time.Second)
			time.Sleep(time.Millisecond) // a timeline for the flushers, not a wait for a condition
		}
		if i == n/2 {
			d.FailRate(0.2, http.StatusTooManyRequests, 3)
		}
	}
	clk.Set(time.Now())
	return want
}

func TestReportsExactlyOnceUnderFaults(t *testing.T) {
	r := newRig(t)
	// 6 windows of 24 customers in a moment: the clock runs fast.
	clk := newFakeClock(time.Now().Add(-time.Minute))
	a, b := r.start(func(o *Options) { o.Now = clk.Now }), r.start(func(o *Options) { o.Now = clk.Now })
	want := countUnderFaults(r.double, clk, a, b, 1, 24, 1440)
	waitReported(t, r.double, want, 30*time.Second)
	checkEvents(t, r.double)
	// The double holds an event as soon as it recorded it; an answer it
	// held back is settled in Redis only when a retry of the same
	// identifier is answered "already exists", which can come later. Once
	// every row is settled, every such retry has been answered.
	testrig.WaitFor(t, 10*time.Second, func() error {
		u, err := ReadUsage(context.Background(), r.admin, r.keys)
		if err != nil {
			return err
		}
		for _, row := range u.Rows {
			if w := want[row.Customer]; row.Counted != w || row.Reported != w || row.Pending != 0 || row.Parked != 0 {
				return fmt.Errorf("usage row %+v; want %d counted and reported, nothing pending", row, w)
			}
		}
		if len(u.Rows) != len(want) {
			return fmt.Errorf("usage has %d customers; want %d", len(u.Rows), len(want))
		}
		return nil
	})
	if a.batch.isLeading() == b.batch.isLeading() {
		t.Errorf("leading: a=%v b=%v; want exactly one", a.batch.isLeading(), b.batch.isLeading())
	}
	dups := 0
	for _, req := range r.double.Requests() {
		if req.Status == http.StatusBadRequest {
			dups++
		}
	}
	if dups == 0 {
		t.Errorf("no 'already exists' answers: the timeouts after recording were not exercised")
	}
	t.Logf("%d events, %d requests, %d 'already exists' answers counted as delivered",
		len(r.double.MeterEvents()), len(r.double.Requests()), dups)
}

// The crash window: Stripe accepted the event, the replica died before
// marking it done. The next reporter sends the same identifier, Stripe
// answers "already exists", and the units count as reported once.
func TestCrashAfterStripeAcceptedReusesIdentifier(t *testing.T) {
	r := newRig(t)
	clk := newFakeClock(time.Now().Add(-time.Minute))
	counter := r.start(func(o *Options) { o.Sender, o.Now = nil, clk.Now })
	counter.Count("cus_A", "calls", 9)
	if err := counter.Close(context.Background()); err != nil {
		t.Fatal(err)
	}
	// The dying replica: intent recorded, Stripe called, never settled.
	st := counter.st
	ws := counter.win.start(clk.Now())
	state, it, err := st.begin(context.Background(), "cus_A", "calls", ws, clk.Now())
	if err != nil || state != beginIntent || it.units != 9 {
		t.Fatalf("begin = %d %+v %v; want an intent for 9 units", state, it, err)
	}
	sender := NewStripeSender(testrig.StripeClient(t, r.double.URL()), time.Second)
	rep := Report{Customer: "cus_A", Meter: "calls", Config: config.Meter{EventName: "api_calls"}, Units: 9,
		Timestamp: eventTimestamp(ws), Identifier: it.identifier()}
	if err := sender.Send(context.Background(), rep); err != nil {
		t.Fatalf("Send: %v", err)
	}
	// Counts that arrive after the intent are not part of it.
	clk2 := newFakeClock(clk.Now())
	late := r.start(func(o *Options) { o.Sender, o.Now = nil, clk2.Now })
	late.Count("cus_A", "calls", 1)
	if err := late.Close(context.Background()); err != nil {
		t.Fatal(err)
	}
	next := r.start(nil)
	waitReported(t, r.double, map[string]int64{"cus_A": 10}, 10*time.Second)
	var sameID int
	for _, req := range r.double.Requests() {
		if req.Form.Get("identifier") == it.identifier() {
			sameID++
		}
	}
	events := r.double.MeterEvents()
	if sameID != 2 || len(events) != 2 || events[1].Identifier != Identifier("cus_A", "calls", ws, it.gen, 2) {
		t.Errorf("requests with the crashed identifier = %d, events %+v; want 2 requests and a second event with sequence 2", sameID, events)
	}
	// The batcher settles a report in Redis only after Stripe answered: the
	// double holds the second event before Redis says it was reported.
	waitRow(t, r, "cus_A", func(row Row) error {
		if row.Reported != 10 || row.Pending != 0 {
			return fmt.Errorf("row = %+v; want 10 reported, 0 pending", row)
		}
		return nil
	})
	_ = next
}

// Counts that arrive for a window already reported go out as a new event
// (the next sequence), not lost and not deduplicated away.
func TestLateCountsReportedAsNewEvent(t *testing.T) {
	r := newRig(t)
	clk := newFakeClock(time.Now())
	m := r.start(func(o *Options) { o.Now = clk.Now })
	start := clk.Now()
	m.Count("cus_A", "calls", 3)
	clk.Add(5 * time.Second) // the window closes
	waitReported(t, r.double, map[string]int64{"cus_A": 3}, 10*time.Second)
	clk.Set(start) // a straggler for the same window
	m.Count("cus_A", "calls", 4)
	clk.Add(5 * time.Second)
	waitReported(t, r.double, map[string]int64{"cus_A": 7}, 10*time.Second)
	ev := r.double.MeterEvents()
	if len(ev) != 2 || ev[0].Timestamp != ev[1].Timestamp || !strings.HasSuffix(ev[1].Identifier, "-2") {
		t.Errorf("events = %+v; want two for one window, the second with sequence 2", ev)
	}
}

// A report Stripe refuses for good is parked: counted, shown by `tollgate
// usage`, not retried, and the other customers' reports go on.
func TestPermanentErrorIsParked(t *testing.T) {
	r := newRig(t)
	r.double.FailNextWith(1, testrig.Fault{Status: 400, Type: "invalid_request_error", Code: "resource_missing",
		Message: "No such customer: 'cus_gone'", ShouldRetry: "false", PathPrefix: "/v1/billing/meter_events"})
	clk := newFakeClock(time.Now().Add(-time.Minute))
	m := r.start(func(o *Options) { o.Now = clk.Now })
	m.Count("cus_gone", "calls", 5)
	clk.Add(5 * time.Second) // the window closes
	testrig.WaitFor(t, 10*time.Second, func() error {
		if row := r.usageRow("cus_gone", "calls"); row.Parked != 5 || row.Pending != 0 {
			return fmt.Errorf("cus_gone row %+v; want 5 parked", row)
		}
		// The batcher counts the refusal after parking it in Redis.
		if got := counterValue(m.metrics, "calls", "unknown_customer"); got != 1 {
			return fmt.Errorf("usage_report_errors_total{reason=unknown_customer} = %v; want 1", got)
		}
		return nil
	})
	m.Count("cus_ok", "calls", 2)
	clk.Add(5 * time.Second)
	waitReported(t, r.double, map[string]int64{"cus_ok": 2}, 10*time.Second)
	u, err := ReadUsage(context.Background(), r.admin, r.keys)
	if err != nil || len(u.Parked) != 1 || u.Parked[0].Reason != "unknown_customer" || u.Parked[0].Units != 5 ||
		u.Parked[0].Identifier == "" || !strings.Contains(u.Parked[0].Message, "No such customer") {
		t.Errorf("parked = %+v, %v; want one unknown_customer report of 5 units with its identifier and message", u.Parked, err)
	}
	if got := counterValue(m.metrics, "calls", "unknown_customer"); got != 1 {
		t.Errorf("usage_report_errors_total{reason=unknown_customer} = %v; want 1", got)
	}
	var attempts int
	for _, req := range r.double.Requests() {
		if req.Form.Get("payload[stripe_customer_id]") == "cus_gone" {
			attempts++
		}
	}
	if attempts != 1 {
		t.Errorf("requests for the parked customer = %d; want 1 (parked reports are not retried)", attempts)
	}
}

// One replica reports at a time; a replica that dies without releasing
// the lease loses it within the lease TTL, and one that closes hands it
// over at once.
func TestLeaseHandover(t *testing.T) {
	r := newRig(t)
	a := r.start(nil)
	testrig.WaitFor(t, 5*time.Second, func() error {
		if !a.batch.isLeading() {
			return errors.New("a does not lead")
		}
		return nil
	})
	b := r.start(nil)
	// "Kill" a: its workers stop, the lease is not released.
	a.cancel()
	a.wg.Wait()
	died := time.Now()
	testrig.WaitFor(t, 5*time.Second, func() error {
		if !b.batch.isLeading() {
			return errors.New("b does not lead")
		}
		return nil
	})
	if took := time.Since(died); took > a.cfg.LeaseTTL+a.cfg.LeaseTTL/3+500*time.Millisecond {
		t.Errorf("takeover after %v; want within the lease TTL %v (+ one retry period)", took, a.cfg.LeaseTTL)
	}
	c := r.start(nil)
	if err := b.Close(context.Background()); err != nil {
		t.Fatal(err)
	}
	closed := time.Now()
	testrig.WaitFor(t, 5*time.Second, func() error {
		if !c.batch.isLeading() {
			return errors.New("c does not lead")
		}
		return nil
	})
	if took := time.Since(closed); took > c.cfg.LeaseTTL/3+500*time.Millisecond {
		t.Errorf("takeover after a release took %v; want about one retry period", took)
	}
}

// mode usage_records: the subscription item for the price is looked up
// once, each window is one increment with an Idempotency-Key derived from
// its identifier.
func TestUsageRecordsMode(t *testing.T) {
	r := newRig(t)
	records := r.double.ServeUsageRecords()
	r.double.PutSubscription(&stripe.Subscription{
		ID: "sub_T1", Customer: &stripe.Customer{ID: "cus_A"}, Status: stripe.SubscriptionStatusActive,
		Items: &stripe.SubscriptionItemList{Data: []*stripe.SubscriptionItem{
			{ID: "si_other", Price: &stripe.Price{ID: "price_flat"}},
			{ID: "si_T1", Price: &stripe.Price{ID: "price_metered"}},
		}},
	})
	clk := newFakeClock(time.Now())
	m := r.start(func(o *Options) {
		o.Now = clk.Now
		o.Config.Meters = map[string]*config.Meter{"calls": {Mode: config.ModeUsageRecords, Price: "price_metered"}}
	})
	waitSum := func(want int64) {
		t.Helper()
		testrig.WaitFor(t, 15*time.Second, func() error {
			if got := records.Sum("si_T1"); got != want {
				return fmt.Errorf("usage records for si_T1 add up to %d; want %d", got, want)
			}
			return nil
		})
	}
	m.Count("cus_A", "calls", 1)
	clk.Add(5 * time.Second)
	waitSum(1)
	// Now with answers lost after Stripe recorded them: the retry's
	// Idempotency-Key replays the first answer instead of adding again.
	r.double.TimeoutAfterRecord(0.5, 5)
	for i := range 3 {
		m.Count("cus_A", "calls", int64(i+2))
		clk.Add(time.Second)
	}
	clk.Add(5 * time.Second)
	waitSum(10)
	for _, rec := range records.Records() {
		if rec.Action != "increment" || !strings.HasPrefix(rec.IdempotencyKey, "tollgate-ur-tg-cus_A-calls-") {
			t.Errorf("record %+v: want action increment and an idempotency key from the identifier", rec)
		}
	}
	if n := r.double.Count("GET", "/v1/subscriptions"); n != 1 {
		t.Errorf("subscription lookups = %d; want 1 (cached)", n)
	}
	// Redis records the last increment only after Stripe answered it.
	waitRow(t, r, "cus_A", func(row Row) error {
		if row.Reported != 10 {
			return fmt.Errorf("row = %+v; want 10 reported", row)
		}
		return nil
	})
}

// The global rate limit spaces Stripe calls.
func TestRateLimit(t *testing.T) {
	p := newPacer(20) // 50 ms apart
	start := time.Now()
	for range 5 {
		if err := p.wait(context.Background()); err != nil {
			t.Fatal(err)
		}
	}
	if took := time.Since(start); took < 190*time.Millisecond {
		t.Errorf("5 calls at 20/s took %v; want at least 200ms minus the first slot", took)
	}
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	if err := p.wait(ctx); err == nil {
		t.Errorf("wait with a cancelled context = nil; want an error")
	}
}

// The embedded store (miniredis, `tollgate demo` and Redis-less runs) runs
// the same scripts: counts are flushed, reported once, and shown.
func TestEmbeddedStoreReports(t *testing.T) {
	mr := miniredis.RunT(t)
	rdb := redis.NewClient(&redis.Options{Addr: mr.Addr()})
	defer rdb.Close()
	d := testrig.NewStripeDouble(t)
	clk := newFakeClock(time.Now().Add(-time.Minute))
	o := Options{Config: testMetering(), Redis: rdb, Keys: store.Keys{Prefix: "tg:"}, Metrics: metrics.New(), Logger: testLogger(),
		Sender: NewStripeSender(testrig.StripeClient(t, d.URL()), time.Second), Now: clk.Now}
	m, err := New(o)
	if err != nil {
		t.Fatal(err)
	}
	defer m.Close(context.Background())
	m.Count("cus_A", "calls", 4)
	m.Count("cus_B", "calls", 6)
	clk.Add(5 * time.Second)
	waitReported(t, d, map[string]int64{"cus_A": 4, "cus_B": 6}, 10*time.Second)
	m.Count("cus_A", "calls", 1)
	clk.Add(-5 * time.Second) // a late count for the reported window
	m.Count("cus_A", "calls", 2)
	clk.Add(10 * time.Second)
	waitReported(t, d, map[string]int64{"cus_A": 7, "cus_B": 6}, 10*time.Second)
	checkEvents(t, d)
	// Redis records the last report only after Stripe answered it.
	testrig.WaitFor(t, 10*time.Second, func() error {
		u, err := ReadUsage(context.Background(), rdb, store.Keys{Prefix: "tg:"})
		if err != nil || len(u.Rows) != 2 || u.Rows[0].Reported != 7 || u.Rows[0].Pending != 0 {
			return fmt.Errorf("ReadUsage = %+v, %v; want cus_A 7 reported, nothing pending", u, err)
		}
		return nil
	})
}

// An intent left unsettled for longer than Stripe remembers identifiers
// (at least 24 h) is not resent, which could bill it twice: it is parked
// as stale_intent for an operator.
func TestStaleIntentIsParkedNotResent(t *testing.T) {
	r := newRig(t)
	clk := newFakeClock(time.Now().Add(-time.Minute))
	counter := r.start(func(o *Options) { o.Sender, o.Now = nil, clk.Now })
	counter.Count("cus_S", "calls", 4)
	if err := counter.Close(context.Background()); err != nil {
		t.Fatal(err)
	}
	ws := counter.win.start(clk.Now())
	// A reporter recorded the intent 21 hours ago, then the outage began.
	if state, _, err := counter.st.begin(context.Background(), "cus_S", "calls", ws, clk.Now().Add(-21*time.Hour)); err != nil || state != beginIntent {
		t.Fatalf("begin = %d, %v", state, err)
	}
	r.start(nil)
	testrig.WaitFor(t, 10*time.Second, func() error {
		if row := r.usageRow("cus_S", "calls"); row.Parked != 4 || row.Pending != 0 {
			return fmt.Errorf("row %+v; want 4 parked", row)
		}
		return nil
	})
	u, err := ReadUsage(context.Background(), r.admin, r.keys)
	if err != nil || len(u.Parked) != 1 || u.Parked[0].Reason != "stale_intent" {
		t.Errorf("parked = %+v, %v; want one stale_intent report", u.Parked, err)
	}
	if n := r.double.Count("POST", "/v1/billing/meter_events"); n != 0 {
		t.Errorf("the stale intent was sent %d times; want 0", n)
	}
}

// Cluster layout: a flush that died after its per-customer script but
// before the due-index update left units that no scan finds; the leader's
// sweep puts the customer back in the index and they are reported.
func TestSweepReportsWindowsMissingFromTheDueIndex(t *testing.T) {
	r := newRig(t)
	clk := newFakeClock(time.Now().Add(-time.Minute))
	crashed := r.start(func(o *Options) { o.Cluster, o.Sender, o.Now = true, nil, clk.Now; o.Config.FlushInterval = time.Hour })
	ws := crashed.win.start(clk.Now())
	c := &chunk{seq: 1, gen: "g1", entries: []entry{{ckey{"cus_Z", "calls", ws}, 9}}}
	keys := []string{crashed.st.keys.Customer("cus_Z", "usage", "flushed")}
	if bad, err := crashed.st.runFlush(context.Background(), keys, c, c.entries, clk.Now(), false); err != nil || len(bad) > 0 {
		t.Fatal(err, bad)
	}
	r.admin.SAdd(context.Background(), crashed.st.customersKey(), "cus_Z") // written before the scripts
	r.start(func(o *Options) { o.Cluster = true })
	waitReported(t, r.double, map[string]int64{"cus_Z": 9}, 20*time.Second)
}

// A cached subscription item that Stripe now refuses (the customer changed
// plans) is looked up afresh, not parked.
func TestUsageRecordsStaleItemLookedUpAgain(t *testing.T) {
	r := newRig(t)
	records := r.double.ServeUsageRecords()
	subWith := func(item string) *stripe.Subscription {
		return &stripe.Subscription{ID: "sub_T", Customer: &stripe.Customer{ID: "cus_A"}, Status: stripe.SubscriptionStatusActive,
			Items: &stripe.SubscriptionItemList{Data: []*stripe.SubscriptionItem{{ID: item, Price: &stripe.Price{ID: "price_metered"}}}}}
	}
	r.double.PutSubscription(subWith("si_old"))
	clk := newFakeClock(time.Now())
	m := r.start(func(o *Options) {
		o.Now = clk.Now
		o.Config.Meters = map[string]*config.Meter{"calls": {Mode: config.ModeUsageRecords, Price: "price_metered"}}
	})
	m.Count("cus_A", "calls", 1)
	clk.Add(5 * time.Second)
	testrig.WaitFor(t, 15*time.Second, func() error {
		if records.Sum("si_old") != 1 {
			return fmt.Errorf("first record not there")
		}
		return nil
	})
	r.double.PutSubscription(subWith("si_new"))
	r.double.FailNextWith(1, testrig.Fault{Status: 404, Type: "invalid_request_error", Code: "resource_missing",
		Message: "No such subscription item: 'si_old'", ShouldRetry: "false", Method: "POST", PathPrefix: "/v1/subscription_items/si_old"})
	m.Count("cus_A", "calls", 4)
	clk.Add(5 * time.Second)
	testrig.WaitFor(t, 15*time.Second, func() error {
		if got := records.Sum("si_new"); got != 4 {
			return fmt.Errorf("si_new has %d; want 4", got)
		}
		return nil
	})
	// Redis records the report only after Stripe answered it.
	waitRow(t, r, "cus_A", func(row Row) error {
		if row.Parked != 0 || row.Reported != 5 {
			return fmt.Errorf("row = %+v; want 5 reported, nothing parked", row)
		}
		return nil
	})
}
