package meter

import (
	"context"
	"errors"
	"runtime"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/tollgate-dev/tollgate/internal/testrig"
)

type fakeUsage struct {
	calls atomic.Int32
	value atomic.Int64
	fail  atomic.Bool
	gate  chan struct{} // when set, each call waits on it
}

func (f *fakeUsage) used(ctx context.Context, customer, meter string, since time.Time) (int64, error) {
	f.calls.Add(1)
	if f.gate != nil {
		<-f.gate
	}
	if f.fail.Load() {
		return 0, errors.New("store down")
	}
	return f.value.Load(), nil
}

func TestQuotasFirstReadIsSharedThenServedFromMemory(t *testing.T) {
	f := &fakeUsage{gate: make(chan struct{})}
	f.value.Store(7)
	now := time.Unix(1000, 0)
	var clock atomic.Int64
	clock.Store(now.UnixNano())
	q := NewQuotas(f.used, time.Second, 100, func() time.Time { return time.Unix(0, clock.Load()) })
	defer q.Close()
	since := now.Add(-time.Hour)

	var wg sync.WaitGroup
	for i := 0; i < 20; i++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			if n, err := q.Used(context.Background(), "cus_1", "calls", since); n != 7 || err != nil {
				t.Errorf("Used = %d, %v; want 7", n, err)
			}
		}()
	}
	// The first read starting does not mean the other 19 checks have joined
	// it: one that found nothing cached but has not reached the single
	// flight yet would start a read of its own once the first one is over.
	// So the gate opens only when all 19 wait for the first read.
	testrig.Eventually(t, "the first read to start and the other 19 checks to wait for it", func() bool {
		return f.calls.Load() == 1 && quotaLoadWaiters() == 19
	})
	close(f.gate)
	wg.Wait()
	if n := f.calls.Load(); n != 1 {
		t.Errorf("store read %d times for 20 concurrent first checks; want 1", n)
	}

	// Within the TTL: memory only.
	f.value.Store(9)
	if n, _ := q.Used(context.Background(), "cus_1", "calls", since); n != 7 || f.calls.Load() != 1 {
		t.Errorf("within TTL: %d after %d reads; want the cached 7 and no read", n, f.calls.Load())
	}
	// Past the TTL: the cached value answers, a refresh runs behind it.
	clock.Add(int64(2 * time.Second))
	if n, _ := q.Used(context.Background(), "cus_1", "calls", since); n != 7 {
		t.Errorf("past TTL returned %d; want the cached value while refreshing", n)
	}
	testrig.Eventually(t, "the refresh to land", func() bool { n, _ := q.Used(context.Background(), "cus_1", "calls", since); return n == 9 })

	// Units served here count at once, without waiting for a refresh.
	q.Add("cus_1", "calls", 5)
	q.Add("cus_other", "calls", 100)
	if n, _ := q.Used(context.Background(), "cus_1", "calls", since); n != 14 {
		t.Errorf("after Add(5): %d; want 14", n)
	}
	// A new period reads afresh.
	if n, _ := q.Used(context.Background(), "cus_1", "calls", now); n != 9 || f.calls.Load() < 3 {
		t.Errorf("new period: %d after %d reads; want a fresh read of 9", n, f.calls.Load())
	}
}

// quotaLoadWaiters counts the goroutines in Quotas.Used that wait for
// another goroutine's store read (joined to its single flight).
func quotaLoadWaiters() int {
	buf := make([]byte, 1<<20)
	for {
		n := runtime.Stack(buf, true)
		if n < len(buf) {
			buf = buf[:n]
			break
		}
		buf = make([]byte, 2*len(buf))
	}
	waiting := 0
	for _, g := range strings.Split(string(buf), "\n\n") {
		if strings.Contains(g, "meter.(*Quotas).Used(") && strings.Contains(g, "singleflight.(*Group).Do(") &&
			strings.Contains(g, "sync.(*WaitGroup).Wait(") {
			waiting++
		}
	}
	return waiting
}

func TestQuotasFirstReadErrorIsReturned(t *testing.T) {
	f := &fakeUsage{}
	f.fail.Store(true)
	q := NewQuotas(f.used, time.Second, 100, nil)
	defer q.Close()
	if _, err := q.Used(context.Background(), "cus_1", "calls", time.Now()); err == nil {
		t.Error("Used with the store down and nothing cached = nil error; want the error (the gate fails closed)")
	}
}

func TestQuotasBounded(t *testing.T) {
	f := &fakeUsage{}
	q := NewQuotas(f.used, time.Minute, 10, nil)
	defer q.Close()
	for i := 0; i < 50; i++ {
		q.Used(context.Background(), "cus_"+string(rune('a'+i)), "calls", time.Unix(0, 0))
	}
	q.mu.Lock()
	n := len(q.entries)
	q.mu.Unlock()
	if n > 10 {
		t.Errorf("cache holds %d entries; want at most 10", n)
	}
}
