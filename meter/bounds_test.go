package meter

import (
	"context"
	"math"
	"strconv"
	"testing"
	"time"

	"github.com/tollgate-dev/tollgate/config"
)

// idleMeter is a meter whose flusher never runs on its own and that never
// reports: the test drains and flushes it.
func idleMeter(r *rig, clk *fakeClock) *Meter {
	return r.start(func(o *Options) { o.Sender, o.Now, o.Config.FlushInterval = nil, clk.Now, time.Hour })
}

// Issue 9: an upstream's X-Tollgate-Usage near 2^63 was added with plain +=,
// so a second answer wrapped the customer's bill to zero (or below).
func TestCountRefusesUnitsOutOfRange(t *testing.T) {
	r := newRig(t)
	for _, c := range []struct {
		name              string
		units             []int64
		want              int64
		invalid, overflow float64
	}{
		{"zero counts nothing", []int64{0}, 0, 0, 0},
		{"one", []int64{1}, 1, 0, 0},
		{"at MaxUnits", []int64{MaxUnits}, MaxUnits, 0, 0},
		{"one past MaxUnits", []int64{MaxUnits + 1}, 0, 1, 0},
		// What the proxy accepts (metering.max_units_per_request at its
		// bound) the meter must count, not refuse as invalid.
		{"at metering.max_units_per_request's bound", []int64{config.MaxUnitsBound}, config.MaxUnitsBound, 0, 0},
		{"negative", []int64{-1}, 0, 1, 0},
		{"MinInt64", []int64{math.MinInt64}, 0, 1, 0},
		{"MaxInt64 then 1 does not wrap", []int64{math.MaxInt64, 1}, 1, 1, 0},
		{"two halves of 2^63 do not wrap", []int64{1 << 62, 1 << 62}, 0, 2, 0},
		{"2^53 is refused, its neighbours too", []int64{1 << 53, 1<<53 - 1, 1<<53 + 1, 5}, 5, 3, 0},
	} {
		t.Run(c.name, func(t *testing.T) {
			m := idleMeter(r, newFakeClock(time.UnixMilli(1700000000000)))
			for _, u := range c.units {
				m.Count("cus_A", "calls", u)
			}
			if got := m.localSum("cus_A", "calls", 0); got != c.want {
				t.Errorf("Count(%v): counted %d; want %d", c.units, got, c.want)
			}
			if got := counterValue(m.metrics, "calls", "invalid_units"); got != c.invalid {
				t.Errorf("usage_report_errors_total{reason=invalid_units} = %v; want %v", got, c.invalid)
			}
			if got := counterValue(m.metrics, "calls", "overflow"); got != c.overflow {
				t.Errorf("usage_report_errors_total{reason=overflow} = %v; want %v", got, c.overflow)
			}
		})
	}
}

// Issue 9: many in-range counts of one window can still sum past what Redis
// Lua holds exactly (2^53); the count that would pass MaxTotal is refused and
// the total stays at most MaxTotal, exact.
func TestCountSumStopsAtMaxTotal(t *testing.T) {
	r := newRig(t)
	m := idleMeter(r, newFakeClock(time.UnixMilli(1700000000000)))
	const fits = MaxTotal / MaxUnits // 8191 counts of MaxUnits fit
	for range fits {
		m.Count("cus_A", "calls", MaxUnits)
	}
	m.Count("cus_A", "calls", MaxUnits) // would pass MaxTotal
	if got, want := m.localSum("cus_A", "calls", 0), int64(fits*MaxUnits); got != want {
		t.Fatalf("after %d counts of MaxUnits and one more: %d; want %d", fits, got, want)
	}
	m.Count("cus_A", "calls", MaxTotal-fits*MaxUnits) // exactly to the bound
	m.Count("cus_A", "calls", 1)                      // one past it
	if got := m.localSum("cus_A", "calls", 0); got != MaxTotal {
		t.Errorf("total = %d; want MaxTotal %d", got, int64(MaxTotal))
	}
	if got := counterValue(m.metrics, "calls", "overflow"); got != 2 {
		t.Errorf("usage_report_errors_total{reason=overflow} = %v; want 2", got)
	}
	// Another customer's counts are not affected.
	m.Count("cus_B", "calls", 7)
	if got := m.localSum("cus_B", "calls", 0); got != 7 {
		t.Errorf("cus_B counted %d; want 7", got)
	}
}

// Issue 9: the local buffer merged with +=: a window buffered during an
// outage plus the next interval's counts could wrap, and so could the
// full-buffer merge into an earlier window.
func TestBufferAddNeverWraps(t *testing.T) {
	k := func(c string, w int64) ckey { return ckey{c, "calls", w} }
	for _, c := range []struct {
		name     string
		max      int
		buffered map[ckey]int64
		add      map[ckey]int64
		want     int64 // units buffered for cus_A afterwards
	}{
		{"same key at the bound", 10, map[ckey]int64{k("cus_A", 1000): MaxTotal - 1}, map[ckey]int64{k("cus_A", 1000): 2}, MaxTotal - 1},
		{"same key up to the bound", 10, map[ckey]int64{k("cus_A", 1000): MaxTotal - 2}, map[ckey]int64{k("cus_A", 1000): 2}, MaxTotal},
		{"same key, twice MaxTotal", 10, map[ckey]int64{k("cus_A", 1000): MaxTotal}, map[ckey]int64{k("cus_A", 1000): MaxTotal}, MaxTotal},
		{"full buffer merges into a window at the bound", 1, map[ckey]int64{k("cus_A", 1000): MaxTotal}, map[ckey]int64{k("cus_A", 2000): 5}, MaxTotal},
	} {
		t.Run(c.name, func(t *testing.T) {
			var before int64
			for _, u := range c.buffered {
				before += u
			}
			b := newBuffer(c.max)
			b.pending = c.buffered
			for key := range c.buffered {
				b.latest[pairKey{key.customer, key.meter}] = key.window
			}
			events := b.add(c.add)
			if got := b.sum("cus_A", "calls", 0); got != c.want {
				t.Errorf("buffered %d; want %d", got, c.want)
			}
			for key, u := range b.pending {
				if u < 0 || u > MaxTotal {
					t.Errorf("buffered %v = %d: outside [0, MaxTotal]", key, u)
				}
			}
			var lost int64
			for _, e := range events {
				if e.dropped {
					lost += e.units
				}
			}
			var added int64
			for _, u := range c.add {
				added += u
			}
			if before+added != c.want+lost {
				t.Errorf("buffered %d + added %d != kept %d + reported lost %d: units vanished without an event", before, added, c.want, lost)
			}
		})
	}
}

// Issue 9: the buffer-full merge path, through the meter: what cannot be
// added is logged and counted as overflow, not wrapped and not silent.
func TestDrainOverflowIsCounted(t *testing.T) {
	r := newRig(t)
	clk := newFakeClock(time.UnixMilli(1700000000000))
	m := idleMeter(r, clk)
	ws := m.win.start(clk.Now())
	m.buf.add(map[ckey]int64{{"cus_A", "calls", ws}: MaxTotal - 3})
	m.Count("cus_A", "calls", 5)
	m.drainShards(false)
	if got := m.buf.sum("cus_A", "calls", 0); got != MaxTotal-3 {
		t.Errorf("buffered %d; want %d (the 5 units would pass MaxTotal)", got, int64(MaxTotal-3))
	}
	if got := counterValue(m.metrics, "calls", "overflow"); got != 1 {
		t.Errorf("usage_report_errors_total{reason=overflow} = %v; want 1", got)
	}
}

// Issue 9: a quota check read a wrapped (negative) sum and opened the
// quota again. Reads saturate at MaxTotal (a quota then stays closed) and a
// stored value that is not a valid count is an error, never 0.
func TestUsedNeverWraps(t *testing.T) {
	r := newRig(t)
	now := time.Date(2026, 3, 10, 14, 0, 0, 0, time.UTC)
	ctx := context.Background()
	for _, c := range []struct {
		name    string
		seed    func(m *Meter)
		want    int64
		wantErr bool
	}{
		{"every hour of 45 days at MaxTotal saturates", func(m *Meter) {
			for d := range 46 {
				day := dayOf(m.win.bucketOf(m.win.start(now))) - int64(d)*dayMs
				fields := map[string]any{}
				for h := range 24 {
					fields[itoa(day+int64(h)*3600000)] = int64(MaxTotal)
				}
				r.admin.HSet(ctx, m.st.rollupKey("cus_A", "calls", day), fields)
			}
		}, MaxTotal, false},
		{"a rollup field past int64's range", func(m *Meter) {
			day := dayOf(m.win.bucketOf(m.win.start(now)))
			r.admin.HSet(ctx, m.st.rollupKey("cus_A", "calls", day), itoa(day), "9223372036854775807", itoa(day+3600000), "9223372036854775807")
		}, 0, true},
		{"a rollup field that is not an integer", func(m *Meter) {
			day := dayOf(m.win.bucketOf(m.win.start(now)))
			r.admin.HSet(ctx, m.st.rollupKey("cus_A", "calls", day), itoa(day), "12abc")
		}, 0, true},
		{"a negative rollup field", func(m *Meter) {
			day := dayOf(m.win.bucketOf(m.win.start(now)))
			r.admin.HSet(ctx, m.st.rollupKey("cus_A", "calls", day), itoa(day), "-5")
		}, 0, true},
		{"Redis and memory together saturate", func(m *Meter) {
			day := dayOf(m.win.bucketOf(m.win.start(now)))
			r.admin.HSet(ctx, m.st.rollupKey("cus_A", "calls", day), itoa(day), int64(MaxTotal))
			m.Count("cus_A", "calls", MaxUnits)
		}, MaxTotal, false},
		{"memory and buffer together saturate", func(m *Meter) {
			ws := m.win.start(now)
			m.buf.add(map[ckey]int64{{"cus_A", "calls", ws - 1000}: MaxTotal})
			m.Count("cus_A", "calls", MaxUnits)
		}, MaxTotal, false},
	} {
		t.Run(c.name, func(t *testing.T) {
			r.admin.FlushAll(ctx)
			m := idleMeter(r, newFakeClock(now))
			c.seed(m)
			got, err := m.Used(ctx, "cus_A", "calls", now.Add(-60*24*time.Hour))
			if (err != nil) != c.wantErr || got != c.want {
				t.Errorf("Used = %d, %v; want %d, error %v", got, err, c.want, c.wantErr)
			}
		})
	}
}

func itoa(n int64) string { return strconv.FormatInt(n, 10) }
