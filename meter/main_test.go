package meter

import (
	"context"
	"io"
	"log/slog"
	"os"
	"strconv"
	"sync"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus/testutil"
	"github.com/redis/go-redis/v9"
	"go.uber.org/goleak"

	"github.com/tollgate-dev/tollgate/config"
	"github.com/tollgate-dev/tollgate/internal/metrics"
	"github.com/tollgate-dev/tollgate/internal/store"
	"github.com/tollgate-dev/tollgate/internal/testrig"
)

func TestMain(m *testing.M) {
	goleak.VerifyTestMain(m)
}

// fakeClock is a settable clock for window assignment.
type fakeClock struct {
	mu sync.Mutex
	t  time.Time
}

func newFakeClock(t time.Time) *fakeClock { return &fakeClock{t: t} }

func (c *fakeClock) Now() time.Time {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.t
}

func (c *fakeClock) Set(t time.Time) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.t = t
}

func (c *fakeClock) Add(d time.Duration) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.t = c.t.Add(d)
}

func testLogger() *slog.Logger {
	if os.Getenv("TOLLGATE_TEST_LOG") != "" {
		return slog.New(slog.NewTextHandler(os.Stderr, &slog.HandlerOptions{Level: slog.LevelDebug}))
	}
	return slog.New(slog.NewTextHandler(io.Discard, nil))
}

func testMetering() config.Metering {
	c := config.Default().Metering
	c.FlushInterval = 20 * time.Millisecond
	c.Window = time.Second
	c.LeaseTTL = time.Second
	c.RateLimit = 10000
	c.Meters = map[string]*config.Meter{"calls": {EventName: "api_calls"}}
	return c
}

// rig is one Redis and one Stripe double shared by the meters (replicas) of
// a test.
type rig struct {
	t      *testing.T
	redis  *testrig.Redis
	double *testrig.StripeDouble
	keys   store.Keys
	admin  *redis.Client
}

func newRig(t *testing.T) *rig {
	t.Helper()
	r := &rig{t: t, redis: testrig.StartRedis(t), double: testrig.NewStripeDouble(t), keys: store.Keys{Prefix: "tg:"}}
	r.admin = r.redis.Client()
	return r
}

// options are a replica's: its own Redis client, metrics and Stripe client.
func (r *rig) options() Options {
	rdb := r.redis.Client()
	return Options{
		Config:  testMetering(),
		Redis:   rdb,
		Keys:    r.keys,
		Sender:  NewStripeSender(testrig.StripeClient(r.t, r.double.URL()), 300*time.Millisecond),
		Metrics: metrics.New(),
		Logger:  testLogger(),
	}
}

// start builds a meter, closed at cleanup.
func (r *rig) start(mutate func(*Options)) *Meter {
	r.t.Helper()
	o := r.options()
	if mutate != nil {
		mutate(&o)
	}
	m, err := New(o)
	if err != nil {
		r.t.Fatalf("New: %v", err)
	}
	r.t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		defer cancel()
		_ = m.Close(ctx)
	})
	return m
}

// usageRow reads one (customer, meter) row of `tollgate usage`.
func (r *rig) usageRow(customer, meter string) Row {
	r.t.Helper()
	u, err := ReadUsage(context.Background(), r.admin, r.keys)
	if err != nil {
		r.t.Fatalf("ReadUsage: %v", err)
	}
	for _, row := range u.Rows {
		if row.Customer == customer && row.Meter == meter {
			return row
		}
	}
	return Row{Customer: customer, Meter: meter}
}

func counterValue(m *metrics.Metrics, meter, reason string) float64 {
	return testutil.ToFloat64(m.UsageReportErrors.WithLabelValues(meter, reason))
}

func cus(i int) string { return "cus_T" + strconv.Itoa(i) }

// sumEvents adds up the accepted meter events of each customer.
func sumEvents(d *testrig.StripeDouble) map[string]int64 {
	out := make(map[string]int64)
	for _, e := range d.MeterEvents() {
		out[e.CustomerID] += e.Value
	}
	return out
}

func equalSums(got, want map[string]int64) bool {
	if len(got) != len(want) {
		return false
	}
	for k, v := range want {
		if got[k] != v {
			return false
		}
	}
	return true
}
