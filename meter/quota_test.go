package meter

import (
	"context"
	"errors"
	"fmt"
	"math"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/alicebob/miniredis/v2"
	"github.com/redis/go-redis/v9"

	"github.com/tollgate-dev/tollgate/internal/metrics"
	"github.com/tollgate-dev/tollgate/internal/store"
	"github.com/tollgate-dev/tollgate/internal/testrig"
)

// quotaRig is one Redis shared by the quota replicas of a test, with a
// meter count the ledgers open from.
type quotaRig struct {
	t       *testing.T
	addr    string
	cluster *testrig.RedisCluster // nil: the single Redis at addr
	keys    store.Keys
	admin   redis.UniversalClient
	counted atomic.Int64 // what Used answers: units the meter counted
	reads   atomic.Int32 // Used calls
	start   time.Time    // the billing period
}

func newQuotaRig(t *testing.T, embedded bool) *quotaRig {
	t.Helper()
	r := &quotaRig{t: t, keys: store.Keys{Prefix: "tq:"}, start: time.Now().Add(-time.Hour).Truncate(time.Second)}
	if embedded {
		r.addr = miniredis.RunT(t).Addr()
	} else {
		r.addr = testrig.StartRedis(t, testrig.WithoutPersistence()).Addr()
	}
	r.admin = r.client()
	return r
}

// client is a Redis client of a replica's own (a cluster client on the
// cluster).
func (r *quotaRig) client() redis.UniversalClient {
	if r.cluster != nil {
		return r.cluster.Client()
	}
	c := redis.NewClient(&redis.Options{Addr: r.addr})
	r.t.Cleanup(func() { _ = c.Close() })
	return c
}

func (r *quotaRig) used(ctx context.Context, customer, meter string, since time.Time) (int64, error) {
	r.reads.Add(1)
	if !since.Equal(r.start) {
		return 0, fmt.Errorf("used since %v; want the period start %v", since, r.start)
	}
	return r.counted.Load(), nil
}

// replica starts a Quotas with its own Redis client, closed at cleanup.
func (r *quotaRig) replica(mutate func(*QuotaOptions)) *Quotas {
	o := QuotaOptions{Redis: r.client(), Keys: r.keys, Used: r.used, LeaseTTL: 10 * time.Second,
		SyncInterval: time.Hour, MaxShares: 1000, Metrics: metrics.New(), Logger: testLogger()}
	if mutate != nil {
		mutate(&o)
	}
	q := NewQuotas(o)
	r.t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		defer cancel()
		_ = q.Close(ctx)
	})
	return q
}

func (r *quotaRig) claim(limit, units int64) Claim {
	return Claim{Customer: "cus_Q", Meter: "calls", Limit: limit, Units: units,
		PeriodStart: r.start, PeriodEnd: r.start.Add(30 * 24 * time.Hour)}
}

// ledger reads the period's ledger: units used and the leases' holdings.
func (r *quotaRig) ledger() (used int64, held map[string]int64) {
	r.t.Helper()
	return r.ledgerOf("cus_Q")
}

// ledgerKeys are a customer's ledger and leases keys of the rig's period.
func (r *quotaRig) ledgerKeys(customer string) []string {
	return (&Quotas{keys: r.keys}).ledgerKeys(shareKey{customer, "calls", r.start.Unix()})
}

func (r *quotaRig) ledgerOf(customer string) (used int64, held map[string]int64) {
	r.t.Helper()
	keys := r.ledgerKeys(customer)
	used, _ = r.admin.HGet(context.Background(), keys[0], "used").Int64()
	held = map[string]int64{}
	for id, v := range r.admin.HGetAll(context.Background(), keys[1]).Val() {
		var h, exp int64
		fmt.Sscanf(v, "%d:%d", &h, &exp)
		held[id] = h
	}
	return used, held
}

// crash stops a replica as SIGKILL would: its sync loop ends and nothing is
// reported or returned.
func (q *Quotas) crash() {
	q.mu.Lock()
	q.closed.Store(true)
	q.mu.Unlock()
	q.cancel()
	q.wg.Wait()
}

// serveAll reserves and settles (units used each) until the quota refuses,
// and returns how many requests were admitted.
func serveAll(t *testing.T, q *Quotas, c Claim, used int64) int {
	t.Helper()
	for n := 0; ; n++ {
		s, err := q.Reserve(context.Background(), c)
		var ex *QuotaExceeded
		if errors.As(err, &ex) {
			return n
		}
		if err != nil {
			t.Fatalf("Reserve: %v", err)
		}
		s.Settle(c.Units, used)
	}
}

// The issue-9 attack: 64 concurrent requests against a slow upstream on a
// quota of 50 were all admitted, because the quota was checked before and
// counted after. With reservations exactly 50 are, on one replica or three
// sharing one Redis, on redis-server and on the embedded store.
func TestQuotaExactUnderConcurrency(t *testing.T) {
	for _, c := range []struct {
		name     string
		embedded bool
		replicas int
	}{
		{"one replica", false, 1},
		{"three replicas", false, 3},
		{"embedded store", true, 1},
	} {
		t.Run(c.name, func(t *testing.T) { testQuotaExactUnderConcurrency(t, newQuotaRig(t, c.embedded), c.replicas) })
	}
}

// testQuotaExactUnderConcurrency sends 64 concurrent requests, held in
// flight, on a quota of 50 over n replicas of r.
func testQuotaExactUnderConcurrency(t *testing.T, r *quotaRig, n int) {
	var replicas []*Quotas
	for range n {
		replicas = append(replicas, r.replica(nil))
	}
	const clients, limit = 64, 50
	var admitted, attempts atomic.Int32
	release := make(chan struct{})
	var wg sync.WaitGroup
	for i := range clients {
		wg.Add(1)
		go func() {
			defer wg.Done()
			s, err := replicas[i%len(replicas)].Reserve(context.Background(), r.claim(limit, 1))
			if attempts.Add(1) == clients {
				close(release) // every request has been decided
			}
			var ex *QuotaExceeded
			if errors.As(err, &ex) {
				return
			}
			if err != nil {
				t.Errorf("Reserve: %v", err)
				return
			}
			admitted.Add(1)
			<-release // a slow upstream: every admitted request is still in flight
			s.Settle(1, 1)
		}()
	}
	wg.Wait()
	if got := admitted.Load(); got != limit {
		t.Errorf("%d concurrent requests on a quota of %d: %d admitted; want exactly %d", clients, limit, got, limit)
	}
	for _, q := range replicas {
		if n := serveAll(t, q, r.claim(limit, 1), 1); n != 0 {
			t.Errorf("after the quota was used up, %d more admitted; want 0", n)
		}
		if err := q.Close(context.Background()); err != nil {
			t.Fatal(err)
		}
	}
	if used, held := r.ledger(); used != limit || len(held) != 0 {
		t.Errorf("ledger after shutdown: used %d, leases %v; want %d used and no lease", used, held, limit)
	}
}

// A period's ledger opens from what the meter counted (once, whichever
// replica asks first), so a quota holds across a deploy of this version.
func TestQuotaLedgerOpensFromMeterCount(t *testing.T) {
	r := newQuotaRig(t, false)
	r.counted.Store(40)
	a, b := r.replica(nil), r.replica(nil)
	if n := serveAll(t, a, r.claim(50, 1), 1) + serveAll(t, b, r.claim(50, 1), 1); n != 10 {
		t.Errorf("with 40 of 50 counted, %d admitted; want 10", n)
	}
	if n := r.reads.Load(); n != 1 {
		t.Errorf("the meter was read %d times; want once, to open the ledger", n)
	}
}

// What an answer settles: nothing (denied, failed, unbilled) gives the
// units back; more than reserved is charged, and the one answer's excess
// is the most the quota can be overrun by.
func TestQuotaSettle(t *testing.T) {
	for _, c := range []struct {
		name         string
		limit        int64
		first        Claim
		firstUsed    int64
		next         int64 // units of each later request
		wantAdmitted int   // later requests admitted
		wantUsed     int64 // the ledger's count at the end
	}{
		{"released", 5, Claim{Units: 1}, 0, 1, 5, 5},
		{"charged above the reservation", 10, Claim{Units: 1}, 4, 1, 6, 10},
		{"overrun by one answer's excess, then refused", 3, Claim{Units: 1}, 10, 1, 0, 10},
		{"reserve: N holds N", 10, Claim{Units: 4}, 4, 4, 1, 8},
		{"reserve: N, answer used less", 10, Claim{Units: 4}, 1, 4, 2, 9},
	} {
		t.Run(c.name, func(t *testing.T) {
			r := newQuotaRig(t, false)
			q := r.replica(nil)
			first := r.claim(c.limit, c.first.Units)
			s, err := q.Reserve(context.Background(), first)
			if err != nil {
				t.Fatalf("first Reserve: %v", err)
			}
			s.Settle(first.Units, c.firstUsed)
			if got := serveAll(t, q, r.claim(c.limit, c.next), c.next); got != c.wantAdmitted {
				t.Errorf("after the first answer used %d: %d more admitted; want %d", c.firstUsed, got, c.wantAdmitted)
			}
			if err := q.Close(context.Background()); err != nil {
				t.Fatal(err)
			}
			if used, _ := r.ledger(); used != c.wantUsed {
				t.Errorf("ledger used = %d; want %d", used, c.wantUsed)
			}
		})
	}
}

// Near the limit a request with reserve: N is refused when N units are not
// free, and a smaller one still fits.
func TestQuotaReserveNeedsAllItsUnits(t *testing.T) {
	r := newQuotaRig(t, false)
	r.counted.Store(7)
	q := r.replica(nil)
	var ex *QuotaExceeded
	if _, err := q.Reserve(context.Background(), r.claim(10, 4)); !errors.As(err, &ex) || ex.Used != 7 || ex.Limit != 10 {
		t.Errorf("reserve 4 with 3 left = %v; want QuotaExceeded{Limit: 10, Used: 7}", err)
	}
	if s, err := q.Reserve(context.Background(), r.claim(10, 3)); err != nil {
		t.Errorf("reserve 3 with 3 left = %v; want admitted", err)
	} else {
		s.Settle(3, 3)
	}
}

// Shares are about 1/64 of what is free far from the limit (one store round
// trip per many requests) and shrink to what requests need near it, so no
// replica sits on units another one could admit.
func TestQuotaSharesShrinkNearTheLimit(t *testing.T) {
	for _, c := range []struct {
		counted, limit int64
		wantShare      int64 // granted by the first request's call
	}{
		{0, 1_000_000, 15625},
		{0, 10_000, 156},
		{9_900, 10_000, 1},
		{9_999, 10_000, 1},
		{0, 50, 1},
	} {
		t.Run(fmt.Sprintf("%d of %d", c.counted, c.limit), func(t *testing.T) {
			r := newQuotaRig(t, false)
			r.counted.Store(c.counted)
			q := r.replica(nil)
			s, err := q.Reserve(context.Background(), r.claim(c.limit, 1))
			if err != nil {
				t.Fatal(err)
			}
			defer s.Settle(1, 0)
			if _, held := r.ledger(); len(held) != 1 || sum(held) != c.wantShare {
				t.Errorf("share held after the first request = %v; want one lease of %d", held, c.wantShare)
			}
		})
	}
}

func sum(m map[string]int64) int64 {
	var n int64
	for _, v := range m {
		n += v
	}
	return n
}

// Shutdown returns a replica's share at once: another replica can admit
// all of it without waiting for the lease to expire.
func TestQuotaCloseReturnsTheShare(t *testing.T) {
	r := newQuotaRig(t, false)
	a := r.replica(nil)
	s, err := a.Reserve(context.Background(), r.claim(1000, 1))
	if err != nil {
		t.Fatal(err)
	}
	s.Settle(1, 1)
	if _, held := r.ledger(); sum(held) < 2 {
		t.Fatalf("replica a holds %v; want a share larger than its one request", held)
	}
	if err := a.Close(context.Background()); err != nil {
		t.Fatal(err)
	}
	if used, held := r.ledger(); used != 1 || len(held) != 0 {
		t.Errorf("after Close: used %d, leases %v; want 1 and none", used, held)
	}
	if n := serveAll(t, r.replica(nil), r.claim(1000, 1), 1); n != 999 {
		t.Errorf("replica b admitted %d; want the other 999 at once", n)
	}
}

// A share that went unused for a sync round goes back to the pool; the
// units served are reported in the same round.
func TestQuotaIdleShareReturned(t *testing.T) {
	r := newQuotaRig(t, false)
	a := r.replica(func(o *QuotaOptions) { o.SyncInterval = 20 * time.Millisecond })
	s, err := a.Reserve(context.Background(), r.claim(1000, 1))
	if err != nil {
		t.Fatal(err)
	}
	s.Settle(1, 1)
	testrig.WaitFor(t, 10*time.Second, func() error {
		if used, held := r.ledger(); used != 1 || len(held) != 0 {
			return fmt.Errorf("used %d, leases %v; want 1 used and the idle share returned", used, held)
		}
		return nil
	})
}

// Near the limit, a unit a released request leaves on an idle replica is
// handed back at once, not at the next sync round: another replica can
// admit it.
func TestQuotaReleasedUnitHandedBackNearTheLimit(t *testing.T) {
	r := newQuotaRig(t, false)
	a, b := r.replica(nil), r.replica(nil) // sync rounds never come (SyncInterval: 1h)
	s, err := a.Reserve(context.Background(), r.claim(5, 1))
	if err != nil {
		t.Fatal(err)
	}
	s.Settle(1, 0) // the upstream failed: released
	testrig.WaitFor(t, 10*time.Second, func() error {
		if _, held := r.ledger(); len(held) != 0 {
			return fmt.Errorf("leases %v; want a's released unit handed back", held)
		}
		return nil
	})
	if n := serveAll(t, b, r.claim(5, 1), 1); n != 5 {
		t.Errorf("b admitted %d; want all 5", n)
	}
}

// A replica killed while it holds a share: the units it served and
// reported stay used, its unused units come back once its lease expires,
// and nothing is admitted twice.
func TestQuotaCrashedReplicaUnitsComeBackAfterTheLease(t *testing.T) {
	r := newQuotaRig(t, false)
	// b serves ~1,000 units in far less, unless this machine is very slow
	// (then the check below allows for the lease's expiry).
	const ttl = 2 * time.Second
	a := r.replica(func(o *QuotaOptions) { o.LeaseTTL = ttl }) // syncs only when the test says
	b := r.replica(func(o *QuotaOptions) { o.LeaseTTL = ttl })
	const limit = 1000
	for range 5 {
		s, err := a.Reserve(context.Background(), r.claim(limit, 1))
		if err != nil {
			t.Fatal(err)
		}
		s.Settle(1, 1)
	}
	// One more request (released) marks the share in use, so a's sync
	// reports the 5 units and renews the share rather than returning it.
	s, err := a.Reserve(context.Background(), r.claim(limit, 1))
	if err != nil {
		t.Fatal(err)
	}
	s.Settle(1, 0)
	a.syncOnce(context.Background())
	if used, held := r.ledger(); used != 5 || held[s.id] == 0 {
		t.Fatalf("used %d, leases %v; want a's 5 units reported and its share held", used, held)
	}
	a.crash()
	_, held := r.ledger()
	aHeld := sum(held)
	var expiry int64 // of a's lease, Redis's clock (this host's), Unix ms
	fmt.Sscanf(r.admin.HGet(context.Background(), r.ledgerKeys("cus_Q")[1], s.id).Val(), "%d:%d", new(int64), &expiry)
	before := serveAll(t, b, r.claim(limit, 1), 1)
	want, lasted := limit-5-int(aHeld), time.Now().Before(time.UnixMilli(expiry))
	switch {
	case lasted && before != want:
		t.Errorf("while a's lease lasts, b admitted %d; want %d (limit - a's 5 served - a's %d held)", before, want, aHeld)
	case before < want || before > want+int(aHeld):
		t.Errorf("b admitted %d, some after a's lease expired; want %d to %d", before, want, want+int(aHeld))
	}
	after := 0
	testrig.WaitFor(t, 20*time.Second, func() error {
		after += serveAll(t, b, r.claim(limit, 1), 1)
		if after < int(aHeld) {
			return fmt.Errorf("b admitted %d of a's %d units since a crashed", after, aHeld)
		}
		return nil
	})
	if total := 5 + before + after; total != limit {
		t.Errorf("admitted %d in all (a 5, b %d + %d after the lease expired); want exactly %d", total, before, after, limit)
	}
}

// The documented crash bound: what a replica admitted after its last
// report, and only that, can be admitted again once its lease expires.
func TestQuotaCrashBoundIsTheUnreportedUse(t *testing.T) {
	r := newQuotaRig(t, false)
	const ttl = 300 * time.Millisecond
	a := r.replica(func(o *QuotaOptions) { o.LeaseTTL = ttl }) // its sync loop never runs (SyncInterval: 1h)
	b := r.replica(func(o *QuotaOptions) { o.LeaseTTL = ttl })
	const limit, reported, unreported = 10000, 4, 3 // one share serves all 7
	for i := range reported + unreported {
		s, err := a.Reserve(context.Background(), r.claim(limit, 1))
		if err != nil {
			t.Fatal(err)
		}
		s.Settle(1, 1)
		if i == reported-1 {
			a.syncOnce(context.Background())
		}
	}
	a.crash()
	admittedB := 0
	testrig.WaitFor(t, 20*time.Second, func() error {
		admittedB += serveAll(t, b, r.claim(limit, 1), 1)
		if admittedB < limit-reported {
			return fmt.Errorf("b admitted %d; waiting for a's lease to expire", admittedB)
		}
		return nil
	})
	if over := reported + unreported + admittedB - limit; over != unreported {
		t.Errorf("after the crash the quota was overrun by %d; want exactly the %d units a admitted since its last report", over, unreported)
	}
}

// Every lease call can be repeated after an unknown outcome: usage is
// cumulative, holdings are absolute, and a call with an old sequence
// number changes nothing; a grant whose answer was lost goes back to the
// pool with the share's next call.
func TestQuotaLeaseCallsAreIdempotent(t *testing.T) {
	r := newQuotaRig(t, false)
	q := r.replica(nil)
	s, err := q.share(r.claim(100, 1), false)
	if err != nil {
		t.Fatal(err)
	}
	ctx := context.Background()
	call := func(seq, cum, hold, need int64) leaseReply {
		t.Helper()
		rep, err := q.call(ctx, &leaseCall{s: s, seq: seq, cum: cum, hold: hold, need: need, want: need, limit: 100, init: "0"})
		if err != nil {
			t.Fatal(err)
		}
		return rep
	}
	for _, c := range []struct {
		name                 string
		seq, cum, hold, need int64
		wantStatus           int64
		wantUsed, wantHeld   int64
	}{
		{"grant, answer lost", 1, 0, 0, 5, leaseApplied, 0, 5},
		{"the same call again", 1, 0, 0, 5, leaseStale, 0, 5},
		{"next call: 3 used, holds nothing (the lost grant returns)", 2, 3, 0, 0, leaseApplied, 3, 0},
		{"repeated", 2, 3, 0, 0, leaseStale, 3, 0},
		{"an older call arriving late", 1, 1, 9, 0, leaseStale, 3, 0},
		{"nothing new used", 3, 3, 0, 0, leaseApplied, 3, 0},
		{"two more", 4, 5, 0, 0, leaseApplied, 5, 0},
	} {
		rep := call(c.seq, c.cum, c.hold, c.need)
		used, held := r.ledger()
		if rep.status != c.wantStatus || used != c.wantUsed || sum(held) != c.wantHeld {
			t.Errorf("%s: status %d, used %d, held %v; want status %d, used %d, held %d",
				c.name, rep.status, used, held, c.wantStatus, c.wantUsed, c.wantHeld)
		}
	}
}

// A plan change applies to the next call: a lower limit refuses, a
// higher one admits again.
func TestQuotaLimitChanges(t *testing.T) {
	r := newQuotaRig(t, false)
	r.counted.Store(8)
	q := r.replica(nil)
	var ex *QuotaExceeded
	if _, err := q.Reserve(context.Background(), r.claim(5, 1)); !errors.As(err, &ex) {
		t.Errorf("8 used, limit lowered to 5: %v; want QuotaExceeded", err)
	}
	if n := serveAll(t, q, r.claim(20, 1), 1); n != 12 {
		t.Errorf("8 used, limit raised to 20: %d admitted; want 12", n)
	}
}

// A new billing period is a new ledger, opened from the meter's count
// since the new period's start.
func TestQuotaNewPeriodNewLedger(t *testing.T) {
	r := newQuotaRig(t, false)
	q := r.replica(nil)
	if n := serveAll(t, q, r.claim(3, 1), 1); n != 3 {
		t.Fatalf("first period: %d admitted; want 3", n)
	}
	r.start = r.start.Add(30 * 24 * time.Hour)
	if n := serveAll(t, q, r.claim(3, 1), 1); n != 3 {
		t.Errorf("next period: %d admitted; want 3", n)
	}
}

// While Redis is unreachable a replica admits from its share only until its
// lease may have expired, then refuses with an error (503, or fail_open),
// never with "quota exceeded" and never past the lease.
func TestQuotaStoreDownAdmitsOnlyWithinTheLease(t *testing.T) {
	rd := testrig.StartRedis(t, testrig.WithoutPersistence())
	r := &quotaRig{t: t, addr: rd.Addr(), keys: store.Keys{Prefix: "tq:"}, start: time.Now().Add(-time.Hour).Truncate(time.Second)}
	r.admin = r.client()
	const ttl = 5 * time.Second // the Kill below comes well within it, however loaded the machine
	q := r.replica(func(o *QuotaOptions) { o.LeaseTTL = ttl })
	s, err := q.Reserve(context.Background(), r.claim(10000, 1))
	if err != nil {
		t.Fatal(err)
	}
	s.Settle(1, 1)
	rd.Kill()
	sh, err := q.Reserve(context.Background(), r.claim(10000, 1))
	if err != nil {
		t.Fatalf("Redis down, share valid: %v; want admitted from memory", err)
	}
	sh.Settle(1, 1)
	testrig.WaitFor(t, 20*time.Second, func() error {
		s, err := q.Reserve(context.Background(), r.claim(10000, 1))
		if err == nil {
			s.Settle(1, 1)
			return errors.New("still admitted from the share")
		}
		var ex *QuotaExceeded
		if errors.As(err, &ex) {
			t.Errorf("Redis down: %v; want a store error, not quota_exceeded", err)
		}
		return nil
	})
	// Shutdown cannot return the share: it says so, and the lease expires.
	ctx, cancel := context.WithTimeout(context.Background(), 300*time.Millisecond)
	defer cancel()
	if err := q.Close(ctx); err == nil {
		t.Errorf("Close with Redis down = nil; want an error naming the shares not returned")
	}
}

// Reserve after Close is refused; Close twice is fine.
func TestQuotaClosed(t *testing.T) {
	r := newQuotaRig(t, false)
	q := r.replica(nil)
	if err := q.Close(context.Background()); err != nil {
		t.Fatal(err)
	}
	if _, err := q.Reserve(context.Background(), r.claim(10, 1)); !errors.Is(err, ErrQuotasClosed) {
		t.Errorf("Reserve after Close = %v; want ErrQuotasClosed", err)
	}
	if err := q.Close(context.Background()); err != nil {
		t.Errorf("second Close = %v", err)
	}
}

// State's Reset is the time from the replica's clock to the period's end,
// never negative, whatever the end: as Time.Sub would give it, for ends
// near and far, past and future, and for ends outside the nanosecond
// range (a corrupt period from Stripe).
func TestQuotaStateResetIsTimeToTheEnd(t *testing.T) {
	r := newQuotaRig(t, false)
	now := r.start.Add(90*time.Minute + 123456789)
	q := r.replica(func(o *QuotaOptions) { o.Now = func() time.Time { return now } })
	for i, end := range []time.Time{
		now.Add(time.Nanosecond), now.Add(-time.Nanosecond), now, now.Add(29 * 24 * time.Hour), r.start.Add(time.Second),
		time.Date(2262, 4, 11, 23, 47, 16, 0, time.UTC), time.Date(2262, 4, 11, 23, 47, 17, 0, time.UTC),
		time.Date(2300, 1, 1, 0, 0, 0, 0, time.UTC), time.Date(9999, 12, 31, 0, 0, 0, 0, time.UTC),
	} {
		c := r.claim(100, 1)
		c.Customer, c.PeriodEnd = fmt.Sprintf("cus_R%d", i), end
		sh, err := q.Reserve(context.Background(), c)
		if err != nil {
			t.Fatal(err)
		}
		want := max(0, end.Sub(now))
		if got := sh.State().Reset; got != want {
			t.Errorf("period end %v, now %v: Reset = %v; want %v", end, now, got, want)
		}
		sh.Settle(1, 0)
	}
	for _, c := range []struct {
		t    time.Time
		want int64
	}{
		{time.Unix(0, 0), 0}, {time.Unix(0, -1), 0}, {time.Date(1, 1, 1, 0, 0, 0, 0, time.UTC), 0},
		{time.Unix(0, math.MaxInt64), math.MaxInt64}, {time.Unix(0, math.MaxInt64).Add(time.Nanosecond), math.MaxInt64},
		{time.Unix(1767225600, 5), 1767225600_000_000_005},
	} {
		if got := unixNano(c.t); got != c.want {
			t.Errorf("unixNano(%v) = %d; want %d", c.t, got, c.want)
		}
	}
}
