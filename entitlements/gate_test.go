package entitlements

import (
	"context"
	"log/slog"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus/testutil"
	"github.com/stripe/stripe-go/v76"

	"github.com/tollgate-dev/tollgate/config"
	"github.com/tollgate-dev/tollgate/internal/metrics"
	"github.com/tollgate-dev/tollgate/internal/testrig"
)

// clock is a real clock that tests can move forward.
type clock struct{ offset atomic.Int64 }

func (c *clock) now() time.Time          { return time.Now().Add(time.Duration(c.offset.Load())) }
func (c *clock) advance(d time.Duration) { c.offset.Add(int64(d)) }

func gating() config.Gating {
	g := config.Default().Gating
	g.MaxStaleness = 5 * time.Minute
	return g
}

func newGate(t *testing.T, s Store, src Source, clk *clock) (*Gate, *metrics.Metrics) {
	t.Helper()
	m := metrics.New()
	g := New(Options{Store: s, Source: src, Plans: testPlans, Gating: gating(), Metrics: m, Logger: quiet, Now: clk.now})
	return g, m
}

// runGate starts the change feed and waits until it is live.
func runGate(t *testing.T, g *Gate) {
	t.Helper()
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() { g.Run(ctx); close(done) }()
	t.Cleanup(func() { cancel(); <-done })
	testrig.Eventually(t, "change feed live", g.Live)
}

func stripeSub(customer, id, status, price string, periodEnd time.Time) *stripe.Subscription {
	return &stripe.Subscription{
		ID: id, Status: stripe.SubscriptionStatus(status), Customer: &stripe.Customer{ID: customer},
		CurrentPeriodStart: periodEnd.AddDate(0, -1, 0).Unix(), CurrentPeriodEnd: periodEnd.Unix(),
		Items: &stripe.SubscriptionItemList{Data: []*stripe.SubscriptionItem{{ID: "si_" + id, Price: &stripe.Price{ID: price}}}},
	}
}

var reqSub = config.Require{Subscription: true}

func put(t *testing.T, s Store, st *State) {
	t.Helper()
	if err := s.Update(context.Background(), st.Customer, func(*State) (*State, error) { return st, nil }); err != nil {
		t.Fatal(err)
	}
}

// A first-seen paying customer is loaded from Stripe exactly once, however
// many requests arrive together, and is never denied for being new.
func TestFirstSightLoadsFromStripeOnce(t *testing.T) {
	d := testrig.NewStripeDouble(t)
	d.PutCustomer(&stripe.Customer{ID: "cus_new"})
	d.PutSubscription(stripeSub("cus_new", "sub_1", "active", "price_pro", time.Now().Add(24*time.Hour)))
	d.SetActiveEntitlements("cus_new", "beta")
	s := openStore(t, config.Redis{Prefix: "tg:"})
	g, m := newGate(t, s, NewStripeSource(testrig.StripeClient(t, d.URL())), &clock{})

	var wg sync.WaitGroup
	var denied atomic.Int32
	for i := 0; i < 50; i++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			if dec := g.Decide(context.Background(), "cus_new", config.Require{Features: []string{"exports", "beta"}}, false); !dec.Allowed() {
				denied.Add(1)
			}
		}()
	}
	wg.Wait()
	if n := denied.Load(); n != 0 {
		t.Errorf("%d of 50 concurrent first requests denied; want 0", n)
	}
	if n := d.Count("GET", "/v1/customers/cus_new"); n != 1 {
		t.Errorf("Stripe customer fetched %d times; want 1 (single-flight)", n)
	}
	if st, err := s.Get(context.Background(), "cus_new"); err != nil || st.Source != "lookup" || len(st.Subscriptions) != 1 {
		t.Errorf("stored after lookup = %+v, %v; want the Stripe state for the other replicas", st, err)
	}
	before := d.Count("GET", "")
	g.Decide(context.Background(), "cus_new", reqSub, false)
	if hits := testutil.ToFloat64(m.EntitlementCache.WithLabelValues("hit")); hits != 1 || d.Count("GET", "") != before {
		t.Errorf("cache hits = %v, Stripe calls %d→%d; want the next request served from memory", hits, before, d.Count("GET", ""))
	}
}

func TestUnknownCustomerNegativelyCached(t *testing.T) {
	d := testrig.NewStripeDouble(t)
	clk := &clock{}
	g, _ := newGate(t, openStore(t, config.Redis{Prefix: "tg:"}), NewStripeSource(testrig.StripeClient(t, d.URL())), clk)
	for i := 0; i < 5; i++ {
		if dec := g.Decide(context.Background(), "cus_ghost", reqSub, false); dec.Allowed() || dec.Denial.Code != "subscription_required" {
			t.Fatalf("unknown customer = %+v; want 402 subscription_required", dec.Denial)
		}
	}
	if n := d.Count("GET", "/v1/customers/cus_ghost"); n != 1 {
		t.Errorf("Stripe asked %d times within the negative TTL; want 1", n)
	}
	clk.advance(gating().NegativeTTL + time.Second)
	g.Decide(context.Background(), "cus_ghost", reqSub, false)
	if n := d.Count("GET", "/v1/customers/cus_ghost"); n != 2 {
		t.Errorf("Stripe asked %d times after the TTL; want 2", n)
	}
}

// Stripe failing on first sight is not a denial for being new: 503, retry.
func TestFirstSightStripeDownIsUnavailable(t *testing.T) {
	d := testrig.NewStripeDouble(t)
	d.FailNext(10, 500)
	g, _ := newGate(t, openStore(t, config.Redis{Prefix: "tg:"}), NewStripeSource(testrig.StripeClient(t, d.URL())), &clock{})
	dec := g.Decide(context.Background(), "cus_x", reqSub, false)
	if dec.Allowed() || dec.Denial.Code != "entitlements_unavailable" {
		t.Errorf("Stripe down = %+v; want 503 entitlements_unavailable", dec.Denial)
	}
	if dec := g.Decide(context.Background(), "cus_x", reqSub, true); !dec.Allowed() {
		t.Errorf("fail_open route denied: %+v", dec.Denial)
	}
}

// Two replicas on one real Redis: a change written through one is enforced
// by the other, without a request to the store on the decision path.
func TestChangeReachesOtherReplica(t *testing.T) {
	rd := testrig.StartRedis(t, testrig.WithoutPersistence())
	cfg := config.Redis{URL: rd.URL(), Prefix: "tg:"}
	a, b := openStore(t, cfg), openStore(t, cfg)
	put(t, a, &State{Customer: "cus_r", Subscriptions: []Subscription{sub("active", "price_pro")}})
	clk := &clock{}
	clk.advance(-time.Until(t0.Add(-time.Hour))) // decisions happen inside the period
	ga, _ := newGate(t, a, nil, clk)
	gb, _ := newGate(t, b, nil, clk)
	runGate(t, ga)
	runGate(t, gb)
	for _, g := range []*Gate{ga, gb} {
		if dec := g.Decide(context.Background(), "cus_r", config.Require{Plans: []string{"pro"}}, false); !dec.Allowed() {
			t.Fatalf("before the change: %+v", dec.Denial)
		}
	}
	start := time.Now()
	put(t, a, &State{Customer: "cus_r", Subscriptions: []Subscription{sub("canceled", "price_pro")}})
	testrig.Eventually(t, "replica b to enforce the cancellation", func() bool {
		return !gb.Decide(context.Background(), "cus_r", reqSub, false).Allowed()
	})
	t.Logf("change enforced on the other replica after %v", time.Since(start))
}

// With Redis killed, decisions use the last known state until
// max_staleness, then fail closed (fail_open routes stay open); when Redis
// returns, decisions recover by themselves.
func TestStoreOutage(t *testing.T) {
	rd := testrig.StartRedis(t)
	s := openStore(t, config.Redis{URL: rd.URL(), Prefix: "tg:"})
	put(t, s, &State{Customer: "cus_o", Subscriptions: []Subscription{sub("active", "price_pro")}})
	clk := &clock{}
	clk.advance(-time.Until(t0.Add(-time.Hour)))
	g, m := newGate(t, s, nil, clk)
	runGate(t, g)
	if !g.Decide(context.Background(), "cus_o", reqSub, false).Allowed() {
		t.Fatal("denied before the outage")
	}
	rd.Kill()
	testrig.Eventually(t, "the gate to notice the outage", func() bool { return !g.Live() })

	clk.advance(gating().MaxStaleness - 10*time.Second)
	if dec := g.Decide(context.Background(), "cus_o", reqSub, false); !dec.Allowed() {
		t.Errorf("inside max_staleness: %+v; want the last known state used", dec.Denial)
	}
	if got := testutil.ToFloat64(m.EntitlementCache.WithLabelValues("stale")); got != 1 {
		t.Errorf("stale decisions = %v; want 1", got)
	}
	clk.advance(20 * time.Second)
	if dec := g.Decide(context.Background(), "cus_o", reqSub, false); dec.Allowed() || dec.Denial.Code != "entitlements_unavailable" {
		t.Errorf("past max_staleness: %+v; want 503 entitlements_unavailable", dec.Denial)
	}
	if dec := g.Decide(context.Background(), "cus_o", reqSub, true); !dec.Allowed() {
		t.Errorf("fail_open past max_staleness denied: %+v", dec.Denial)
	}
	if dec := g.Decide(context.Background(), "cus_unseen", reqSub, false); dec.Allowed() || dec.Denial.Code != "entitlements_unavailable" {
		t.Errorf("unseen customer during outage: %+v; want 503", dec.Denial)
	}

	rd.Restart() // on its AOF: the state is still there
	back := time.Now()
	testrig.Eventually(t, "decisions to recover", func() bool {
		return g.Decide(context.Background(), "cus_o", reqSub, false).Allowed()
	})
	t.Logf("decisions recovered %v after Redis answered again", time.Since(back).Round(time.Millisecond))
	testrig.Eventually(t, "the feed to be live again", g.Live)
}

// Issue 11: staleness is counted from the feed's last proof that the cache
// was current, not from when the customer was loaded. A customer loaded
// long before the outage (more than max_staleness ago) keeps its decisions
// for max_staleness after the last proof; a customer first seen during the
// outage gets 503, never 402.
func TestOutageAgesFromLastProofNotFromLoad(t *testing.T) {
	rd := testrig.StartRedis(t)
	s := openStore(t, config.Redis{URL: rd.URL(), Prefix: "tg:"})
	put(t, s, &State{Customer: "cus_old", Subscriptions: []Subscription{sub("active", "price_pro")}})
	clk := &clock{}
	clk.advance(-time.Until(t0.Add(-time.Hour)))
	g, _ := newGate(t, s, nil, clk)
	g.cfg.RefreshInterval = 0 // no periodic reload renews the load time
	runGate(t, g)
	if !g.Decide(context.Background(), "cus_old", reqSub, false).Allowed() {
		t.Fatal("denied before the outage")
	}
	// Time passes, the feed keeps proving the cache current.
	clk.advance(2 * gating().MaxStaleness)
	proved := clk.now()
	testrig.Eventually(t, "a proof after the clock moved", func() bool { return g.confirmed.Load() >= proved.UnixNano() })

	rd.Kill()
	testrig.Eventually(t, "the gate to notice the outage", func() bool { return !g.Live() })
	for _, c := range []struct {
		name      string
		advance   time.Duration
		customer  string
		wantAllow bool
		wantCode  string
	}{
		{"loaded long ago, just after the outage began", 0, "cus_old", true, ""},
		{"first seen during the outage", 0, "cus_new", false, "entitlements_unavailable"},
		{"inside max_staleness of the last proof", gating().MaxStaleness - 30*time.Second, "cus_old", true, ""},
		{"past max_staleness of the last proof", time.Minute, "cus_old", false, "entitlements_unavailable"},
	} {
		clk.advance(c.advance)
		dec := g.Decide(context.Background(), c.customer, reqSub, false)
		if got := dec.Allowed(); got != c.wantAllow || (!got && dec.Denial.Code != c.wantCode) {
			t.Errorf("%s: allowed=%v denial=%+v; want allowed=%v code %q", c.name, got, dec.Denial, c.wantAllow, c.wantCode)
		}
	}
}

// A lost announcement is healed by the periodic refresh.
func TestRefreshHealsLostAnnouncement(t *testing.T) {
	rd := testrig.StartRedis(t, testrig.WithoutPersistence())
	s := openStore(t, config.Redis{URL: rd.URL(), Prefix: "tg:"})
	put(t, s, &State{Customer: "cus_l", Subscriptions: []Subscription{sub("active", "price_pro")}})
	clk := &clock{}
	clk.advance(-time.Until(t0.Add(-time.Hour)))
	g, _ := newGate(t, s, nil, clk)
	g.cfg.RefreshInterval = 200 * time.Millisecond
	runGate(t, g)
	if !g.Decide(context.Background(), "cus_l", reqSub, false).Allowed() {
		t.Fatal("denied before the change")
	}
	// Write behind the store's back: no announcement.
	raw := `{"customer":"cus_l","subscriptions":[{"id":"s","status":"canceled","prices":["price_pro"]}]}`
	if err := rd.Client().Set(context.Background(), "tg:{cus_l}:state", raw, 0).Err(); err != nil {
		t.Fatal(err)
	}
	testrig.Eventually(t, "the refresh to pick up the silent change", func() bool {
		return !g.Decide(context.Background(), "cus_l", reqSub, false).Allowed()
	})
}

// hookedStore runs a hook inside the first Get, to interleave a write and
// its announcement with a first-sight load.
type hookedStore struct {
	Store
	once sync.Once
	hook func()
}

func (h *hookedStore) Get(ctx context.Context, customer string) (*State, error) {
	st, err := h.Store.Get(ctx, customer)
	h.once.Do(h.hook)
	return st, err
}

// A change written and announced while a first-sight load was between its
// read and its cache write must not leave the older state cached (the
// watcher skipped the announcement: the customer was not cached yet).
func TestLoadRacingAnAnnouncementReadsAgain(t *testing.T) {
	s := openStore(t, config.Redis{Prefix: "tg:"})
	put(t, s, &State{Customer: "cus_race", Subscriptions: []Subscription{sub("active", "price_pro")}})
	clk := &clock{}
	clk.advance(-time.Until(t0.Add(-time.Hour)))
	hs := &hookedStore{Store: s}
	g, _ := newGate(t, hs, nil, clk)
	hs.hook = func() {
		put(t, s, &State{Customer: "cus_race", Subscriptions: []Subscription{sub("canceled", "price_pro")}})
		g.announced.Add(1) // the watcher saw the announcement; cus_race was not cached yet
		_ = g.reload(context.Background(), "cus_race")
	}
	if dec := g.Decide(context.Background(), "cus_race", reqSub, false); dec.Allowed() {
		t.Error("the load cached the state from before the cancellation")
	}
}

// A running subscription that opens nothing because its price is not in
// plans is logged when it is loaded, so the operator hears of a price
// missing from the config before its payers complain; an ended one is not.
func TestIgnoredSubscriptionIsLogged(t *testing.T) {
	rd := testrig.StartRedis(t, testrig.WithoutPersistence())
	s := openStore(t, config.Redis{URL: rd.URL(), Prefix: "tg:"})
	put(t, s, &State{Customer: "cus_new_price", Subscriptions: []Subscription{sub("active", "price_not_in_plans")}})
	put(t, s, &State{Customer: "cus_ended", Subscriptions: []Subscription{sub("canceled", "price_not_in_plans")}})
	logs := &testrig.LogBuffer{}
	g := New(Options{Store: s, Plans: testPlans, Gating: gating(), Logger: slog.New(slog.NewJSONHandler(logs, nil)),
		Now: func() time.Time { return t0.Add(-time.Hour) }})
	for _, c := range []string{"cus_new_price", "cus_ended"} {
		if d := g.Decide(context.Background(), c, reqSub, false); d.Allowed() {
			t.Errorf("%s allowed; want denied (no price in plans)", c)
		}
	}
	out := logs.String()
	if !strings.Contains(out, "holds no price listed in plans") || !strings.Contains(out, `"customer":"cus_new_price"`) {
		t.Errorf("no warning for the running subscription; logs:\n%s", out)
	}
	if strings.Contains(out, "cus_ended") {
		t.Errorf("warned about an ended subscription; logs:\n%s", out)
	}
}

// slowRefreshStore holds every GetMany (the feed's reload of the whole
// cache) until released, and counts Gets (loads of one customer).
type slowRefreshStore struct {
	Store
	gets     atomic.Int64
	hold     atomic.Bool
	heldOnce sync.Once
	held     chan struct{} // closed when a GetMany is first held
	release  chan struct{}
}

func (s *slowRefreshStore) Get(ctx context.Context, customer string) (*State, error) {
	s.gets.Add(1)
	return s.Store.Get(ctx, customer)
}

func (s *slowRefreshStore) GetMany(ctx context.Context, customers []string) (map[string]*State, error) {
	if s.hold.Load() {
		s.heldOnce.Do(func() { close(s.held) })
		<-s.release
	}
	return s.Store.GetMany(ctx, customers)
}

// After an outage longer than max_staleness, the feed reloads every cached
// customer before it proves them current, which takes seconds for a large
// cache. A customer who asks meanwhile is read again on its own as soon as
// the store answers, rather than refused until the reload reaches it; while
// the store is down, nobody asks it.
func TestStaleCustomerReadAgainWhileTheFeedReloads(t *testing.T) {
	rd := testrig.StartRedis(t)
	inner := openStore(t, config.Redis{URL: rd.URL(), Prefix: "tg:"})
	put(t, inner, &State{Customer: "cus_s", Subscriptions: []Subscription{sub("active", "price_pro")}})
	s := &slowRefreshStore{Store: inner, held: make(chan struct{}), release: make(chan struct{})}
	clk := &clock{}
	clk.advance(-time.Until(t0.Add(-time.Hour)))
	g, _ := newGate(t, s, nil, clk)
	runGate(t, g)
	if !g.Decide(context.Background(), "cus_s", reqSub, false).Allowed() {
		t.Fatal("denied before the outage")
	}
	rd.Kill()
	testrig.Eventually(t, "the gate to notice the outage", func() bool { return !g.Live() })
	clk.advance(gating().MaxStaleness + time.Minute)
	gets := s.gets.Load()
	if dec := g.Decide(context.Background(), "cus_s", reqSub, false); dec.Allowed() || dec.Denial.Code != "entitlements_unavailable" {
		t.Fatalf("past max_staleness during the outage: %+v; want 503", dec.Denial)
	}
	if n := s.gets.Load() - gets; n != 0 {
		t.Errorf("%d store reads for a stale customer while the store was down; want none", n)
	}

	s.hold.Store(true)
	rd.Restart()
	<-s.held // the feed is back and reloading
	dec := g.Decide(context.Background(), "cus_s", reqSub, false)
	close(s.release)
	if !dec.Allowed() {
		t.Errorf("stale customer while the feed reloads: %+v; want it read again and served", dec.Denial)
	}
	testrig.Eventually(t, "the feed to be live again", g.Live)
}
