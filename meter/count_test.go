package meter

import (
	"context"
	"errors"
	"fmt"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus/testutil"

	"github.com/tollgate-dev/tollgate/internal/testrig"
)

func TestIdentifier(t *testing.T) {
	long := strings.Repeat("m", 100)
	for _, c := range []struct {
		name       string
		cus, meter string
		ws         int64
		gen        string
		seq        int64
		want       string // "" = only check the length and the hashed form
	}{
		{"readable", "cus_A1", "api_calls", 1700000000000, "ab12cd341", 1, "tg-cus_A1-api_calls-1700000000000-ab12cd341-1"},
		{"next sequence differs", "cus_A1", "api_calls", 1700000000000, "ab12cd341", 2, "tg-cus_A1-api_calls-1700000000000-ab12cd341-2"},
		{"too long is hashed", "cus_A1", long, 1700000000000, "ab12cd341", 1, ""},
	} {
		t.Run(c.name, func(t *testing.T) {
			got := Identifier(c.cus, c.meter, c.ws, c.gen, c.seq)
			if again := Identifier(c.cus, c.meter, c.ws, c.gen, c.seq); again != got {
				t.Errorf("Identifier not deterministic: %q then %q", got, again)
			}
			if len(got) > maxIdentifier {
				t.Errorf("Identifier(...) = %q, %d chars; want at most %d", got, len(got), maxIdentifier)
			}
			if c.want != "" && got != c.want {
				t.Errorf("Identifier(...) = %q; want %q", got, c.want)
			}
			if c.want == "" && !strings.HasPrefix(got, "tg-h-") {
				t.Errorf("Identifier(...) = %q; want the hashed form tg-h-...", got)
			}
		})
	}
	if a, b := Identifier("cus_A", long, 1, "g", 1), Identifier("cus_A", long, 1, "g", 2); a == b {
		t.Errorf("hashed identifiers of two sequences are equal: %q", a)
	}
}

func TestWindows(t *testing.T) {
	for _, c := range []struct {
		size                time.Duration
		at                  int64 // Unix ms
		wantStart, wantBuck int64
		wantTS              int64
	}{
		{time.Second, 1700000000123, 1700000000000, 1699999200000, 1700000000},
		{time.Minute, 1700000059999, 1700000040000, 1699999200000, 1700000040},
		{1500 * time.Millisecond, 1700000000700, 1699999999500, 1699999200000, 1700000000},
		{2 * time.Hour, 1700000000000, 1699999200000, 1699999200000, 1699999200},
	} {
		w := newWindows(c.size)
		ws := w.start(time.UnixMilli(c.at))
		if ws != c.wantStart || w.bucketOf(ws) != c.wantBuck || eventTimestamp(ws) != c.wantTS {
			t.Errorf("window %s at %d: start %d bucket %d ts %d; want %d %d %d", c.size, c.at,
				ws, w.bucketOf(ws), eventTimestamp(ws), c.wantStart, c.wantBuck, c.wantTS)
		}
		if ts := eventTimestamp(ws) * 1000; ts < ws || ts >= ws+w.size {
			t.Errorf("window %s: event timestamp %d not inside [%d, %d)", c.size, ts, ws, ws+w.size)
		}
	}
}

// Counts reach Redis per (customer, meter, window), with the indexes the
// batcher and `tollgate usage` read.
func TestCountFlushesToRedis(t *testing.T) {
	for _, cluster := range []bool{false, true} {
		t.Run("cluster="+strconv.FormatBool(cluster), func(t *testing.T) {
			r := newRig(t)
			clk := newFakeClock(time.UnixMilli(1700000000000))
			m := r.start(func(o *Options) { o.Now, o.Sender, o.Cluster = clk.Now, nil, cluster })
			m.Count("cus_A", "calls", 2)
			m.Count("cus_A", "calls", 3)
			m.Count("cus_B", "calls", 1)
			m.Count("cus_A", "calls", 0)  // ignored
			m.Count("", "calls", 9)       // ignored
			clk.Add(time.Second)          // next window
			m.Count("cus_A", "calls", 10) // ...
			ctx := context.Background()
			testrig.WaitFor(t, 5*time.Second, func() error {
				if got := r.usageRow("cus_A", "calls").Counted; got != 15 {
					return errors.New("cus_A counted " + strconv.FormatInt(got, 10))
				}
				// On Cluster the global due index is written after the
				// customers' scripts, so it may trail the counts briefly.
				if due := r.admin.ZScore(ctx, "tg:usage:due", "cus_A").Val(); due != 1700000001000 {
					return fmt.Errorf("cus_A due at %v", due)
				}
				// On Cluster each customer has a script of its own: when a
				// flush tick fell between the counts, cus_A's last window
				// and its (already written) due index can be in before
				// cus_B's script of the same flush has run.
				if got := r.usageRow("cus_B", "calls").Counted; got != 1 {
					return fmt.Errorf("cus_B counted %d", got)
				}
				return nil
			})
			w0 := r.admin.HGet(ctx, "tg:{cus_A}:usage:w:calls:1700000000000", "counted").Val()
			w1 := r.admin.HGet(ctx, "tg:{cus_A}:usage:w:calls:1700000001000", "counted").Val()
			open := r.admin.ZRange(ctx, "tg:{cus_A}:usage:open", 0, -1).Val()
			due := r.admin.ZScore(ctx, "tg:usage:due", "cus_A").Val()
			if w0 != "5" || w1 != "10" || len(open) != 2 || due != 1700000001000 {
				t.Errorf("redis: window0 %q window1 %q open %v due %v; want 5, 10, two open windows, due at 1700000001000", w0, w1, open, due)
			}
			if got := r.usageRow("cus_B", "calls"); got.Counted != 1 || got.Pending != 1 {
				t.Errorf("cus_B row = %+v; want counted 1 pending 1", got)
			}
			if got := testutil.ToFloat64(m.metrics.UsageUnits.WithLabelValues("calls")); got != 16 {
				t.Errorf("usage_units_total = %v; want 16", got)
			}
		})
	}
}

// A chunk written again after an unknown outcome (the script ran, the
// answer was lost) is not counted twice.
func TestFlushRetryIsIdempotent(t *testing.T) {
	for _, cluster := range []bool{false, true} {
		t.Run("cluster="+strconv.FormatBool(cluster), func(t *testing.T) {
			r := newRig(t)
			st := &redisStore{rdb: r.admin, keys: r.keys, cluster: cluster, win: newWindows(time.Second), replica: "replica-1"}
			c := &chunk{seq: 7, gen: "g7", entries: []entry{{ckey{"cus_A", "calls", 1700000000000}, 4}, {ckey{"cus_B", "calls", 1700000000000}, 6}}}
			ctx := context.Background()
			for range 3 {
				if bad, err := st.applyChunk(ctx, c, time.Now()); err != nil || len(bad) > 0 {
					t.Fatalf("applyChunk: %v, refused %v", err, bad)
				}
			}
			older := &chunk{seq: 6, gen: "g6", entries: []entry{{ckey{"cus_A", "calls", 1700000000000}, 100}}}
			if bad, err := st.applyChunk(ctx, older, time.Now()); err != nil || len(bad) > 0 {
				t.Fatalf("applyChunk: %v, refused %v", err, bad)
			}
			for cus, want := range map[string]int64{"cus_A": 4, "cus_B": 6} {
				if got := r.usageRow(cus, "calls").Counted; got != want {
					t.Errorf("%s counted %d after 3 retries and an older chunk; want %d", cus, got, want)
				}
			}
		})
	}
}

// While Redis is down counts wait in the local buffer (and in the pending
// gauge); they reach Redis when it is back.
func TestRedisOutageBuffersCounts(t *testing.T) {
	r := newRig(t)
	m := r.start(func(o *Options) { o.Sender = nil })
	r.redis.Kill()
	for i := range 10 {
		m.Count(cus(i), "calls", 3)
	}
	pending := func() float64 { return testutil.ToFloat64(m.metrics.UsagePendingUnits.WithLabelValues("calls")) }
	testrig.WaitFor(t, 5*time.Second, func() error {
		if got := pending(); got != 30 {
			return errors.New("pending " + strconv.FormatFloat(got, 'f', -1, 64))
		}
		return nil
	})
	r.redis.Restart()
	testrig.WaitFor(t, 10*time.Second, func() error {
		for i := range 10 {
			if got := r.usageRow(cus(i), "calls").Counted; got != 3 {
				return errors.New(cus(i) + " counted " + strconv.FormatInt(got, 10))
			}
		}
		if got := pending(); got != 0 {
			return errors.New("pending " + strconv.FormatFloat(got, 'f', -1, 64))
		}
		return nil
	})
}

// A full buffer merges a new window into the newest buffered window of the
// same (customer, meter) and drops only a pair it holds nothing for; both
// are returned, so that they are logged and counted.
func TestBufferFull(t *testing.T) {
	b := newBuffer(2)
	k := func(c string, w int64) ckey { return ckey{c, "calls", w} }
	if ev := b.add(map[ckey]int64{k("cus_A", 1000): 1, k("cus_B", 1000): 1}); len(ev) != 0 {
		t.Fatalf("events with room left: %+v", ev)
	}
	if ev := b.add(map[ckey]int64{k("cus_A", 1000): 5}); len(ev) != 0 {
		t.Errorf("a buffered key overflowed: %+v", ev)
	}
	ev := b.add(map[ckey]int64{k("cus_A", 2000): 7})
	if len(ev) != 1 || ev[0].dropped || ev[0].into != 1000 || ev[0].units != 7 {
		t.Errorf("new window of a buffered pair: events %+v; want merged into 1000", ev)
	}
	ev = b.add(map[ckey]int64{k("cus_C", 2000): 9})
	if len(ev) != 1 || !ev[0].dropped || ev[0].units != 9 {
		t.Errorf("new pair in a full buffer: events %+v; want dropped", ev)
	}
	if got := b.unitsByMeter()["calls"]; got != 14 {
		t.Errorf("buffered units = %d; want 14 (1+5+7 for cus_A, 1 for cus_B)", got)
	}
}

// The overflow is counted in usage_report_errors_total.
func TestBufferFullIsCounted(t *testing.T) {
	r := newRig(t)
	m := r.start(func(o *Options) { o.Sender = nil; o.Config.MaxBufferedKeys = 1 })
	r.redis.Kill()
	m.Count("cus_A", "calls", 1)
	m.drainShards(false)
	m.Count("cus_B", "calls", 1)
	m.drainShards(false)
	// The flusher (every 20 ms) may have drained cus_B's count first: then
	// it, not the drain above, counts the drop, once it has gone through
	// every shard.
	testrig.WaitFor(t, 5*time.Second, func() error {
		if got := counterValue(m.metrics, "calls", "buffer_full_dropped"); got != 1 {
			return fmt.Errorf("buffer_full_dropped = %v; want 1", got)
		}
		return nil
	})
	r.redis.Restart()
}

// Close writes every count to Redis; with Redis down until the deadline it
// says how much was lost.
func TestCloseFlushes(t *testing.T) {
	r := newRig(t)
	o := r.options()
	o.Sender, o.Config.FlushInterval = nil, time.Hour
	m, err := New(o)
	if err != nil {
		t.Fatal(err)
	}
	m.Count("cus_A", "calls", 42)
	if err := m.Close(context.Background()); err != nil {
		t.Fatalf("Close: %v", err)
	}
	if got := r.usageRow("cus_A", "calls").Counted; got != 42 {
		t.Errorf("counted after Close = %d; want 42", got)
	}
	if _, err := m.Used(context.Background(), "cus_A", "calls", time.Time{}); !errors.Is(err, ErrClosed) {
		t.Errorf("Used after Close = %v; want ErrClosed", err)
	}

	m2, err := New(o)
	if err != nil {
		t.Fatal(err)
	}
	m2.Count("cus_B", "calls", 5)
	r.redis.Kill()
	ctx, cancel := context.WithTimeout(context.Background(), 300*time.Millisecond)
	defer cancel()
	if err := m2.Close(ctx); !errors.Is(err, ErrUnflushed) {
		t.Errorf("Close with redis down = %v; want ErrUnflushed", err)
	}
	if got := counterValue(m2.metrics, "calls", "lost_at_shutdown"); got != 1 {
		t.Errorf("lost_at_shutdown = %v; want 1", got)
	}
	m2.Count("cus_B", "calls", 1)
	if got := counterValue(m2.metrics, "calls", "counted_after_close"); got != 1 {
		t.Errorf("counted_after_close = %v; want 1", got)
	}
}

// Used sums memory, the local buffer and Redis for the windows since a time.
func TestUsed(t *testing.T) {
	r := newRig(t)
	base := time.Date(2026, 3, 10, 14, 0, 0, 0, time.UTC)
	clk := newFakeClock(base.Add(-2 * time.Hour))
	o := r.options()
	o.Now, o.Sender, o.Config.FlushInterval = clk.Now, nil, time.Hour
	m, err := New(o)
	if err != nil {
		t.Fatal(err)
	}
	defer m.Close(context.Background())
	ctx := context.Background()
	// 12:00:00 → 1, 13:59:59 → 2, 14:00:00 → 4, 14:30:00 → 8; then 16 in memory at 15:00.
	for _, c := range []struct {
		at    time.Time
		units int64
	}{{base.Add(-2 * time.Hour), 1}, {base.Add(-time.Second), 2}, {base, 4}, {base.Add(30 * time.Minute), 8}} {
		clk.Set(c.at)
		m.Count("cus_A", "calls", c.units)
		m.drainShards(false)
		if err := m.flush(ctx); err != nil {
			t.Fatal(err)
		}
	}
	clk.Set(base.Add(time.Hour))
	m.Count("cus_A", "calls", 16)
	m.Count("cus_B", "calls", 1000)
	for _, c := range []struct {
		name  string
		since time.Time
		want  int64
	}{
		{"everything", time.Time{}, 31},
		{"from an hour start", base, 28},
		{"inside an hour, exact by window", base.Add(-time.Hour - 30*time.Minute), 30},
		{"the window holding since counts", base.Add(-500 * time.Millisecond), 30},
		{"only memory", base.Add(time.Hour), 16},
	} {
		got, err := m.Used(ctx, "cus_A", "calls", c.since)
		if err != nil || got != c.want {
			t.Errorf("%s: Used(since %s) = %d, %v; want %d", c.name, c.since.Format(time.TimeOnly), got, err, c.want)
		}
	}
}

// A pair whose only buffered window is in the chunk being written (Redis
// down) still has a window to merge into when the buffer is full: its new
// units are merged, never dropped.
func TestFullBufferMergesIntoWindowInFlight(t *testing.T) {
	b := newBuffer(2)
	b.add(map[ckey]int64{{"cus_A", "calls", 1000}: 3, {"cus_B", "calls", 1000}: 4})
	if c := b.next(); c == nil || len(c.entries) != 2 {
		t.Fatal("no chunk cut")
	}
	for _, e := range b.add(map[ckey]int64{{"cus_A", "calls", 2000}: 5}) {
		if e.dropped {
			t.Errorf("cus_A has a window in flight, yet %d units were dropped", e.units)
		}
	}
}

// A shard's counter is zeroed, not dropped, when its counts move to the
// buffer, so counting the key again costs no allocation and nothing is
// counted twice; a key not counted for a whole flush interval leaves its
// shard, so the shards do not keep every customer ever seen.
func TestShardCountersZeroedThenRemoved(t *testing.T) {
	r := newRig(t)
	m := r.start(func(o *Options) { o.Sender = nil })
	ctx := context.Background()
	keys := func() (n int) {
		for i := range m.shards {
			s := &m.shards[i]
			s.mu.Lock()
			n += len(s.cur)
			s.mu.Unlock()
		}
		return n
	}
	var want, wantB int64
	for round := range 5 {
		m.Count("cus_A", "calls", int64(round+1))
		want += int64(round + 1)
		m.drainShards(false)
		if got, err := m.Used(ctx, "cus_A", "calls", time.Time{}); err != nil || got != want {
			t.Fatalf("round %d: Used = %d, %v; want %d (each count once)", round, got, err, want)
		}
		if allocs := testing.AllocsPerRun(100, func() { m.Count("cus_B", "calls", 1); wantB++ }); allocs != 0 {
			t.Fatalf("round %d: Count of a key counted before allocates %v times; want 0", round, allocs)
		}
	}
	// The flusher drains every 20 ms as well: two drains with no counts in
	// between leave no key behind, whichever of them ran first.
	testrig.WaitFor(t, 5*time.Second, func() error {
		m.drainShards(false)
		m.drainShards(false)
		if n := keys(); n != 0 {
			return fmt.Errorf("%d keys left in the shards after two idle intervals; want 0", n)
		}
		return nil
	})
	if got, err := m.Used(ctx, "cus_B", "calls", time.Time{}); err != nil || got != wantB {
		t.Errorf("cus_B Used = %d, %v; want %d", got, err, wantB)
	}
}
