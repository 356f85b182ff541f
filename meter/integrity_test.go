package meter

import (
	"context"
	"errors"
	"fmt"
	"maps"
	"strings"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus/testutil"

	"github.com/tollgate-dev/tollgate/internal/testrig"
)

func TestFlushRefusesBadData(t *testing.T)          { testFlushRefusesBadData(t, newRig(t)) }
func TestFlushAtTheEdgeIsExact(t *testing.T)        { testFlushAtTheEdgeIsExact(t, newRig(t)) }
func TestFlushAfterLostAnswers(t *testing.T)        { testFlushAfterLostAnswers(t, newRig(t)) }
func TestBadCustomerNeverBlocksOthers(t *testing.T) { testBadCustomerNeverBlocksOthers(t, newRig(t)) }

// idleOn is idleMeter on any bed, with its own key prefix.
func idleOn(b bed, clk *fakeClock, mutate func(*Options)) *Meter {
	return b.start(func(o *Options) {
		o.Sender, o.Now, o.Config.FlushInterval, o.Keys = nil, clk.Now, time.Hour, freshKeys()
		if mutate != nil {
			mutate(o)
		}
	})
}

// Issue 9: a Redis total that overflowed made the flush script fail after it
// had written its sequence marker, so the retry skipped the rest of the
// chunk and other customers' counts were dropped, on every later flush. Now
// one customer's bad data holds back only that customer's counts: nothing
// of it is written, it stays in memory (counted, logged), and the eight
// others are flushed exactly, this flush and the next.
func testFlushRefusesBadData(t *testing.T, b bed) {
	ctx := context.Background()
	rdb := b.rdb()
	for _, kind := range badKinds {
		t.Run(kind.name, func(t *testing.T) {
			clk := newFakeClock(time.UnixMilli(1700000000000))
			logs := &testrig.LogBuffer{}
			m := idleOn(b, clk, func(o *Options) { o.Logger = jsonLogger(logs) })
			ws := m.win.start(clk.Now())
			if err := kind.seed(ctx, rdb, m.st, "cus_bad", ws); err != nil {
				t.Fatalf("seed: %v", err)
			}
			badKeys := customerKeys(m.st, "cus_bad", ws)
			before := snapshot(t, rdb, badKeys)
			want := make(map[string]int64)
			for round := range 2 {
				for i := range 8 {
					m.Count(cus(i), "calls", int64(i+1))
					want[cus(i)] += int64(i + 1)
				}
				m.Count("cus_bad", "calls", 5)
				m.drainShards(false)
				if err := m.flush(ctx); err != nil {
					t.Fatalf("flush %d: %v; want the others flushed and the bad customer held", round+1, err)
				}
				got := counted(t, rdb, m.st.keys)
				delete(got, "cus_bad")
				if !maps.Equal(got, want) {
					t.Errorf("flush %d: counted %v; want %v", round+1, got, want)
				}
				if after := snapshot(t, rdb, badKeys); !maps.Equal(after, before) {
					t.Errorf("flush %d wrote to the bad customer's keys", round+1)
				}
				if got, want := m.buf.sum("cus_bad", "calls", 0), int64(5*(round+1)); got != want {
					t.Errorf("flush %d: cus_bad holds %d units in memory; want %d (neither lost nor written)", round+1, got, want)
				}
			}
			if got := counterValue(m.metrics, "calls", kind.reason); got < 1 {
				t.Errorf("usage_report_errors_total{reason=%q} = %v; want at least 1", kind.reason, got)
			}
			m.updateLocalPending() // as the flusher does after each flush
			if got := testutil.ToFloat64(m.metrics.UsagePendingUnits.WithLabelValues("calls")); got != 10 {
				t.Errorf("usage_pending_units = %v; want 10 (the bad customer's held units)", got)
			}
			if l := logs.String(); !strings.Contains(l, `"level":"ERROR"`) || !strings.Contains(l, `"customer":"cus_bad"`) || !strings.Contains(l, `"reason":"`+kind.reason+`"`) {
				t.Errorf("no error logged for cus_bad with reason %s:\n%s", kind.reason, l)
			}
		})
	}
}

// Counts up to MaxTotal (2^53−1) are stored exactly, and one more unit is
// refused: at the edge nothing is rounded by Lua's doubles.
func testFlushAtTheEdgeIsExact(t *testing.T, b bed) {
	ctx := context.Background()
	rdb := b.rdb()
	clk := newFakeClock(time.UnixMilli(1700000000000))
	m := idleOn(b, clk, nil)
	ws := m.win.start(clk.Now())
	const seeded = MaxTotal - MaxUnits - 1
	rdb.HSet(ctx, m.st.windowKey("cus_E", "calls", ws), "counted", int64(seeded))
	rdb.HSet(ctx, m.st.totalsKey("cus_E"), "calls:counted", int64(seeded))
	rdb.HSet(ctx, m.st.rollupKey("cus_E", "calls", dayOf(m.win.bucketOf(ws))), itoa(m.win.bucketOf(ws)), int64(seeded))
	m.Count("cus_E", "calls", MaxUnits)
	m.Count("cus_E", "calls", 1)
	m.drainShards(false)
	if err := m.flush(ctx); err != nil {
		t.Fatal(err)
	}
	check := func(when string, wantHeld int64) {
		t.Helper()
		for _, f := range []struct{ key, field string }{
			{m.st.windowKey("cus_E", "calls", ws), "counted"},
			{m.st.totalsKey("cus_E"), "calls:counted"},
			{m.st.rollupKey("cus_E", "calls", dayOf(m.win.bucketOf(ws))), itoa(m.win.bucketOf(ws))},
		} {
			if got := rdb.HGet(ctx, f.key, f.field).Val(); got != "9007199254740991" {
				t.Errorf("%s: %s %s = %s; want exactly 9007199254740991", when, f.key, f.field, got)
			}
		}
		if got := m.buf.sum("cus_E", "calls", 0); got != wantHeld {
			t.Errorf("%s: held %d; want %d", when, got, wantHeld)
		}
	}
	check("at MaxTotal", 0)
	m.Count("cus_E", "calls", 1)
	m.drainShards(false)
	if err := m.flush(ctx); err != nil {
		t.Fatal(err)
	}
	check("one unit past MaxTotal", 1)
	// The batcher reads the exact total too.
	state, it, err := m.st.begin(ctx, "cus_E", "calls", ws, clk.Now())
	if err != nil || state != beginIntent || it.units != MaxTotal {
		t.Errorf("begin = %d %+v %v; want an intent for exactly %d units", state, it, err, int64(MaxTotal))
	}
}

// Issue 9: the flush is retried after answers lost once Redis had run the
// script (the rejection of a bad customer, then the write of the others):
// every count is applied once, the bad customer's are held.
func testFlushAfterLostAnswers(t *testing.T, b bed) {
	ctx := context.Background()
	rdb := b.rdb()
	clk := newFakeClock(time.UnixMilli(1700000000000))
	lost := &lostAnswers{drop: map[int]bool{1: true, 3: true}}
	m := idleOn(b, clk, func(o *Options) { o.Redis.AddHook(lost) })
	ws := m.win.start(clk.Now())
	if err := rdb.HSet(ctx, m.st.totalsKey("cus_bad"), "calls:counted", "12abc").Err(); err != nil {
		t.Fatal(err)
	}
	want := make(map[string]int64)
	for i := range 8 {
		m.Count(cus(i), "calls", int64(10+i))
		want[cus(i)] = int64(10 + i)
	}
	m.Count("cus_bad", "calls", 3)
	m.drainShards(false)
	for attempt := 1; ; attempt++ {
		err := m.flush(ctx)
		if err == nil {
			break
		}
		if !errors.Is(err, errAnswerLost) || attempt == 10 {
			t.Fatalf("flush attempt %d: %v", attempt, err)
		}
	}
	if lost.dropped != 2 {
		t.Fatalf("%d answers lost; want 2 (the test did not exercise what it claims)", lost.dropped)
	}
	got := counted(t, rdb, m.st.keys)
	delete(got, "cus_bad")
	if !maps.Equal(got, want) {
		t.Errorf("counted %v after lost answers; want %v, each once", got, want)
	}
	for c, u := range want {
		if w := rdb.HGet(ctx, m.st.windowKey(c, "calls", ws), "counted").Val(); w != itoa(u) {
			t.Errorf("%s window counted %s; want %d", c, w, u)
		}
	}
	if got := m.buf.sum("cus_bad", "calls", 0); got != 3 {
		t.Errorf("cus_bad holds %d; want 3", got)
	}
}

// Issue 9, end to end: one customer's usage hash is corrupt while eight
// others are fine. The eight are reported to Stripe exactly, twice over;
// the bad one is held (visible, counted, logged) and, once an operator has
// repaired its hash, reported too: nothing lost, nothing twice.
func testBadCustomerNeverBlocksOthers(t *testing.T, b bed) {
	ctx := context.Background()
	rdb := b.rdb()
	clk := newFakeClock(time.Now().Add(-time.Minute))
	keys := freshKeys()
	m := b.start(func(o *Options) { o.Now, o.Keys = clk.Now, keys })
	if err := rdb.HSet(ctx, m.st.totalsKey("cus_bad"), "calls:counted", "12abc").Err(); err != nil {
		t.Fatal(err)
	}
	want := make(map[string]int64)
	round := func(n int64) {
		for i := range 8 {
			m.Count(cus(i), "calls", n*int64(i+1))
			want[cus(i)] += n * int64(i+1)
		}
		m.Count("cus_bad", "calls", n)
		clk.Add(5 * time.Second) // the window closes
	}
	round(1)
	waitReported(t, b.stripe(), want, 20*time.Second)
	round(100)
	waitReported(t, b.stripe(), want, 20*time.Second)
	testrig.WaitFor(t, 10*time.Second, func() error {
		if got := m.buf.sum("cus_bad", "calls", 0); got != 101 {
			return fmt.Errorf("cus_bad holds %d; want 101", got)
		}
		if got := counterValue(m.metrics, "calls", "corrupt"); got < 1 {
			return fmt.Errorf("usage_report_errors_total{reason=corrupt} = %v", got)
		}
		return nil
	})
	// The operator repairs the hash; the held counts go out on the next retry.
	if err := rdb.HSet(ctx, m.st.totalsKey("cus_bad"), "calls:counted", "0").Err(); err != nil {
		t.Fatal(err)
	}
	want["cus_bad"] = 101
	waitReported(t, b.stripe(), want, 30*time.Second)
	checkEvents(t, b.stripe())
}

// Held counts take one entry per (customer, meter), whatever the number of
// windows, so a customer whose data stays bad never fills the buffer. Close
// tries them once more: written if the data was repaired, else reported
// lost (ErrUnflushed, logged, counted), never silently.
func TestHeldCountsAtClose(t *testing.T) {
	r := newRig(t)
	ctx := context.Background()
	for _, repaired := range []bool{false, true} {
		t.Run(fmt.Sprintf("repaired=%v", repaired), func(t *testing.T) {
			clk := newFakeClock(time.UnixMilli(1700000000000))
			m := idleOn(r, clk, nil)
			r.admin.HSet(ctx, m.st.totalsKey("cus_bad"), "calls:counted", "x")
			for i := range 5 {
				m.Count("cus_bad", "calls", int64(i+1))
				m.Count("cus_ok", "calls", 1)
				m.drainShards(false)
				if err := m.flush(ctx); err != nil {
					t.Fatal(err)
				}
				clk.Add(time.Second)
			}
			m.buf.mu.Lock()
			entries := len(m.buf.held)
			m.buf.mu.Unlock()
			if got := m.buf.sum("cus_bad", "calls", 0); entries != 1 || got != 15 {
				t.Fatalf("held %d units in %d entries; want 15 in 1 (5 windows of one customer and meter)", got, entries)
			}
			if repaired {
				r.admin.HDel(ctx, m.st.totalsKey("cus_bad"), "calls:counted")
			}
			err := m.Close(ctx)
			if got := counted(t, r.admin, m.st.keys); got["cus_ok"] != 5 {
				t.Errorf("cus_ok counted %d; want 5", got["cus_ok"])
			}
			if repaired {
				if got := counted(t, r.admin, m.st.keys)["cus_bad"]; err != nil || got != 15 {
					t.Errorf("Close = %v, cus_bad counted %d; want nil and 15", err, got)
				}
				return
			}
			if !errors.Is(err, ErrUnflushed) || !strings.Contains(err.Error(), "cus_bad") {
				t.Errorf("Close = %v; want ErrUnflushed naming cus_bad", err)
			}
			if got := counterValue(m.metrics, "calls", "lost_at_shutdown"); got != 1 {
				t.Errorf("usage_report_errors_total{reason=lost_at_shutdown} = %v; want 1", got)
			}
		})
	}
}
