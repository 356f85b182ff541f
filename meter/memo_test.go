package meter

import (
	"context"
	"errors"
	"runtime"
	"sync"
	"testing"
	"time"
	"unsafe"

	"github.com/tollgate-dev/tollgate/internal/testrig"
)

// A claim's memo (Claim.Memo) holds the customer's share between
// reservations only while it is the share a lookup would find: another
// meter, another period, an eviction, another Quotas and Close all end
// it, and what the requests reserve and settle reaches the ledger exactly
// as without a memo (issue 13).
func TestQuotaMemoFollowsTheShare(t *testing.T) {
	r := newQuotaRig(t, false)
	q := r.replica(func(o *QuotaOptions) { o.MaxShares = 0 }) // every settled, idle share is evicted after two rounds
	ctx := context.Background()
	memo := &Memo{}
	memo.Init("cus_Q")
	withMemo := func(c Claim) Claim { c.Memo = memo; return c }
	served, period := int64(0), r.start
	reserve := func(what string, c Claim) *Share {
		t.Helper()
		s, err := q.Reserve(ctx, c)
		if err != nil {
			t.Fatalf("%s: Reserve: %v", what, err)
		}
		s.Settle(c.Units, c.Units)
		if c.Customer == "cus_Q" && c.Meter == "calls" && c.PeriodStart.Equal(period) {
			served += c.Units
		}
		return s
	}
	lookedUp := func(c Claim) *Share {
		q.mu.RLock()
		defer q.mu.RUnlock()
		return q.shares[shareKey{c.Customer, c.Meter, c.PeriodStart.Unix()}]
	}
	calls := withMemo(r.claim(1000, 1))

	s1 := reserve("first", calls)
	if memo.share.Load() != s1 || lookedUp(calls) != s1 {
		t.Fatalf("after the first reservation the memo holds %p; want the share %p", memo.share.Load(), s1)
	}
	if s := reserve("again", calls); s != s1 {
		t.Fatalf("a second reservation with the memo used share %p; want %p", s, s1)
	}

	// Another meter, another period: their own shares, not the memo's.
	other := calls
	other.Meter = "exports"
	if s := reserve("another meter", other); s == s1 || s != lookedUp(other) || memo.share.Load() != s {
		t.Fatalf("another meter reserved from %p (calls' share %p, its own %p)", s, s1, lookedUp(other))
	}
	next := calls
	next.PeriodStart, next.PeriodEnd = r.start.Add(30*24*time.Hour), r.start.Add(60*24*time.Hour)
	r.start = next.PeriodStart // the rig's meter count is asked for this period's start
	if s := reserve("next period", next); s == s1 || s != lookedUp(next) {
		t.Fatalf("the next period reserved from %p (this period's share %p, its own %p)", s, s1, lookedUp(next))
	}
	r.start = calls.PeriodStart
	if s := reserve("back to calls", calls); s != s1 || memo.share.Load() != s1 {
		t.Fatalf("back on calls: share %p, memo %p; want %p", s, memo.share.Load(), s1)
	}

	// Another customer's claim with this memo (which the sidecar never
	// makes): its own share, and the memo is not changed.
	stranger := calls
	stranger.Customer = "cus_stranger"
	if s := reserve("another customer", stranger); s == s1 || s.key.customer != "cus_stranger" || memo.share.Load() != s1 {
		t.Fatalf("another customer reserved from %p (%s; memo's %p); want a share of its own, the memo unchanged", s, s.key, s1)
	}
	// A memo for no customer (the zero Memo) is never used.
	var zero Memo
	unnamed := calls
	unnamed.Memo = &zero
	if s := reserve("zero memo", unnamed); s != s1 || zero.share.Load() != nil {
		t.Fatalf("with a zero memo: share %p (want %p), memo %p (want none)", s, s1, zero.share.Load())
	}

	// Evicted: idle shares leave the map after a few sync rounds. The
	// memo still points at s1; the next reservation must not take from it
	// (its units would never be reported).
	for round := 0; lookedUp(calls) != nil; round++ {
		if round == 10 {
			t.Fatal("the idle share was not evicted in 10 sync rounds")
		}
		q.syncOnce(ctx)
	}
	if memo.share.Load() != s1 {
		t.Fatal("the memo changed without a reservation")
	}
	s2 := reserve("after the eviction", calls)
	if s2 == s1 || s2 != lookedUp(calls) || memo.share.Load() != s2 {
		t.Fatalf("after the eviction: reserved from %p (evicted %p, in the map %p), memo %p", s2, s1, lookedUp(calls), memo.share.Load())
	}
	reserve("from the new share's memo", calls)

	// Another Quotas does not use this one's share.
	q2 := r.replica(nil)
	s3, err := q2.Reserve(ctx, calls)
	if err != nil {
		t.Fatal(err)
	}
	if s3.q != q2 || memo.share.Load() != s3 {
		t.Fatalf("another Quotas reserved from a share of %p; want its own", s3.q)
	}
	s3.Settle(1, 1)
	served++
	if err := q2.Close(ctx); err != nil {
		t.Fatal(err)
	}

	// Closed: a memo of a live share does not reserve either.
	memo.share.Store(s2)
	if err := q.Close(ctx); err != nil {
		t.Fatal(err)
	}
	if _, err := q.Reserve(ctx, calls); !errors.Is(err, ErrQuotasClosed) {
		t.Fatalf("Reserve with a memo after Close = %v; want ErrQuotasClosed", err)
	}
	if used, held := r.ledger(); used != served || len(held) != 0 {
		t.Errorf("ledger after Close: used %d, leases %v; want the %d units served and no lease", used, held, served)
	}
}

// Overrun (shadow mode) takes its share from the memo by the same rule.
func TestQuotaOverrunMemo(t *testing.T) {
	r := newQuotaRig(t, false)
	q := r.replica(func(o *QuotaOptions) { o.MaxShares = 0 })
	ctx := context.Background()
	memo := &Memo{}
	memo.Init("cus_Q")
	c := r.claim(10, 1)
	c.Memo = memo
	opened, err := q.Reserve(ctx, c) // opens the ledger
	if err != nil {
		t.Fatal(err)
	}
	opened.Settle(1, 1)
	s1, err := q.Overrun(c)
	if err != nil {
		t.Fatal(err)
	}
	if s1 != opened {
		t.Fatalf("Overrun used %p; want the memo's share %p", s1, opened)
	}
	s1.SettleOverrun(3)
	inMap := func() bool {
		q.mu.RLock()
		defer q.mu.RUnlock()
		return q.shares[s1.key] == s1
	}
	for round := 0; inMap(); round++ {
		if round == 10 {
			t.Fatal("the idle share was not evicted in 10 sync rounds")
		}
		q.syncOnce(ctx)
	}
	s2, err := q.Overrun(c)
	if err != nil {
		t.Fatal(err)
	}
	if s2 == s1 || memo.share.Load() != s2 {
		t.Fatalf("Overrun after the eviction used %p (evicted %p); memo %p", s2, s1, memo.share.Load())
	}
	s2.SettleOverrun(2)
	if err := q.Close(ctx); err != nil {
		t.Fatal(err)
	}
	if used, _ := r.ledger(); used != 6 {
		t.Errorf("ledger used %d; want the 6 units served", used)
	}
}

// A memo (CountMemo) holds the counter of the customer's current window
// only while the shard's map holds it: a drained counter is kept, an idle
// one dropped by the flusher is not counted into, a new window, another
// customer and another Meter have counters of their own, and after Close
// nothing is counted. Every unit counted is in Used exactly once.
func TestCountMemoFollowsTheCounter(t *testing.T) {
	r := newRig(t)
	clk := newFakeClock(time.Now().Truncate(time.Second))
	m := r.start(func(o *Options) {
		o.Sender, o.Now = nil, clk.Now
		o.Config.FlushInterval = time.Hour // this test drains the shards itself
	})
	ctx := context.Background()
	memo := &Memo{}
	memo.Init("cus_A")
	used := func(customer string, m *Meter) int64 {
		t.Helper()
		n, err := m.Used(ctx, customer, "calls", time.Time{})
		if err != nil {
			t.Fatal(err)
		}
		return n
	}
	inMap := func(c *counter) bool {
		s := c.shard
		s.mu.Lock()
		defer s.mu.Unlock()
		return s.cur[c.key] == c
	}

	m.CountMemo("cus_A", "calls", 2, memo)
	c1 := memo.counter.Load()
	if c1 == nil || !inMap(c1) || c1.key.customer != "cus_A" {
		t.Fatalf("after a count the memo holds %+v; want cus_A's counter in its shard", c1)
	}
	m.CountMemo("cus_A", "calls", 3, memo)
	if memo.counter.Load() != c1 || used("cus_A", m) != 5 {
		t.Fatalf("second count: memo %p (want %p), Used %d (want 5)", memo.counter.Load(), c1, used("cus_A", m))
	}
	if allocs := testing.AllocsPerRun(100, func() { m.CountMemo("cus_A", "calls", 1, memo) }); allocs != 0 {
		t.Errorf("a count from the memo allocates %v times; want 0", allocs)
	}
	want := int64(5 + 101) // AllocsPerRun runs once more than asked

	// Drained: the counter is zeroed and kept; the memo still counts into it.
	m.drainShards(false)
	m.CountMemo("cus_A", "calls", 1, memo)
	want++
	if memo.counter.Load() != c1 || !inMap(c1) || used("cus_A", m) != want {
		t.Fatalf("after a drain: memo %p (want %p, in map %v), Used %d (want %d)", memo.counter.Load(), c1, inMap(c1), used("cus_A", m), want)
	}

	// Dropped: two drains without a count take the counter out of the map.
	m.drainShards(false)
	m.drainShards(false)
	if inMap(c1) {
		t.Fatal("an idle counter is still in its shard after two drains")
	}
	m.CountMemo("cus_A", "calls", 4, memo)
	want += 4
	c2 := memo.counter.Load()
	if c2 == c1 || !inMap(c2) || c1.n != 0 || used("cus_A", m) != want {
		t.Fatalf("after the drop: memo %p (dropped %p, units %d), in map %v, Used %d (want %d)", c2, c1, c1.n, inMap(c2), used("cus_A", m), want)
	}

	// A new window: a counter of its own.
	clk.Add(testMetering().Window)
	m.CountMemo("cus_A", "calls", 1, memo)
	want++
	if c3 := memo.counter.Load(); c3 == c2 || c3.key.window == c2.key.window || used("cus_A", m) != want {
		t.Fatalf("next window: memo %+v (last window's %+v), Used %d (want %d)", c3.key, c2.key, used("cus_A", m), want)
	}

	// Another customer (which the sidecar never sends with this memo),
	// another meter, another Meter: never into this memo's counter.
	c3 := memo.counter.Load()
	m.CountMemo("cus_B", "calls", 7, memo)
	if memo.counter.Load() != c3 {
		t.Fatal("another customer's count changed the memo")
	}
	m.CountMemo("cus_A", "exports", 5, memo)
	m2 := r.start(func(o *Options) { o.Sender, o.Now = nil, clk.Now })
	m2.CountMemo("cus_A", "calls", 9, memo)
	exports, err := m.Used(ctx, "cus_A", "exports", time.Time{})
	if err != nil {
		t.Fatal(err)
	}
	if a, b, a2 := used("cus_A", m), used("cus_B", m), used("cus_A", m2); a != want || b != 7 || a2 != 9 || exports != 5 {
		t.Fatalf("Used: cus_A %d (want %d), cus_B %d (want 7), cus_A exports %d (want 5), cus_A on the second meter %d (want 9)", a, want, b, exports, a2)
	}
	// A memo for no customer is never used.
	var zero Memo
	m.CountMemo("cus_A", "calls", 1, &zero)
	want++
	if zero.counter.Load() != nil || used("cus_A", m) != want {
		t.Fatalf("with a zero memo: memo %p (want none), Used %d (want %d)", zero.counter.Load(), used("cus_A", m), want)
	}

	// Closed: nothing is counted, loudly, though the memo holds a counter.
	m.CountMemo("cus_A", "calls", 1, memo)
	want++
	if err := m.Close(ctx); err != nil {
		t.Fatal(err)
	}
	m.CountMemo("cus_A", "calls", 1, memo)
	if got := counterValue(m.metrics, "calls", "counted_after_close"); got != 1 {
		t.Errorf("counted_after_close = %v; want 1", got)
	}
	if row := r.usageRow("cus_A", "calls"); row.Counted != want {
		t.Errorf("cus_A's units in the store after Close = %d; want %d", row.Counted, want)
	}
}

// Counts from memos shared by concurrent requests, while the flusher
// drains and drops counters and windows turn, are all flushed, once.
func TestCountMemoLosesNothingUnderFlushes(t *testing.T) {
	r := newRig(t)
	m := r.start(func(o *Options) { o.Sender = nil })
	const workers, counts = 4, 3000
	memos := []*Memo{{customer: "cus_C"}, {customer: "cus_C"}}
	stop := make(chan struct{})
	drained := make(chan struct{})
	go func() { // drains beside the flusher's own, so that counters are dropped and made again
		defer close(drained)
		for {
			select {
			case <-stop:
				return
			default:
				m.drainShards(false)
			}
		}
	}()
	var wg sync.WaitGroup
	for w := range workers {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := range counts {
				m.CountMemo("cus_C", "calls", 1, memos[w%len(memos)])
				if i%100 == 0 {
					runtime.Gosched() // let the drains in
				}
			}
		}()
	}
	wg.Wait()
	close(stop)
	<-drained
	if err := m.Close(context.Background()); err != nil {
		t.Fatal(err)
	}
	if row := r.usageRow("cus_C", "calls"); row.Counted != workers*counts {
		t.Errorf("units in the store = %d; want %d, each count once", row.Counted, workers*counts)
	}
}

// A counter is one cache line, and starts on one: a count from a memo
// reads that line and its shard's (issue 13).
func TestCounterIsOneLine(t *testing.T) {
	if n := unsafe.Sizeof(counter{}); n != testrig.CacheLine {
		t.Errorf("a counter is %d bytes; want %d", n, testrig.CacheLine)
	}
	testrig.StartsOnLine[counter](t)
}
