package meter

import (
	"context"
	"errors"
	"fmt"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"

	"github.com/tollgate-dev/tollgate/internal/testrig"
)

func redisZ(score int64, member string) redis.Z {
	return redis.Z{Score: float64(score), Member: member}
}

// scriptRig is a Redis and the meter's store on it, for running the
// scripts directly on window ws.
func scriptRig(t *testing.T) (r *rig, st *redisStore, ws int64) {
	r = newRig(t)
	return r, &redisStore{rdb: r.admin, keys: r.keys, win: newWindows(time.Second), replica: "replica-1"}, 1700000000000
}

// Issue 9: beginScript read a window's fields with tonumber(...) or 0, so a
// corrupt "reported" made the whole window billable again, and a count past
// 2^53 was rounded. Now such a window is refused (ErrCorrupt), left in the
// open index and untouched; one at the edge is exact.
func TestBeginRefusesCorruptWindow(t *testing.T) {
	r, st, ws := scriptRig(t)
	ctx := context.Background()
	for _, c := range []struct {
		name      string
		fields    []any
		wantUnits int64 // 0: refused as corrupt
	}{
		{"reported not an integer", []any{"counted", "10", "reported", "abc"}, 0},
		{"reported past counted", []any{"counted", "10", "reported", "11"}, 0},
		{"parked negative", []any{"counted", "10", "parked", "-3"}, 0},
		{"counted past 2^53", []any{"counted", "9007199254740993"}, 0},
		{"counted at MaxInt64", []any{"counted", "9223372036854775807"}, 0},
		{"counted a float", []any{"counted", "1e3"}, 0},
		{"sequence not an integer", []any{"counted", "10", "seq", "x"}, 0},
		{"intent units not an integer", []any{"counted", "10", "inflight_seq", "1", "inflight_units", "1.5"}, 0},
		{"counted at MaxTotal", []any{"counted", "9007199254740991"}, MaxTotal},
		{"reported leaves the rest", []any{"counted", "9007199254740991", "reported", "1", "parked", "2"}, MaxTotal - 3},
	} {
		t.Run(c.name, func(t *testing.T) {
			r.admin.FlushAll(ctx)
			wk := st.windowKey("cus_A", "calls", ws)
			r.admin.HSet(ctx, wk, c.fields...)
			r.admin.ZAdd(ctx, st.openKey("cus_A"), redisZ(ws+1000, "calls:"+itoa(ws)))
			before := r.admin.HGetAll(ctx, wk).Val()
			state, it, err := st.begin(ctx, "cus_A", "calls", ws, time.Now())
			if c.wantUnits != 0 {
				if err != nil || state != beginIntent || it.units != c.wantUnits {
					t.Errorf("begin = %d %+v %v; want an intent for %d units", state, it, err, c.wantUnits)
				}
				return
			}
			if !errors.Is(err, ErrCorrupt) {
				t.Errorf("begin = %d %+v %v; want ErrCorrupt", state, it, err)
			}
			if after := r.admin.HGetAll(ctx, wk).Val(); fmt.Sprint(after) != fmt.Sprint(before) {
				t.Errorf("window changed from %v to %v; want untouched", before, after)
			}
			if n := r.admin.ZCard(ctx, st.openKey("cus_A")).Val(); n != 1 {
				t.Errorf("open index holds %d windows; want the corrupt one kept (1)", n)
			}
		})
	}
}

// Issue 9: settleScript added with HINCRBY after it had cleared the intent,
// so a corrupt totals field left the window settled and the totals not.
// Now a settle that cannot add writes nothing and keeps the intent.
func TestSettleWritesNothingOnBadData(t *testing.T) {
	r, st, ws := scriptRig(t)
	ctx := context.Background()
	for _, c := range []struct {
		name   string
		window []any
		totals []any
		want   error
	}{
		{"totals not an integer", []any{"counted", "5"}, []any{"calls:reported", "x"}, ErrCorrupt},
		{"totals at the edge", []any{"counted", "5"}, []any{"calls:reported", "9007199254740990"}, ErrOverflow},
		{"window reported not an integer", []any{"counted", "5", "reported", "y"}, nil, ErrCorrupt},
	} {
		t.Run(c.name, func(t *testing.T) {
			r.admin.FlushAll(ctx)
			wk := st.windowKey("cus_A", "calls", ws)
			r.admin.HSet(ctx, wk, append([]any{"seq", "1", "inflight_seq", "1", "inflight_units", "5", "inflight_at", "1"}, c.window...)...)
			if c.totals != nil {
				r.admin.HSet(ctx, st.totalsKey("cus_A"), c.totals...)
			}
			before := fmt.Sprint(r.admin.HGetAll(ctx, wk).Val(), r.admin.HGetAll(ctx, st.totalsKey("cus_A")).Val())
			it := intent{customer: "cus_A", meter: "calls", window: ws, seq: 1, units: 5}
			if _, err := st.settle(ctx, it, "", ""); !errors.Is(err, c.want) {
				t.Errorf("settle = %v; want %v", err, c.want)
			}
			if after := fmt.Sprint(r.admin.HGetAll(ctx, wk).Val(), r.admin.HGetAll(ctx, st.totalsKey("cus_A")).Val()); after != before {
				t.Errorf("settle wrote: %s -> %s", before, after)
			}
		})
	}
}

// A corrupt window is not reported (it would bill its units again), is
// counted and logged, does not hold up other customers or the customer's
// other windows, and is reported once repaired.
func TestCorruptWindowIsNotReported(t *testing.T) {
	r := newRig(t)
	ctx := context.Background()
	clk := newFakeClock(time.Now().Add(-time.Minute))
	m := r.start(func(o *Options) { o.Now = clk.Now })
	ws := m.win.start(clk.Now())
	m.Count("cus_bad", "calls", 4)
	m.Count("cus_ok", "calls", 6)
	testrig.WaitFor(t, 10*time.Second, func() error {
		if got := r.usageRow("cus_bad", "calls").Counted; got != 4 {
			return fmt.Errorf("cus_bad counted %d", got)
		}
		return nil
	})
	r.admin.HSet(ctx, m.st.windowKey("cus_bad", "calls", ws), "reported", "abc")
	clk.Add(5 * time.Second)
	m.Count("cus_bad", "calls", 2) // a later window of the same customer
	clk.Add(5 * time.Second)
	waitReported(t, r.double, map[string]int64{"cus_ok": 6, "cus_bad": 2}, 20*time.Second)
	testrig.WaitFor(t, 10*time.Second, func() error {
		if got := counterValue(m.metrics, "calls", "corrupt"); got < 1 {
			return fmt.Errorf("usage_report_errors_total{reason=corrupt} = %v", got)
		}
		return nil
	})
	if got := sumEvents(r.double)["cus_bad"]; got != 2 {
		t.Errorf("cus_bad reported %d; want 2 (its corrupt window held back)", got)
	}
	r.admin.HSet(ctx, m.st.windowKey("cus_bad", "calls", ws), "reported", "0")
	waitReported(t, r.double, map[string]int64{"cus_ok": 6, "cus_bad": 6}, 20*time.Second)
	checkEvents(t, r.double)
}
