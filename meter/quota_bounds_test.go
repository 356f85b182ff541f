package meter

import (
	"context"
	"errors"
	"fmt"
	"math"
	"strconv"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus/testutil"
	"github.com/redis/go-redis/v9"

	"github.com/tollgate-dev/tollgate/config"
	"github.com/tollgate-dev/tollgate/internal/metrics"
	"github.com/tollgate-dev/tollgate/internal/store"
	"github.com/tollgate-dev/tollgate/internal/testrig"
)

// The quota ledger's arithmetic (issue 9, after the flush scripts were
// hardened): every sum is checked or saturating at MaxTotal, a ledger field
// that is not a count fails closed for its customer only, and nothing a
// caller, an upstream or a corrupt key sends can wrap, go negative or lose
// precision in Lua's doubles. Each test runs on a single redis-server here
// and on a real Redis Cluster in TestQuotaOnRedisCluster.

var rigPrefixes atomic.Int64

// fresh is a rig on r's Redis (single or cluster) with a key
// prefix of its own.
func (r *quotaRig) fresh(t *testing.T) *quotaRig {
	return &quotaRig{t: t, addr: r.addr, cluster: r.cluster, admin: r.admin, start: r.start,
		keys: store.Keys{Prefix: fmt.Sprintf("tqb%d:", rigPrefixes.Add(1))}}
}

func newClusterQuotaRig(t *testing.T, c *testrig.RedisCluster) *quotaRig {
	return &quotaRig{t: t, cluster: c, admin: c.Client(), keys: store.Keys{Prefix: "tqc:"},
		start: time.Now().Add(-time.Hour).Truncate(time.Second)}
}

func (r *quotaRig) claimFor(customer string, limit, units int64) Claim {
	c := r.claim(limit, units)
	c.Customer = customer
	return c
}

func TestQuotaLedgerArithmetic(t *testing.T) {
	r := newQuotaRig(t, false)
	for _, tc := range quotaBoundsTests {
		t.Run(tc.name, func(t *testing.T) { tc.fn(t, r.fresh(t)) })
	}
}

func TestQuotaOnRedisCluster(t *testing.T) {
	r := newClusterQuotaRig(t, testrig.StartRedisCluster(t, 3))
	exact := func(t *testing.T, r *quotaRig) { testQuotaExactUnderConcurrency(t, r, 3) }
	tests := append([]quotaBoundsTest{{"ExactUnderConcurrency", exact}}, quotaBoundsTests...)
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) { tc.fn(t, r.fresh(t)) })
	}
}

type quotaBoundsTest struct {
	name string
	fn   func(*testing.T, *quotaRig)
}

var quotaBoundsTests = []quotaBoundsTest{
	{"CorruptLedgerFailsClosedForThatCustomerOnly", testQuotaCorruptLedger},
	{"RepairedLedgerServesAgain", testQuotaRepairedLedger},
	{"WaitersOnADamagedLedger", testQuotaWaitersOnADamagedLedger},
	{"HugeSettlementsSaturate", testQuotaHugeSettlements},
	{"LimitsAtTheBounds", testQuotaLimitsAtTheBounds},
	{"ScriptRefusesArgumentsOutOfRange", testQuotaScriptArguments},
}

// quotaCorruptions are ways a customer's ledger can be damaged (an
// operator's edit, a restore of the wrong keys, another program sharing
// the prefix). Each must fail closed for that customer: no request
// admitted, nothing written, never read as 0 or as "no lease".
var quotaCorruptions = []struct {
	name string
	// corrupt damages the ledger (led, lea) whose own share records are
	// r:<id> for ids.
	corrupt func(ctx context.Context, rdb redis.UniversalClient, led, lea string, ids []string) error
}{
	{"used is not a number", hset("led", "used", "abc")},
	{"used is negative", hset("led", "used", "-5")},
	{"used in exponent form", hset("led", "used", "1e3")},
	{"used with a leading zero", hset("led", "used", "07")},
	{"used past MaxTotal", hset("led", "used", strconv.FormatInt(MaxTotal+1, 10))},
	{"used past int64", hset("led", "used", "99999999999999999999")},
	{"used missing", func(ctx context.Context, rdb redis.UniversalClient, led, _ string, _ []string) error {
		return rdb.HDel(ctx, led, "used").Err()
	}},
	{"a share record that is not units:seq", func(ctx context.Context, rdb redis.UniversalClient, led, _ string, ids []string) error {
		for _, id := range ids {
			if err := rdb.HSet(ctx, led, "r:"+id, "abc:1").Err(); err != nil {
				return err
			}
		}
		return nil
	}},
	{"a share record past int64", func(ctx context.Context, rdb redis.UniversalClient, led, _ string, ids []string) error {
		for _, id := range ids {
			if err := rdb.HSet(ctx, led, "r:"+id, "99999999999999999999:1").Err(); err != nil {
				return err
			}
		}
		return nil
	}},
	{"a lease that is not units:expiry", hset("lea", "rz:9", "abc")},
	{"a lease holding a negative amount", hset("lea", "rz:9", fmt.Sprintf("-5:%d", time.Now().Add(time.Hour).UnixMilli()))},
	{"a lease holding past int64", hset("lea", "rz:9", fmt.Sprintf("99999999999999999999:%d", time.Now().Add(time.Hour).UnixMilli()))},
	{"the ledger is a string", func(ctx context.Context, rdb redis.UniversalClient, led, _ string, _ []string) error {
		return rdb.Set(ctx, led, "x", 0).Err()
	}},
	{"the leases are a list", func(ctx context.Context, rdb redis.UniversalClient, _, lea string, _ []string) error {
		if err := rdb.Del(ctx, lea).Err(); err != nil {
			return err
		}
		return rdb.RPush(ctx, lea, "x").Err()
	}},
}

// hset sets field of the ledger ("led") or its leases ("lea").
func hset(which, field, value string) func(context.Context, redis.UniversalClient, string, string, []string) error {
	return func(ctx context.Context, rdb redis.UniversalClient, led, lea string, _ []string) error {
		key := led
		if which == "lea" {
			key = lea
		}
		return rdb.HSet(ctx, key, field, value).Err()
	}
}

// dumpKeys is what Redis holds under keys (type and content), to show that
// a refused call wrote nothing.
func dumpKeys(t *testing.T, rdb redis.UniversalClient, keys ...string) string {
	t.Helper()
	ctx := context.Background()
	var b strings.Builder
	for _, k := range keys {
		typ := rdb.Type(ctx, k).Val()
		var v any
		switch typ {
		case "hash":
			v = rdb.HGetAll(ctx, k).Val()
		case "string":
			v = rdb.Get(ctx, k).Val()
		case "list":
			v = rdb.LRange(ctx, k, 0, -1).Val()
		}
		fmt.Fprintf(&b, "%s %s %v\n", k, typ, v)
	}
	return b.String()
}

// A replica whose logs the test reads.
func (r *quotaRig) loggedReplica(id string, logs *testrig.LogBuffer, m *metrics.Metrics) *Quotas {
	return r.replica(func(o *QuotaOptions) {
		o.ReplicaID, o.Metrics, o.Logger = id, m, jsonLogger(logs)
	})
}

// The issue-9 class on the quota ledger: a corrupt field read as 0 (or a
// corrupt lease dropped) opened a customer's quota again. Every corruption
// fails closed for that customer, on the request path and in the
// background sync, writes nothing, is logged at error and counted, and
// never holds back another customer, whose ledger call shares the sync's
// pipeline.
func testQuotaCorruptLedger(t *testing.T, base *quotaRig) {
	const limit = 100
	good := []string{"cus_R0", "cus_R1", "cus_R2", "cus_R3", "cus_R4", "cus_R5", "cus_R6", "cus_R7"}
	for _, cc := range quotaCorruptions {
		t.Run(cc.name, func(t *testing.T) {
			r := base.fresh(t)
			ctx := context.Background()
			var logs testrig.LogBuffer
			mc, mb := metrics.New(), metrics.New()
			c := r.loggedReplica("rc", &logs, mc)
			for _, cus := range append([]string{"cus_Q"}, good...) { // cus_Q's share is rc:1
				for range 2 {
					s, err := c.Reserve(ctx, r.claimFor(cus, limit, 1))
					if err != nil {
						t.Fatalf("%s before the damage: %v", cus, err)
					}
					s.Settle(1, 1)
				}
			}
			keys := r.ledgerKeys("cus_Q")
			if err := cc.corrupt(ctx, r.admin, keys[0], keys[1], []string{"rc:1", "rb:1"}); err != nil {
				t.Fatal(err)
			}
			before := dumpKeys(t, r.admin, keys...)

			// The background sync: one pipeline for every share.
			c.syncOnce(ctx)
			for _, cus := range good {
				if used, _ := r.ledgerOf(cus); used != 2 {
					t.Errorf("%s's ledger used = %d after the sync; want its 2 units reported beside the corrupt ledger", cus, used)
				}
			}
			// The request path, on the replica that held a share and on one
			// that never did.
			b := r.loggedReplica("rb", &logs, mb)
			for name, q := range map[string]*Quotas{"the replica that held a share": c, "a new replica": b} {
				s, err := q.Reserve(ctx, r.claimFor("cus_Q", limit, 1))
				var ex *QuotaExceeded
				switch {
				case err == nil:
					s.Settle(1, 0)
					t.Errorf("%s: cus_Q admitted on a corrupt ledger; want ErrCorrupt", name)
				case errors.As(err, &ex) || !errors.Is(err, ErrCorrupt):
					t.Errorf("%s: Reserve = %v; want ErrCorrupt (503, not 429)", name, err)
				}
			}
			if after := dumpKeys(t, r.admin, keys...); after != before {
				t.Errorf("the corrupt ledger was written:\nbefore %safter  %s", before, after)
			}
			// Every other customer is served exactly to its limit.
			for _, cus := range good {
				if n := serveAll(t, c, r.claimFor(cus, limit, 1), 1) + serveAll(t, b, r.claimFor(cus, limit, 1), 1); n != limit-2 {
					t.Errorf("%s: %d admitted after the damage; want %d", cus, n, limit-2)
				}
			}
			for name, m := range map[string]*metrics.Metrics{"rc": mc, "rb": mb} {
				if n := testutil.ToFloat64(m.QuotaLeaseRequests.WithLabelValues("corrupt")); n < 1 {
					t.Errorf("%s: quota_lease_requests_total{result=corrupt} = %v; want at least 1", name, n)
				}
			}
			if !loggedError(t, logs.String(), "cus_Q", keys[0]) {
				t.Errorf("no error log line names cus_Q and its ledger; logs:\n%s", logs.String())
			}
			// Shutdown does not wait for a ledger that cannot be repaired in
			// time: the other shares are returned, and Close is quick.
			cctx, cancel := context.WithTimeout(ctx, 15*time.Second)
			defer cancel()
			_ = c.Close(cctx)
			if cctx.Err() != nil {
				t.Errorf("Close waited for the corrupt ledger until its deadline")
			}
			for _, cus := range good {
				if _, held := r.ledgerOf(cus); len(held) != 0 {
					t.Errorf("%s: leases %v after rc's Close; want none", cus, held)
				}
			}
		})
	}
}

// loggedError reports an error line that names the customer and the key.
func loggedError(t *testing.T, logs, customer, key string) bool {
	lines, err := testrig.ParseLogLines(logs)
	if err != nil {
		t.Fatalf("logs: %v", err)
	}
	for _, l := range lines {
		if l["level"] == "ERROR" && l["customer"] == customer && strings.Contains(fmt.Sprint(l), key) {
			return true
		}
	}
	return false
}

// Once an operator repairs the field the log names, the customer is served
// again, from the repaired count.
func testQuotaRepairedLedger(t *testing.T, r *quotaRig) {
	ctx := context.Background()
	q := r.replica(nil)
	if n := serveAll(t, q, r.claim(10, 1), 1); n != 10 {
		t.Fatalf("admitted %d; want 10", n)
	}
	if err := q.Close(ctx); err != nil {
		t.Fatal(err)
	}
	led := r.ledgerKeys("cus_Q")[0]
	r.admin.HSet(ctx, led, "used", "x")
	q = r.replica(nil)
	if _, err := q.Reserve(ctx, r.claim(10, 1)); !errors.Is(err, ErrCorrupt) {
		t.Fatalf("corrupt: %v; want ErrCorrupt", err)
	}
	r.admin.HSet(ctx, led, "used", "6")
	if n := serveAll(t, q, r.claim(10, 1), 1); n != 4 {
		t.Errorf("repaired to 6 of 10: %d admitted; want 4", n)
	}
}

// Answers that report more than they reserved are charged, and their sum
// saturates at MaxTotal, exactly, in memory and in the ledger: with
// metering.max_units_per_request at 2^40, 8,192 answers reach 2^53 where
// Lua's doubles stop being exact, and two of 2^62 wrap an int64. The
// quota stays closed, the ledger stays a valid count, and other replicas
// refuse too (429, never an error).
func testQuotaHugeSettlements(t *testing.T, base *quotaRig) {
	for _, c := range []struct {
		name     string
		limit    int64
		counted  int64 // what the ledger opens from
		requests int
		used     int64 // each answer
	}{
		{"9,000 answers of 2^40 in flight at once", 1_000_000, 0, 9000, config.MaxUnitsBound},
		{"two answers of 2^62 (an int64 wraps)", 1_000_000, 0, 2, 1 << 62},
		{"one answer of MaxInt64", 1_000_000, 0, 1, math.MaxInt64},
		{"an answer past the bound at a limit of MaxTotal", MaxTotal, MaxTotal - 1, 1, 10},
	} {
		t.Run(c.name, func(t *testing.T) {
			r := base.fresh(t)
			r.counted.Store(c.counted)
			ctx := context.Background()
			q := r.replica(nil)
			var shares []*Share
			for range c.requests {
				s, err := q.Reserve(ctx, r.claim(c.limit, 1))
				if err != nil {
					t.Fatalf("request %d: %v", len(shares)+1, err)
				}
				shares = append(shares, s)
			}
			for _, s := range shares {
				s.Settle(1, c.used)
			}
			q.syncOnce(ctx)
			led := r.ledgerKeys("cus_Q")[0]
			if got := r.admin.HGet(ctx, led, "used").Val(); got != strconv.FormatInt(MaxTotal, 10) {
				t.Errorf("ledger used = %q; want MaxTotal %d exactly (saturated, not rounded or wrapped)", got, int64(MaxTotal))
			}
			for name, qq := range map[string]*Quotas{"the replica": q, "another replica": r.replica(nil)} {
				_, err := qq.Reserve(ctx, r.claim(c.limit, 1))
				var ex *QuotaExceeded
				if !errors.As(err, &ex) || ex.Used < c.limit {
					t.Errorf("%s after the overrun: %v; want QuotaExceeded with used >= %d", name, err, c.limit)
				}
			}
			if err := q.Close(ctx); err != nil {
				t.Errorf("Close: %v", err)
			}
			if used, held := r.ledger(); used != MaxTotal || len(held) != 0 {
				t.Errorf("after Close: used %d, leases %v; want MaxTotal and none", used, held)
			}
		})
	}
}

// Limits up to MaxTotal are exact (config refuses a larger plan limit; a
// caller's larger one is MaxTotal), and so is a ledger opened from a meter
// count at the bound.
func testQuotaLimitsAtTheBounds(t *testing.T, base *quotaRig) {
	for _, c := range []struct {
		name         string
		limit        int64
		counted      int64
		units        int64
		wantAdmitted int
		wantUsed     int64
	}{
		{"limit MaxTotal, one unit left", MaxTotal, MaxTotal - 1, 1, 1, MaxTotal},
		{"limit MaxTotal, used up", MaxTotal, MaxTotal, 1, 0, MaxTotal},
		{"limit MaxTotal, 10 left, reserve 4", MaxTotal, MaxTotal - 10, 4, 2, MaxTotal - 2},
		{"limit MaxTotal, 2^40 left, reserve 2^40", MaxTotal, MaxTotal - config.MaxUnitsBound, config.MaxUnitsBound, 1, MaxTotal},
		{"a limit past MaxTotal is MaxTotal", math.MaxInt64, MaxTotal - 3, 1, 3, MaxTotal},
		{"a meter count past MaxTotal is MaxTotal", MaxTotal, math.MaxInt64, 1, 0, MaxTotal},
		{"limit 0", 0, 0, 1, 0, 0},
		{"a negative limit admits nothing", -5, 0, 1, 0, 0},
		{"a negative meter count is 0", 3, -7, 1, 3, 3},
	} {
		t.Run(c.name, func(t *testing.T) {
			r := base.fresh(t)
			r.counted.Store(c.counted)
			q := r.replica(nil)
			if n := serveAll(t, q, r.claim(c.limit, c.units), c.units); n != c.wantAdmitted {
				t.Errorf("admitted %d; want %d", n, c.wantAdmitted)
			}
			if err := q.Close(context.Background()); err != nil {
				t.Fatal(err)
			}
			if used, held := r.ledger(); used != c.wantUsed || len(held) != 0 {
				t.Errorf("ledger used %d, leases %v; want %d and none", used, held, c.wantUsed)
			}
		})
	}
	// A claim past MaxUnits (the proxy never sends one) is an error, not
	// a wrap of the waiting requests' sum.
	q := base.fresh(t).replica(nil)
	if _, err := q.Reserve(context.Background(), base.claim(MaxTotal, MaxUnits+1)); !errors.Is(err, ErrClaimUnits) {
		t.Errorf("Reserve of MaxUnits+1 = %v; want ErrClaimUnits", err)
	}
}

// The script checks its arguments before any write: a value that is not a
// count in [0, MaxTotal] is refused whole.
func testQuotaScriptArguments(t *testing.T, r *quotaRig) {
	q := r.replica(nil)
	s, err := q.share(r.claim(100, 1), false)
	if err != nil {
		t.Fatal(err)
	}
	ctx := context.Background()
	ok := leaseCall{s: s, seq: 1, cum: 0, hold: 0, need: 1, want: 1, limit: 100, init: "0"}
	for _, c := range []struct {
		name string
		edit func(*leaseCall)
	}{
		{"cumulative past MaxTotal", func(c *leaseCall) { c.cum = MaxTotal + 1 }},
		{"negative cumulative", func(c *leaseCall) { c.cum = -1 }},
		{"negative hold", func(c *leaseCall) { c.hold = -1 }},
		{"hold past MaxTotal", func(c *leaseCall) { c.hold = MaxTotal + 1 }},
		{"want past MaxTotal", func(c *leaseCall) { c.want = math.MaxInt64 }},
		{"limit past MaxTotal", func(c *leaseCall) { c.limit = MaxTotal + 1 }},
		{"negative sequence", func(c *leaseCall) { c.seq = -1 }},
		{"opening count not a count", func(c *leaseCall) { c.init = "-1" }},
	} {
		call := ok
		c.edit(&call)
		before := dumpKeys(t, r.admin, r.ledgerKeys("cus_Q")...)
		if _, err := q.call(ctx, &call); err == nil {
			t.Errorf("%s: accepted; want refused", c.name)
		}
		if after := dumpKeys(t, r.admin, r.ledgerKeys("cus_Q")...); after != before {
			t.Errorf("%s: written:\nbefore %safter  %s", c.name, before, after)
		}
	}
	if _, err := q.call(ctx, &ok); err != nil {
		t.Errorf("a valid call: %v", err)
	}
}

// parseLease refuses an answer out of range rather than adding it to a
// share.
func TestQuotaReplyOutOfRange(t *testing.T) {
	for _, c := range []struct {
		name string
		res  []int64
		ok   bool
	}{
		{"applied", []int64{1, 5, 0, 3, 0, 92}, true},
		{"missing", []int64{-1}, true},
		{"negative grant", []int64{1, -5, 0, 3, 0, 92}, false},
		{"grant past MaxTotal", []int64{1, MaxTotal + 1, 0, 3, 0, 92}, false},
		{"backed more than held", []int64{1, 0, 7, 3, 0, 92}, false},
		{"negative used", []int64{1, 0, 0, -3, 0, 92}, false},
		{"free below -MaxTotal", []int64{1, 0, 0, 3, 0, -MaxTotal - 1}, false},
		{"unknown status", []int64{2, 0, 0, 3, 0, 92}, false},
		{"short", []int64{1, 0}, false},
	} {
		_, err := parseLease(&leaseCall{hold: 5}, c.res, nil)
		if (err == nil) != c.ok {
			t.Errorf("%s: parseLease(%v) = %v; want ok %v", c.name, c.res, err, c.ok)
		}
	}
}

// config.MaxLimit, the largest plan limit, is the meter's MaxTotal.
func TestQuotaMaxLimitIsMaxTotal(t *testing.T) {
	if got, want := int64(config.MaxLimit), int64(MaxTotal); got != want {
		t.Errorf("config.MaxLimit = %d; want meter.MaxTotal %d", got, want)
	}
}

// Requests waiting for a ledger call that finds the ledger damaged get the
// same answer as the request that made it (503), not a 429 from what the
// share saw before the damage, and not a call each.
func testQuotaWaitersOnADamagedLedger(t *testing.T, r *quotaRig) {
	ctx := context.Background()
	q := r.replica(nil)
	if n := serveAll(t, q, r.claim(10, 1), 1); n != 10 {
		t.Fatalf("admitted %d; want 10", n)
	}
	r.admin.HSet(ctx, r.ledgerKeys("cus_Q")[0], "used", "x")
	const clients = 20
	errs := make(chan error, clients)
	start := make(chan struct{})
	for range clients {
		go func() {
			<-start
			_, err := q.Reserve(ctx, r.claim(10, 1))
			errs <- err
		}()
	}
	close(start)
	for range clients {
		if err := <-errs; !errors.Is(err, ErrCorrupt) {
			t.Errorf("a request on a damaged ledger: %v; want ErrCorrupt", err)
		}
	}
}
