package meter

import (
	"context"
	"errors"
	"fmt"
	"sort"
	"strconv"
	"strings"
	"time"

	"github.com/redis/go-redis/v9"

	"github.com/tollgate-dev/tollgate/internal/store"
)

// ErrNotHourly is returned by ReadPeriod when metering.window does not
// divide an hour: usage is summed over a period from hourly rollups.
var ErrNotHourly = errors.New("meter: metering.window must divide an hour to read usage by period")

// ReconcileLag is how much of the newest usage reconciliation leaves out:
// Stripe aggregates meter events asynchronously, so its summaries trail
// the events it accepted by a few minutes.
const ReconcileLag = 5 * time.Minute

// Periods of `tollgate usage -reconcile -period`.
const (
	PeriodCurrent  = "current"
	PeriodPrevious = "previous"
)

// Period returns the range [from, to) reconciled for a period name: the
// calendar month (UTC) of now, up to the last whole hour at least
// ReconcileLag ago ("current"), or the whole month before it
// ("previous"). Usage is attributed to the window it was counted in, and
// a window's meter event carries a timestamp inside it, so tollgate's
// counts and Stripe's summaries cover the same units.
func Period(name string, now time.Time) (from, to time.Time, err error) {
	month := monthStart(now.UTC())
	switch name {
	case PeriodCurrent:
		to = now.UTC().Add(-ReconcileLag).Truncate(time.Hour)
		if to.Before(month) {
			to = month
		}
		return month, to, nil
	case PeriodPrevious:
		return monthStart(month.Add(-time.Hour)), month, nil
	}
	return time.Time{}, time.Time{}, fmt.Errorf("meter: period %q is not current or previous", name)
}

func monthStart(t time.Time) time.Time {
	return time.Date(t.Year(), t.Month(), 1, 0, 0, 0, 0, time.UTC)
}

// PeriodUsage is one (customer, meter) in a period as Redis has it.
type PeriodUsage struct {
	Customer string
	Meter    string
	Counted  int64 // written to Redis, in windows that start in the period
	Pending  int64 // of those, not yet reported (waiting, or being sent)
	Parked   int64 // of those, refused by Stripe for good
}

// Reported is what Stripe accepted of the period's counts.
func (u PeriodUsage) Reported() int64 { return u.Counted - u.Pending - u.Parked }

// ReadPeriod reads, for every customer and each of meters it has ever
// counted, the usage of the windows that start in [from, to): counted from
// the hourly rollups (kept 70 days, so the previous month is complete),
// pending from the customer's unfinished windows, parked from its parked
// reports. from and to must be whole hours, and the window must divide an
// hour. Counts still in a replica's memory are not included.
func ReadPeriod(ctx context.Context, rdb redis.UniversalClient, keys store.Keys, window time.Duration, meters []string,
	from, to time.Time) ([]PeriodUsage, error) {
	st := &redisStore{rdb: rdb, keys: keys, win: newWindows(window)}
	if st.win.bucket != time.Hour.Milliseconds() {
		return nil, ErrNotHourly
	}
	if from.Truncate(time.Hour) != from || to.Truncate(time.Hour) != to || to.Before(from) {
		return nil, fmt.Errorf("meter: period %s to %s is not whole hours", from, to)
	}
	customers, err := st.allCustomers(ctx)
	if err != nil {
		return nil, err
	}
	want := make(map[string]bool, len(meters))
	for _, m := range meters {
		want[m] = true
	}
	var out []PeriodUsage
	for lo := 0; lo < len(customers); lo += readPage {
		page, err := st.readPeriodPage(ctx, customers[lo:min(lo+readPage, len(customers))], want, from.UnixMilli(), to.UnixMilli())
		if err != nil {
			return nil, err
		}
		out = append(out, page...)
	}
	return out, nil
}

// periodCmds are one customer's reads of ReadPeriod's first pipeline.
type periodCmds struct {
	totals, parked *redis.MapStringStringCmd
	open           *redis.StringSliceCmd
	rollups        map[string][]*redis.MapStringStringCmd // meter → one per day
}

func (s *redisStore) readPeriodPage(ctx context.Context, customers []string, want map[string]bool, from, to int64) ([]PeriodUsage, error) {
	pipe := s.rdb.Pipeline()
	cmds := make([]periodCmds, len(customers))
	for i, cus := range customers {
		c := periodCmds{totals: pipe.HGetAll(ctx, s.totalsKey(cus)), parked: pipe.HGetAll(ctx, s.parkedKey(cus)),
			open: pipe.ZRange(ctx, s.openKey(cus), 0, -1), rollups: map[string][]*redis.MapStringStringCmd{}}
		for m := range want {
			for d := dayOf(from); d < to; d += dayMs {
				c.rollups[m] = append(c.rollups[m], pipe.HGetAll(ctx, s.rollupKey(cus, m, d)))
			}
		}
		cmds[i] = c
	}
	if _, err := pipe.Exec(ctx); err != nil && !errors.Is(err, redis.Nil) {
		return nil, fmt.Errorf("meter: read period usage: %w", err)
	}
	var rows []PeriodUsage
	open := s.rdb.Pipeline()
	type openWindow struct {
		row int
		cmd *redis.SliceCmd
	}
	var windows []openWindow
	for i, cus := range customers {
		c := cmds[i]
		index := map[string]int{}
		for _, r := range totalsRows(cus, c.totals.Val()) {
			if !want[r.Meter] {
				continue
			}
			u := PeriodUsage{Customer: cus, Meter: r.Meter}
			for _, day := range c.rollups[r.Meter] {
				u.Counted += sumBuckets(day.Val(), from, to)
			}
			for _, p := range parkedReports(c.parked.Val()) {
				if p.Meter == r.Meter && p.Window >= from && p.Window < to {
					u.Parked += p.Units
				}
			}
			index[r.Meter] = len(rows)
			rows = append(rows, u)
		}
		for _, member := range c.open.Val() {
			j := strings.LastIndexByte(member, ':')
			ws, err := strconv.ParseInt(member[j+1:], 10, 64)
			row, ok := index[member[:max(j, 0)]]
			if j < 0 || err != nil || !ok || ws < from || ws >= to {
				continue
			}
			windows = append(windows, openWindow{row, open.HMGet(ctx, s.windowKey(cus, member[:j], ws), "counted", "reported", "parked")})
		}
	}
	if len(windows) > 0 {
		if _, err := open.Exec(ctx); err != nil && !errors.Is(err, redis.Nil) {
			return nil, fmt.Errorf("meter: read unfinished windows: %w", err)
		}
	}
	for _, w := range windows {
		v := w.cmd.Val()
		rows[w.row].Pending += max(0, field(v, 0)-field(v, 1)-field(v, 2))
	}
	sort.Slice(rows, func(i, j int) bool {
		if rows[i].Customer != rows[j].Customer {
			return rows[i].Customer < rows[j].Customer
		}
		return rows[i].Meter < rows[j].Meter
	})
	return rows, nil
}

// sumBuckets adds up a day's rollup buckets that start in [from, to).
func sumBuckets(h map[string]string, from, to int64) int64 {
	var n int64
	for f, v := range h {
		b, err1 := strconv.ParseInt(f, 10, 64)
		u, err2 := strconv.ParseInt(v, 10, 64)
		if err1 == nil && err2 == nil && b >= from && b < to {
			n += u
		}
	}
	return n
}

func field(v []any, i int) int64 {
	if i >= len(v) {
		return 0
	}
	s, _ := v[i].(string)
	n, _ := strconv.ParseInt(s, 10, 64)
	return n
}
