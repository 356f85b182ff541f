package meter

import (
	"context"
	"errors"
	"fmt"
	"net/http"
	"strconv"
	"sync/atomic"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"
	"github.com/stripe/stripe-go/v76"

	"github.com/tollgate-dev/tollgate/internal/metrics"
	"github.com/tollgate-dev/tollgate/internal/store"
	"github.com/tollgate-dev/tollgate/internal/testrig"
)

// The meter on a real 3-node Redis Cluster (redis.addrs): New sees a
// *redis.ClusterClient and flushes one script per customer. One cluster
// serves every subtest; each has its own key prefix and Stripe double.
func TestMeterOnRedisCluster(t *testing.T) {
	c := testrig.StartRedisCluster(t, 3)
	var prefixes atomic.Int64
	newClusterRig := func(t *testing.T) *clusterRig {
		return &clusterRig{t: t, cluster: c, double: testrig.NewStripeDouble(t),
			keys: store.Keys{Prefix: fmt.Sprintf("mc%d:", prefixes.Add(1))}, admin: c.Client()}
	}
	for _, tc := range []struct {
		name string
		fn   func(*testing.T, *clusterRig)
	}{
		{"ReportsExactlyOnceUnderFaults", testClusterReportsExactlyOnce},
		{"FlushRetryIsIdempotent", testClusterFlushRetryIsIdempotent},
		{"SweepReportsWindowsMissingFromTheDueIndex", testClusterSweep},
		{"FlushRefusesBadData", func(t *testing.T, r *clusterRig) { testFlushRefusesBadData(t, r) }},
		{"FlushAtTheEdgeIsExact", func(t *testing.T, r *clusterRig) { testFlushAtTheEdgeIsExact(t, r) }},
		{"FlushAfterLostAnswers", func(t *testing.T, r *clusterRig) { testFlushAfterLostAnswers(t, r) }},
		{"BadCustomerNeverBlocksOthers", func(t *testing.T, r *clusterRig) { testBadCustomerNeverBlocksOthers(t, r) }},
		{"Reconcile", testClusterReconcile},
	} {
		t.Run(tc.name, func(t *testing.T) { tc.fn(t, newClusterRig(t)) })
	}
}

// clusterRig is rig on a Redis Cluster: each meter (replica) gets a
// cluster client of its own.
type clusterRig struct {
	t       *testing.T
	cluster *testrig.RedisCluster
	double  *testrig.StripeDouble
	keys    store.Keys
	admin   *redis.ClusterClient
}

func (r *clusterRig) start(mutate func(*Options)) *Meter {
	r.t.Helper()
	o := Options{
		Config:  testMetering(),
		Redis:   r.cluster.Client(),
		Keys:    r.keys,
		Sender:  NewStripeSender(testrig.StripeClient(r.t, r.double.URL()), 300*time.Millisecond),
		Metrics: metrics.New(),
		Logger:  testLogger(),
	}
	if mutate != nil {
		mutate(&o)
	}
	m, err := New(o)
	if err != nil {
		r.t.Fatalf("New: %v", err)
	}
	if !m.st.cluster {
		r.t.Fatalf("New on a *redis.ClusterClient did not choose the cluster layout")
	}
	r.t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		defer cancel()
		_ = m.Close(ctx)
	})
	return m
}

// rows is `tollgate usage` on the cluster, by customer (one meter).
func (r *clusterRig) rows() map[string]Row {
	r.t.Helper()
	u, err := ReadUsage(context.Background(), r.admin, r.keys)
	if err != nil {
		r.t.Fatalf("ReadUsage: %v", err)
	}
	out := make(map[string]Row)
	for _, row := range u.Rows {
		out[row.Customer] = row
	}
	return out
}

// Two replicas count for 12 customers spread over every node; one reports
// while Stripe fails a share of calls (500, 429) and times out some after
// recording them. Stripe's sums equal the counted units, no identifier is
// accepted twice, and `tollgate usage`, Used and quotas agree.
func testClusterReportsExactlyOnce(t *testing.T, r *clusterRig) {
	start := time.Now().Add(-time.Minute)
	clk := newFakeClock(start)
	a, b := r.start(func(o *Options) { o.Now = clk.Now }), r.start(func(o *Options) { o.Now = clk.Now })
	want := countUnderFaults(r.double, clk, a, b, 3, 12, 720)
	waitReported(t, r.double, want, 30*time.Second)
	checkEvents(t, r.double)

	ctx := context.Background()
	nodes := map[string]bool{}
	for c := range want {
		n, err := r.admin.MasterForKey(ctx, a.st.totalsKey(c))
		if err != nil {
			t.Fatal(err)
		}
		nodes[n.Options().Addr] = true
	}
	if len(nodes) != 3 {
		t.Errorf("12 customers' keys live on %d nodes; want all 3", len(nodes))
	}
	testrig.WaitFor(t, 10*time.Second, func() error { // the last settle may still be on its way
		rows := r.rows()
		for c, units := range want {
			if row := rows[c]; row.Counted != units || row.Reported != units || row.Pending != 0 || row.Parked != 0 {
				return fmt.Errorf("usage row %+v; want %d counted and reported, nothing pending", row, units)
			}
		}
		if len(rows) != len(want) {
			return fmt.Errorf("usage has %d customers; want %d", len(rows), len(want))
		}
		return nil
	})
	quotas := NewQuotas(QuotaOptions{Redis: r.cluster.Client(), Keys: r.keys, Used: b.Used, LeaseTTL: 10 * time.Second,
		SyncInterval: time.Second, MaxShares: 100, Metrics: metrics.New(), Logger: testLogger()})
	defer quotas.Close(ctx)
	for c, units := range want {
		if got, err := a.Used(ctx, c, "calls", start.Add(-time.Hour)); err != nil || got != units {
			t.Errorf("Used(%s) = %d, %v; want %d", c, got, err, units)
		}
		// The customer's quota ledger (a script on its {cus_...} slot) opens
		// from what the meter counted: a limit one above it admits one.
		claim := Claim{Customer: c, Meter: "calls", Limit: units + 1, PeriodStart: start.Add(-time.Hour), PeriodEnd: start.Add(time.Hour), Units: 1}
		if sh, err := quotas.Reserve(ctx, claim); err != nil {
			t.Errorf("Reserve(%s) with one unit left = %v; want it admitted", c, err)
		} else {
			sh.Settle(1, 1)
		}
		var ex *QuotaExceeded
		if _, err := quotas.Reserve(ctx, claim); !errors.As(err, &ex) || ex.Used != units+1 {
			t.Errorf("Reserve(%s) past the limit = %v; want QuotaExceeded with %d used", c, err, units+1)
		}
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

// A chunk for customers on different nodes, written again after an
// unknown outcome, is applied once per customer.
func testClusterFlushRetryIsIdempotent(t *testing.T, r *clusterRig) {
	st := &redisStore{rdb: r.admin, keys: r.keys, cluster: true, win: newWindows(time.Second), replica: "replica-1"}
	ws := int64(1700000000000)
	c := &chunk{seq: 7, gen: "g7"}
	want := make(map[string]int64)
	for i := range 6 {
		want[cus(i)] = int64(i + 1)
		c.entries = append(c.entries, entry{ckey{cus(i), "calls", ws}, int64(i + 1)})
	}
	ctx := context.Background()
	for range 3 {
		if bad, err := st.applyChunk(ctx, c, time.Now()); err != nil || len(bad) > 0 {
			t.Fatalf("applyChunk: %v, refused %v", err, bad)
		}
	}
	older := &chunk{seq: 6, gen: "g6", entries: []entry{{ckey{cus(0), "calls", ws}, 100}}}
	if bad, err := st.applyChunk(ctx, older, time.Now()); err != nil || len(bad) > 0 {
		t.Fatalf("applyChunk: %v, refused %v", err, bad)
	}
	rows := r.rows()
	for cus, units := range want {
		if got := rows[cus].Counted; got != units {
			t.Errorf("%s counted %d after 3 retries and an older chunk; want %d", cus, got, units)
		}
		due, err := r.admin.ZScore(ctx, st.dueKey(), cus).Result()
		if err != nil || int64(due) != ws+1000 {
			t.Errorf("%s due at %v, %v; want %d", cus, due, err, ws+1000)
		}
	}
}

// A flush that died after its per-customer script and before the due
// index (the Cluster flush's gap) is found by the leader's sweep.
func testClusterSweep(t *testing.T, r *clusterRig) {
	clk := newFakeClock(time.Now().Add(-time.Minute))
	crashed := r.start(func(o *Options) { o.Sender, o.Now = nil, clk.Now; o.Config.FlushInterval = time.Hour })
	ws := crashed.win.start(clk.Now())
	want := map[string]int64{}
	for i := range 4 {
		id := "cus_Z" + strconv.Itoa(i)
		want[id] = int64(9 + i)
		c := &chunk{seq: 1, gen: "g1", entries: []entry{{ckey{id, "calls", ws}, want[id]}}}
		keys := []string{crashed.st.keys.Customer(id, "usage", "flushed")}
		if bad, err := crashed.st.runFlush(context.Background(), keys, c, c.entries, clk.Now(), false); err != nil || len(bad) > 0 {
			t.Fatal(err, bad)
		}
		r.admin.SAdd(context.Background(), crashed.st.customersKey(), id) // written before the scripts
	}
	r.start(nil)
	waitReported(t, r.double, want, 20*time.Second)
}

// Reconciliation on the cluster: customers on every node, one pending on
// a replica that never reports, one with an event Stripe has and tollgate
// never sent.
func testClusterReconcile(t *testing.T, r *clusterRig) {
	noon := testrig.MonthNoon()
	clk := newFakeClock(noon.Add(-90 * time.Minute))
	r.double.PutMeter(&stripe.BillingMeter{ID: "mtr_calls", EventName: "api_calls"})
	m := r.start(func(o *Options) { o.Now = clk.Now })
	want := map[string]int64{}
	for i := range 6 {
		want[cus(i)] = int64(i + 1)
		m.Count(cus(i), "calls", int64(i+1))
	}
	clk.Add(5 * time.Second)
	waitReported(t, r.double, want, 20*time.Second)
	testrig.WaitFor(t, 10*time.Second, func() error {
		for c, row := range r.rows() {
			if row.Pending != 0 {
				return fmt.Errorf("%s: %d pending", c, row.Pending)
			}
		}
		return nil
	})
	r.start(func(o *Options) { o.Now, o.Sender = clk.Now, nil }).Count("cus_pending", "calls", 4)
	testrig.WaitFor(t, 10*time.Second, func() error {
		if r.rows()["cus_pending"].Counted != 4 {
			return errors.New("cus_pending not flushed yet")
		}
		return nil
	})
	r.double.InjectMeterEvent("api_calls", cus(2), 10, noon.Add(-80*time.Minute))
	rec := &Reconciler{Redis: r.admin, Keys: r.keys, Config: testMetering(), Rate: 1000,
		Summaries: NewStripeSummaries(testrig.StripeClient(t, r.double.URL())), Now: func() time.Time { return noon }}
	rep, err := rec.Run(context.Background(), PeriodCurrent)
	if err != nil {
		t.Fatal(err)
	}
	if len(rep.Rows) != 7 || rep.Drifting != 1 || rep.DriftUnits["calls"] != 10 || rep.Compared != 7 {
		t.Errorf("reconcile on the cluster: %d rows, %d drifting, %v units; want 7 rows, 1 drifting by 10", len(rep.Rows), rep.Drifting, rep.DriftUnits)
	}
	for _, row := range rep.Rows {
		wantDrift := int64(0)
		if row.Customer == cus(2) {
			wantDrift = 10
		}
		if row.Drift != wantDrift || (row.Customer == "cus_pending" && row.Pending != 4) {
			t.Errorf("%+v; want drift %d", row, wantDrift)
		}
	}
}
