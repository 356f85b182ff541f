package meter

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"sort"
	"strconv"
	"strings"
	"time"

	"github.com/redis/go-redis/v9"

	"github.com/tollgate-dev/tollgate/internal/store"
)

// Row is one (customer, meter) as Redis has it. Counts still in a
// replica's memory (at most one flush interval, or a Redis outage's worth)
// are not in it.
type Row struct {
	Customer string
	Meter    string
	Counted  int64 // flushed to Redis
	Reported int64 // Stripe accepted (or already had)
	Parked   int64 // Stripe refused for good; see Usage.Parked
	Pending  int64 // Counted - Reported - Parked: waiting for a report
}

// Usage is what `tollgate usage` prints.
type Usage struct {
	Rows   []Row
	Parked []ParkedReport
}

// ReadUsage reads every customer's usage totals and parked reports.
func ReadUsage(ctx context.Context, rdb redis.UniversalClient, keys store.Keys) (Usage, error) {
	st := &redisStore{rdb: rdb, keys: keys}
	rows, parked, err := readUsage(ctx, st, true)
	return Usage{Rows: rows, Parked: parked}, err
}

// readPage is how many customers one pipeline reads.
const readPage = 500

func readUsage(ctx context.Context, st *redisStore, withParked bool) ([]Row, []ParkedReport, error) {
	customers, err := st.allCustomers(ctx)
	if err != nil {
		return nil, nil, err
	}
	var rows []Row
	var parked []ParkedReport
	for lo := 0; lo < len(customers); lo += readPage {
		page := customers[lo:min(lo+readPage, len(customers))]
		pipe := st.rdb.Pipeline()
		totals := make([]*redis.MapStringStringCmd, len(page))
		parks := make([]*redis.MapStringStringCmd, len(page))
		for i, cus := range page {
			totals[i] = pipe.HGetAll(ctx, st.totalsKey(cus))
			if withParked {
				parks[i] = pipe.HGetAll(ctx, st.parkedKey(cus))
			}
		}
		if _, err := pipe.Exec(ctx); err != nil {
			return nil, nil, fmt.Errorf("meter: read usage: %w", err)
		}
		for i, cus := range page {
			rows = append(rows, totalsRows(cus, totals[i].Val())...)
			if withParked {
				parked = append(parked, parkedReports(parks[i].Val())...)
			}
		}
	}
	sort.Slice(parked, func(i, j int) bool {
		a, b := parked[i], parked[j]
		if a.Customer != b.Customer {
			return a.Customer < b.Customer
		}
		if a.Meter != b.Meter {
			return a.Meter < b.Meter
		}
		return a.Window < b.Window || (a.Window == b.Window && a.Seq < b.Seq)
	})
	return rows, parked, nil
}

func (s *redisStore) allCustomers(ctx context.Context) ([]string, error) {
	var out []string
	var cursor uint64
	for {
		page, next, err := s.rdb.SScan(ctx, s.customersKey(), cursor, "", 1000).Result()
		if err != nil {
			return nil, fmt.Errorf("meter: list customers: %w", err)
		}
		out = append(out, page...)
		if cursor = next; cursor == 0 {
			break
		}
	}
	sort.Strings(out)
	return out, nil
}

// totalsRows turns a totals hash ("<meter>:counted" → n, ...) into rows
// sorted by meter.
func totalsRows(customer string, h map[string]string) []Row {
	byMeter := make(map[string]*Row)
	for field, v := range h {
		i := strings.LastIndexByte(field, ':')
		if i < 0 {
			continue
		}
		n, _ := parseTotal(v) // not a valid count: shown as 0; the flush and the batcher refuse it
		r := byMeter[field[:i]]
		if r == nil {
			r = &Row{Customer: customer, Meter: field[:i]}
			byMeter[field[:i]] = r
		}
		switch field[i+1:] {
		case "counted":
			r.Counted = n
		case "reported":
			r.Reported = n
		case "parked":
			r.Parked = n
		}
	}
	out := make([]Row, 0, len(byMeter))
	for _, r := range byMeter {
		r.Pending = r.Counted - r.Reported - r.Parked
		out = append(out, *r)
	}
	sort.Slice(out, func(i, j int) bool { return out[i].Meter < out[j].Meter })
	return out
}

func parkedReports(h map[string]string) []ParkedReport {
	out := make([]ParkedReport, 0, len(h))
	for _, v := range h {
		var p ParkedReport
		if json.Unmarshal([]byte(v), &p) == nil {
			out = append(out, p)
		}
	}
	return out
}

// Used is the customer's usage of meter in the windows that end after
// since: reported, waiting in Redis, and still in this replica's memory.
// It is what a quota is checked against (since = the billing period's
// start).
//
// Older usage is read from hourly rollups (kept 70 days); the hour that
// holds since is summed window by window while its windows are retained
// (7 days after they were reported), and counted whole after that, which
// may overcount, never undercount. Counts on their way to Redis at the
// moment of the call may be counted twice, for the same reason. Cost: one
// pipelined read of at most one hash per day since since, plus, for a
// recent since, one field per window of its hour.
func (m *Meter) Used(ctx context.Context, customer, meter string, since time.Time) (int64, error) {
	m.closeMu.Lock()
	closed := m.closed
	m.closeMu.Unlock()
	if closed {
		return 0, ErrClosed
	}
	now := m.now()
	if oldest := now.Add(-rollupTTL); since.Before(oldest) {
		since = oldest
	}
	from := m.win.start(since)
	// Memory first, then Redis: a flush in between is counted twice rather
	// than missed.
	local := m.localSum(customer, meter, from)
	remote, err := m.st.used(ctx, customer, meter, from, now)
	if errors.Is(err, ErrCorrupt) {
		m.log.Error("metering: stored usage is not a valid count; quota usage cannot be read until it is repaired",
			"customer", customer, "meter", meter, "err", err)
	}
	if err != nil {
		return 0, err
	}
	return satAdd(local, remote), nil
}

func (m *Meter) localSum(customer, meter string, from int64) int64 {
	s := m.shardOf(customer, nil)
	s.mu.Lock()
	defer s.mu.Unlock()
	var n int64
	for k, c := range s.cur {
		if k.customer == customer && k.meter == meter && k.window >= from {
			n = satAdd(n, c.n)
		}
	}
	return satAdd(n, m.buf.sum(customer, meter, from))
}

const dayMs = 24 * 60 * 60 * 1000

func (s *redisStore) used(ctx context.Context, customer, meter string, from int64, now time.Time) (int64, error) {
	b0 := s.win.bucketOf(from)
	last := dayOf(s.win.bucketOf(s.win.start(now)))
	pipe := s.rdb.Pipeline()
	var days []*redis.MapStringStringCmd
	for d := dayOf(b0); d <= last; d += dayMs {
		days = append(days, pipe.HGetAll(ctx, s.rollupKey(customer, meter, d)))
	}
	exact := from != b0 && now.UnixMilli()-(b0+s.win.bucket) < windowRetention.Milliseconds()
	var windows []*redis.StringCmd
	if exact {
		for ws := from; ws < b0+s.win.bucket; ws += s.win.size {
			windows = append(windows, pipe.HGet(ctx, s.windowKey(customer, meter, ws), "counted"))
		}
	}
	if _, err := pipe.Exec(ctx); err != nil && err != redis.Nil {
		return 0, fmt.Errorf("meter: used %s %s: %w", customer, meter, err)
	}
	// Sums are capped at MaxTotal (at least that much was used: a quota
	// stays closed), and a value that is not a valid count is an error,
	// never read as 0 (issue 9: a quota opened again).
	var n int64
	for i, cmd := range days {
		for f, v := range cmd.Val() {
			b, berr := strconv.ParseInt(f, 10, 64)
			u, uerr := parseTotal(v)
			if berr != nil || uerr != nil {
				return 0, fmt.Errorf("meter: used %s %s: rollup %s field %q: %w", customer, meter,
					s.rollupKey(customer, meter, dayOf(b0)+int64(i)*dayMs), f, ErrCorrupt)
			}
			if b > b0 || (b == b0 && !exact) {
				n = satAdd(n, u)
			}
		}
	}
	for _, cmd := range windows {
		v, err := cmd.Result()
		if errors.Is(err, redis.Nil) {
			continue
		}
		u, err := parseTotal(v)
		if err != nil {
			return 0, fmt.Errorf("meter: used %s %s: window %s: %w", customer, meter, cmd.Args()[1], err)
		}
		n = satAdd(n, u)
	}
	return n, nil
}
