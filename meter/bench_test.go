package meter

import (
	"context"
	"strconv"
	"sync/atomic"
	"testing"
	"time"

	"github.com/tollgate-dev/tollgate/internal/metrics"
	"github.com/tollgate-dev/tollgate/internal/store"
	"github.com/tollgate-dev/tollgate/internal/testrig"
)

// benchMeter counts only: the flusher never runs during the benchmark.
func benchMeter(b *testing.B) *Meter { return benchMeterWith(b, nil) }

func benchMeterWith(b *testing.B, mutate func(*Options)) *Meter {
	b.Helper()
	rd := testrig.StartRedis(b)
	o := Options{Config: testMetering(), Redis: rd.Client(), Keys: store.Keys{Prefix: "tg:"}, Metrics: metrics.New(), Logger: testLogger()}
	o.Config.FlushInterval = time.Hour
	if mutate != nil {
		mutate(&o)
	}
	m, err := New(o)
	if err != nil {
		b.Fatal(err)
	}
	b.Cleanup(func() { _ = m.Close(context.Background()) })
	return m
}

// The request-path cost of Count.
//
//	go test -run '^$' -bench Count -benchmem ./meter/
func BenchmarkCount(b *testing.B) {
	b.Run("existing_key", func(b *testing.B) {
		m := benchMeter(b)
		m.Count("cus_Bench1", "calls", 1)
		b.ReportAllocs()
		b.ResetTimer()
		for range b.N {
			m.Count("cus_Bench1", "calls", 1)
		}
	})
	b.Run("10k_customers", func(b *testing.B) {
		m := benchMeter(b)
		ids := make([]string, 10000)
		for i := range ids {
			ids[i] = "cus_Bench" + strconv.Itoa(i)
			m.Count(ids[i], "calls", 1)
		}
		b.ReportAllocs()
		b.ResetTimer()
		for i := range b.N {
			m.Count(ids[i%len(ids)], "calls", 1)
		}
	})
	b.Run("parallel", func(b *testing.B) {
		m := benchMeter(b)
		var next atomic.Int64
		b.ReportAllocs()
		b.RunParallel(func(pb *testing.PB) {
			id := "cus_Par" + strconv.FormatInt(next.Add(1), 10)
			for pb.Next() {
				m.Count(id, "calls", 1)
			}
		})
	})
}

// Used with n other customers counted since the last flush, at the
// default one-minute window, for a period that started 90 minutes and 7
// seconds ago: what opening a quota ledger (a customer's first request in
// a period) costs. Used reads memory first (its shard's counters and the
// local buffer, scanned: 1/64 of the customers are in one shard), then
// Redis (the period's daily rollups, and the minutes of its first hour
// one by one).
//
//	go test -run '^$' -bench Used -benchmem ./meter/
func BenchmarkUsed(b *testing.B) {
	for _, n := range []int{1, 10_000, 100_000} {
		b.Run("counted="+strconv.Itoa(n), func(b *testing.B) {
			m := benchMeterWith(b, func(o *Options) { o.Config.Window = time.Minute })
			for i := range n {
				m.Count("cus_Used"+strconv.Itoa(i), "calls", 1)
			}
			since := time.Now().Add(-90*time.Minute - 7*time.Second)
			ctx := context.Background()
			b.ReportAllocs()
			b.ResetTimer()
			for i := 0; b.Loop(); i++ {
				if _, err := m.Used(ctx, "cus_Used"+strconv.Itoa(i%n), "calls", since); err != nil {
					b.Fatal(err)
				}
			}
		})
	}
}

// How many customers one batcher reports per minute against the double
// (no latency), each customer one closed window, with the rate limit at its
// maximum (10000/s) so that the batcher itself is measured.
//
//	go test -run '^$' -bench ReportCustomers -benchtime 3x ./meter/
func BenchmarkReportCustomers(b *testing.B) {
	const customers = 2000
	r := &rig{t: nil, redis: testrig.StartRedis(b), double: testrig.NewStripeDouble(b), keys: store.Keys{Prefix: "tg:"}}
	var total time.Duration
	for i := range b.N {
		b.StopTimer()
		clk := newFakeClock(time.Now().Add(-time.Minute))
		o := Options{Config: testMetering(), Redis: r.redis.Client(), Keys: r.keys, Metrics: metrics.New(), Logger: testLogger(), Now: clk.Now}
		counter, err := New(o)
		if err != nil {
			b.Fatal(err)
		}
		for c := range customers {
			counter.Count("cus_R"+strconv.Itoa(i)+"x"+strconv.Itoa(c), "calls", 3)
		}
		if err := counter.Close(context.Background()); err != nil {
			b.Fatal(err)
		}
		before := len(r.double.MeterEvents())
		o.Now, o.Sender = time.Now, NewStripeSender(testrig.StripeClient(b, r.double.URL()), 5*time.Second)
		o.Config.RateLimit = 10000
		b.StartTimer()
		start := time.Now()
		reporter, err := New(o)
		if err != nil {
			b.Fatal(err)
		}
		testrig.WaitFor(b, 5*time.Minute, func() error {
			if n := len(r.double.MeterEvents()) - before; n < customers {
				return errNotYet
			}
			return nil
		})
		total += time.Since(start)
		b.StopTimer()
		_ = reporter.Close(context.Background())
	}
	b.ReportMetric(float64(customers*b.N)/total.Minutes(), "customers/min")
}

var errNotYet = errorString("not yet")

type errorString string

func (e errorString) Error() string { return string(e) }
