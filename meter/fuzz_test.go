package meter

import (
	"context"
	"log/slog"
	"math"
	"math/big"
	"regexp"
	"strconv"
	"sync"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"

	"github.com/tollgate-dev/tollgate/internal/metrics"
	"github.com/tollgate-dev/tollgate/internal/store"
	"github.com/tollgate-dev/tollgate/internal/testrig"
)

// fuzzUnits are the unit values a Count may take: ordinary, at and past the
// meter's bounds, at the 2^53 and int64 edges, negative.
var fuzzUnits = []int64{0, 1, 2, 7, 1000, MaxUnits - 1, MaxUnits, MaxUnits + 1, MaxTotal, 1 << 53, 1<<53 + 1,
	math.MaxInt64, 1 << 62, -1, math.MinInt64}

// fuzzStored are values customer 0's Redis fields may hold before the run:
// valid counts at the edges and values no flush writes.
var fuzzStored = []string{"0", "1", "9007199254740991", "9007199254740990", "9006199254740991", "9007199254740992",
	"9007199254740993", "9223372036854775807", "-1", "12abc", "1e3", "", " 1", "01", "1.5"}

var validCount = regexp.MustCompile(`^(0|[1-9][0-9]*)$`)

// storedCount is the test's own reading of a stored value: a decimal
// integer in [0, MaxTotal], or not valid.
func storedCount(s string) (*big.Int, bool) {
	n, ok := new(big.Int).SetString(s, 10)
	if !validCount.MatchString(s) || !ok || n.Cmp(big.NewInt(MaxTotal)) > 0 {
		return nil, false
	}
	return n, true
}

// refusals sums, per customer and reason, the units the meter logged as
// refused (msgRefused).
type refusals struct {
	mu    sync.Mutex
	units map[[2]string]*big.Int
}

func (h *refusals) Enabled(context.Context, slog.Level) bool { return true }
func (h *refusals) WithAttrs([]slog.Attr) slog.Handler       { return h }
func (h *refusals) WithGroup(string) slog.Handler            { return h }
func (h *refusals) Handle(_ context.Context, r slog.Record) error {
	if r.Message != msgRefused {
		return nil
	}
	var cus, reason string
	var units int64
	r.Attrs(func(a slog.Attr) bool {
		switch a.Key {
		case "customer":
			cus = a.Value.String()
		case "reason":
			reason = a.Value.String()
		case "units":
			units = a.Value.Int64()
		}
		return true
	})
	h.mu.Lock()
	defer h.mu.Unlock()
	k := [2]string{cus, reason}
	if h.units[k] == nil {
		h.units[k] = new(big.Int)
	}
	h.units[k].Add(h.units[k], big.NewInt(units))
	return nil
}

func (h *refusals) of(cus, reason string) *big.Int {
	h.mu.Lock()
	defer h.mu.Unlock()
	if n := h.units[[2]string{cus, reason}]; n != nil {
		return new(big.Int).Set(n)
	}
	return new(big.Int)
}

// fuzzRun is one sequence: data[0] picks how customer 0's Redis data is
// seeded (nothing, a stored value in its window, totals or rollup, or a key
// of the wrong type), data[1] the stored value; then pairs (op, arg): a
// Count (customer, window, fuzzUnits[arg]), a flush, or a repair of
// customer 0's data followed by a retry of what it held.
type fuzzRun struct {
	t       *testing.T
	rdb     redis.UniversalClient
	m       *Meter
	base    time.Time
	offered map[string]*big.Int // valid units passed to Count
	invalid map[string]*big.Int // units out of [0, MaxUnits]
}

const fuzzCustomers = 3

func FuzzCountFlushConservesUnits(f *testing.F) {
	rd := testrig.StartRedis(f, testrig.WithoutPersistence())
	rdb := rd.Client()
	for _, seed := range [][]byte{
		{0, 0, 0, 1, 2, 0},                         // one unit, flushed
		{0, 0, 0, 11, 0, 11, 2, 0},                 // MaxInt64 twice: no wrap
		{0, 0, 0, 12, 0, 12, 2, 0, 0, 1, 2, 0},     // 2^62 twice, then a valid count
		{0, 0, 0, 6, 0, 6, 0, 6, 0, 8, 2, 0},       // MaxUnits thrice, MaxTotal refused
		{1, 2, 0, 1, 0, 6, 2, 0, 4, 3, 2, 0},       // window at MaxTotal: held, others flushed
		{1, 4, 0, 6, 2, 0, 0, 1, 2, 0},             // window at MaxTotal-MaxUnits: exactly to the edge
		{2, 9, 0, 3, 4, 3, 8, 5, 2, 0, 3, 0},       // totals corrupt, repaired, retried
		{2, 3, 0, 2, 2, 0},                         // totals at MaxTotal-1
		{3, 7, 0, 1, 2, 0, 3, 0, 2, 0},             // rollup at MaxInt64
		{4, 0, 0, 1, 4, 2, 2, 0, 3, 0, 2, 0},       // window key of the wrong type
		{5, 0, 0, 1, 4, 1, 2, 0, 3, 0, 0, 1, 2, 0}, // open index of the wrong type
		{2, 12, 0, 13, 4, 14, 8, 0, 2, 0},          // totals " 1"; -1, MinInt64, 0
	} {
		f.Add(seed)
	}
	f.Fuzz(func(t *testing.T, data []byte) {
		if len(data) < 2 || len(data) > 602 {
			return
		}
		if err := rdb.FlushAll(context.Background()).Err(); err != nil {
			t.Fatal(err)
		}
		run := &fuzzRun{t: t, rdb: rdb, base: time.UnixMilli(1700000000000),
			offered: map[string]*big.Int{}, invalid: map[string]*big.Int{}}
		run.play(data)
	})
}

func (r *fuzzRun) play(data []byte) {
	t := r.t
	ctx := context.Background()
	clk := newFakeClock(r.base)
	ref := &refusals{units: map[[2]string]*big.Int{}}
	cfg := testMetering()
	cfg.FlushInterval = time.Hour
	m, err := New(Options{Config: cfg, Redis: r.rdb, Keys: store.Keys{Prefix: "fz:"}, Metrics: metrics.New(),
		Logger: slog.New(ref), Now: clk.Now})
	if err != nil {
		t.Fatal(err)
	}
	r.m = m
	defer func() {
		cctx, cancel := context.WithTimeout(ctx, time.Second)
		defer cancel()
		_ = m.Close(cctx)
	}()
	seeded, baseline, corrupt := r.seed(data[0], data[1])
	for i := 2; i+1 < len(data); i += 2 {
		op, arg := data[i], data[i+1]
		switch op % 4 {
		case 0, 1:
			c := cus(int(op>>2) % fuzzCustomers)
			w := int64(op>>4) % 3
			clk.Set(r.base.Add(time.Duration(w) * time.Second))
			r.count(c, fuzzUnits[int(arg)%len(fuzzUnits)])
		case 2:
			r.flush()
		case 3:
			if corrupt && seeded != "" {
				r.rdb.Del(ctx, seeded)
				corrupt = false
			}
			m.buf.retryHeld()
			r.flush()
		}
	}
	r.flush()
	r.check(ref, seeded, baseline, corrupt)
}

func (r *fuzzRun) count(c string, u int64) {
	bucket := r.offered
	if u < 0 || u > MaxUnits {
		bucket = r.invalid
	}
	if bucket[c] == nil {
		bucket[c] = new(big.Int)
	}
	bucket[c].Add(bucket[c], big.NewInt(u))
	r.m.Count(c, "calls", u)
}

func (r *fuzzRun) flush() {
	r.m.drainShards(false)
	if err := r.m.flush(context.Background()); err != nil {
		r.t.Fatalf("flush: %v (one customer's data must never fail the flush)", err)
	}
}

// seed writes customer 0's data and returns the key it wrote, the totals
// counted it starts from (what billing adds to) and whether the data is
// unusable until repaired.
func (r *fuzzRun) seed(kind, value byte) (key string, baseline *big.Int, corrupt bool) {
	ctx := context.Background()
	st := r.m.st
	ws := r.m.win.start(r.base)
	v := fuzzStored[int(value)%len(fuzzStored)]
	_, valid := storedCount(v)
	baseline = new(big.Int)
	switch kind % 6 {
	case 0:
		return "", baseline, false
	case 1:
		key = st.windowKey(cus(0), "calls", ws)
		r.rdb.HSet(ctx, key, "counted", v)
	case 2:
		key = st.totalsKey(cus(0))
		r.rdb.HSet(ctx, key, "calls:counted", v)
		if valid {
			baseline, _ = storedCount(v)
		}
	case 3:
		b := r.m.win.bucketOf(ws)
		key = st.rollupKey(cus(0), "calls", dayOf(b))
		r.rdb.HSet(ctx, key, strconv.FormatInt(b, 10), v)
	case 4:
		key, valid = st.windowKey(cus(0), "calls", ws), false
		r.rdb.RPush(ctx, key, "x")
	case 5:
		key, valid = st.openKey(cus(0)), false
		r.rdb.Set(ctx, key, "x", 0)
	}
	return key, baseline, !valid
}

// check: every valid unit offered is in Redis, in this replica's memory, or
// was logged as refused; every invalid one was logged as refused; every
// stored total is a valid count; customers 1 and 2, whose data is fine, got
// every unit into Redis and none refused or held.
func (r *fuzzRun) check(ref *refusals, seeded string, baseline *big.Int, corrupt bool) {
	t := r.t
	ctx := context.Background()
	st := r.m.st
	for i := range fuzzCustomers {
		c := cus(i)
		offered, invalid := orZero(r.offered[c]), orZero(r.invalid[c])
		if got := ref.of(c, "invalid_units"); got.Cmp(invalid) != 0 {
			t.Errorf("%s: refused as invalid_units %s; want %s", c, got, invalid)
		}
		raw, err := r.rdb.HGet(ctx, st.totalsKey(c), "calls:counted").Result()
		billed := new(big.Int)
		if err == nil {
			n, ok := storedCount(raw)
			switch {
			case ok && i == 0:
				billed.Sub(n, baseline)
			case ok:
				billed.Set(n)
			case !(corrupt && seeded == st.totalsKey(c)):
				t.Fatalf("%s: totals counted = %q, not a valid count", c, raw)
			}
		}
		held := big.NewInt(r.m.localSum(c, "calls", 0))
		refused := ref.of(c, "overflow")
		if sum := new(big.Int).Add(billed, held); sum.Add(sum, refused).Cmp(offered) != 0 {
			t.Errorf("%s: offered %s valid units; billed %s + held %s + refused %s do not add up", c, offered, billed, held, refused)
		}
		if i == 0 {
			continue
		}
		if billed.Cmp(offered) != 0 || held.Sign() != 0 || refused.Sign() != 0 {
			t.Errorf("%s (fine data): billed %s held %s refused %s; want all %s billed", c, billed, held, refused, offered)
		}
		if used, err := r.m.Used(ctx, c, "calls", r.base.Add(-time.Hour)); err != nil || big.NewInt(used).Cmp(offered) != 0 {
			t.Errorf("%s: Used = %d, %v; want %s", c, used, err, offered)
		}
	}
}

func orZero(n *big.Int) *big.Int {
	if n == nil {
		return new(big.Int)
	}
	return n
}
