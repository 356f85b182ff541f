package entitlements

import (
	"context"
	"strconv"
	"testing"

	"github.com/tollgate-dev/tollgate/internal/testrig"
)

// BenchmarkSeatHolder is the seat check of a holder this replica knows:
// memory only, on the request path of every seated request.
func BenchmarkSeatHolder(b *testing.B) {
	rd := testrig.StartRedis(b, testrig.WithoutPersistence())
	s := newBenchSeats(b, rd.Addr())
	ctx := context.Background()
	if err := s.Take(ctx, "cus_bench", "ann", 10); err != nil {
		b.Fatal(err)
	}
	b.ReportAllocs()
	b.ResetTimer()
	b.RunParallel(func(pb *testing.PB) {
		for pb.Next() {
			if err := s.Take(ctx, "cus_bench", "ann", 10); err != nil {
				b.Fatal(err)
			}
		}
	})
}

// BenchmarkSeatNewcomer is a newcomer taking a seat: one script round
// trip to a real redis-server over loopback.
func BenchmarkSeatNewcomer(b *testing.B) {
	rd := testrig.StartRedis(b, testrig.WithoutPersistence())
	s := newBenchSeats(b, rd.Addr())
	ctx := context.Background()
	b.ReportAllocs()
	b.ResetTimer()
	for i := range b.N {
		if err := s.Take(ctx, "cus_bench", "user_"+strconv.Itoa(i), -1); err != nil {
			b.Fatal(err)
		}
	}
}

func newBenchSeats(b *testing.B, addr string) *Seats {
	b.Helper()
	return newSeatReplica(b, addr, SeatOptions{}).Seats
}
