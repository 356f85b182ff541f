package meter

import (
	"context"
	"sync/atomic"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"

	"github.com/tollgate-dev/tollgate/internal/metrics"
	"github.com/tollgate-dev/tollgate/internal/store"
	"github.com/tollgate-dev/tollgate/internal/testrig"
)

// roundTrips counts the commands and pipelines a client sends: each is one
// round trip to Redis.
type roundTrips struct{ n atomic.Int64 }

func (h *roundTrips) DialHook(next redis.DialHook) redis.DialHook { return next }

func (h *roundTrips) ProcessHook(next redis.ProcessHook) redis.ProcessHook {
	return func(ctx context.Context, cmd redis.Cmder) error {
		h.n.Add(1)
		return next(ctx, cmd)
	}
}

func (h *roundTrips) ProcessPipelineHook(next redis.ProcessPipelineHook) redis.ProcessPipelineHook {
	return func(ctx context.Context, cmds []redis.Cmder) error {
		h.n.Add(1)
		return next(ctx, cmds)
	}
}

// benchQuotas is one replica on a real redis-server whose client counts
// round trips; the meter count the ledger opens from is counted.
func benchQuotas(b *testing.B, counted int64) (*Quotas, *roundTrips) {
	b.Helper()
	rd := testrig.StartRedis(b, testrig.WithoutPersistence())
	rdb := rd.Client()
	rt := &roundTrips{}
	rdb.AddHook(rt)
	q := NewQuotas(QuotaOptions{Redis: rdb, Keys: store.Keys{Prefix: "tb:"},
		Used:     func(context.Context, string, string, time.Time) (int64, error) { return counted, nil },
		LeaseTTL: 10 * time.Second, SyncInterval: time.Second, MaxShares: 1000, Metrics: metrics.New(), Logger: testLogger()})
	b.Cleanup(func() { _ = q.Close(context.Background()) })
	return q, rt
}

// withShare is a replica that has taken its share for c (the one round
// trip).
func withShare(b *testing.B, c Claim) *Quotas {
	q, _ := benchQuotas(b, 0)
	s, err := q.Reserve(context.Background(), c)
	if err != nil {
		b.Fatal(err)
	}
	s.Settle(1, 1)
	return q
}

func benchClaim(limit int64) Claim {
	start := time.Now().Add(-time.Hour).Truncate(time.Second)
	return Claim{Customer: "cus_Bench", Meter: "calls", Limit: limit, PeriodStart: start, PeriodEnd: start.Add(720 * time.Hour), Units: 1}
}

// The request-path cost of a reservation and its settlement while the
// replica's share lasts: memory only. cpu-ns/op is the process's CPU time
// per operation, which a loaded machine inflates less than ns/op (wall
// time); compare with BenchmarkCount on the same run.
//
//	go test -run '^$' -bench QuotaReserve -benchmem ./meter/
func BenchmarkQuotaReserve(b *testing.B) {
	ctx := context.Background()
	c := benchClaim(maxQuotaUnits) // a share far larger than b.N
	b.Run("serial", func(b *testing.B) {
		q := withShare(b, c)
		b.ReportAllocs()
		b.ResetTimer()
		cpu := cpuTime()
		for range b.N {
			s, err := q.Reserve(ctx, c)
			if err != nil {
				b.Fatal(err)
			}
			s.Settle(1, 1)
		}
		reportCPU(b, cpu)
	})
	b.Run("parallel", func(b *testing.B) {
		q := withShare(b, c)
		b.ReportAllocs()
		b.ResetTimer()
		cpu := cpuTime()
		defer reportCPU(b, cpu)
		b.RunParallel(func(pb *testing.PB) {
			for pb.Next() {
				s, err := q.Reserve(ctx, c)
				if err != nil {
					b.Error(err)
					return
				}
				s.Settle(1, 1)
			}
		})
	})
}

// Redis round trips per 1,000 admitted requests (reserve and settle, one
// replica), counted by a go-redis hook, after the period's first request
// (which opens the ledger: its round trips are reported apart). Far from
// the limit a share is 1/64 of what is free; in the last 5% of a quota of
// 1,000,000 the share shrinks with the remainder, to one unit per request
// in the last 64. Background syncs (one pipeline per
// metering.quota.sync_interval whatever the traffic) are not in these
// numbers: each run lasts well under one interval.
//
//	go test -run '^$' -bench QuotaRoundTrips -benchtime 1x ./meter/
func BenchmarkQuotaRoundTrips(b *testing.B) {
	const limit = 1_000_000
	for _, c := range []struct {
		name           string
		counted, serve int64
	}{
		{"far from the limit", 0, 100_000},
		{"half used", limit / 2, 100_000},
		{"last 5%", limit * 95 / 100, limit*5/100 - 1},
	} {
		b.Run(c.name, func(b *testing.B) {
			ctx := context.Background()
			var trips, first, admitted int64
			for range b.N {
				q, rt := benchQuotas(b, c.counted)
				claim := benchClaim(limit)
				s, err := q.Reserve(ctx, claim)
				if err != nil {
					b.Fatal(err)
				}
				s.Settle(1, 1)
				first += rt.n.Swap(0)
				for range c.serve {
					s, err := q.Reserve(ctx, claim)
					if err != nil {
						b.Fatal(err)
					}
					s.Settle(1, 1)
				}
				trips += rt.n.Load()
				admitted += c.serve
			}
			b.ReportMetric(float64(trips)*1000/float64(admitted), "roundtrips/1000req")
			b.ReportMetric(float64(first)/float64(b.N), "roundtrips/first")
		})
	}
}
