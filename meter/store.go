package meter

import (
	"context"
	"errors"
	"fmt"
	"strconv"
	"strings"
	"time"

	"github.com/redis/go-redis/v9"

	"github.com/tollgate-dev/tollgate/internal/store"
)

// Redis layout (P is redis.prefix, C a customer id, {C} its Cluster hash tag):
//
//	P{C}:usage:w:<meter>:<ws>    hash, one window's aggregate (ws: window start, Unix ms):
//	                             counted, reported, parked, gen, seq,
//	                             inflight_seq + inflight_units (a recorded intent)
//	P{C}:usage:open              zset of the customer's unfinished windows, "<meter>:<ws>" → window end
//	P{C}:usage:totals            hash "<meter>:counted|reported|parked" → units, for `tollgate usage`
//	P{C}:usage:r:<meter>:<day>   hash rollup bucket start → units counted (for Used and -reconcile), 70-day TTL
//	P{C}:usage:parked            hash "<meter>:<ws>:<seq>" → JSON of a report Stripe refused for good
//	P{C}:usage:flushed           (Cluster) hash replica → last applied flush sequence
//	P:usage:flushed              (single Redis) the same, for the whole flush
//	P:usage:due                  zset customer → end of its earliest unfinished window
//	P:usage:customers            set of every customer ever counted
//	P:usage:lease                string, the reporting replica's token (SET NX PX)
const (
	// rollupTTL keeps the hourly rollups for the previous calendar month
	// as a whole (up to 62 days back), for `tollgate usage -reconcile
	// -period previous`; longer than a billing period plus Stripe's 35 days.
	rollupTTL       = 70 * 24 * time.Hour
	windowRetention = 7 * 24 * time.Hour // a reported window is kept this long (late counts, Used)
	markerTrimAge   = 7 * 24 * time.Hour // flush markers of replicas silent this long are removed
)

// redisStore is the meter's Redis side.
type redisStore struct {
	rdb     redis.UniversalClient
	keys    store.Keys
	cluster bool
	win     windows
	replica string // names this process's flush marker
}

func (s *redisStore) windowKey(customer, meter string, ws int64) string {
	return s.keys.Customer(customer, "usage", "w", meter, strconv.FormatInt(ws, 10))
}
func (s *redisStore) openKey(customer string) string {
	return s.keys.Customer(customer, "usage", "open")
}
func (s *redisStore) totalsKey(customer string) string {
	return s.keys.Customer(customer, "usage", "totals")
}
func (s *redisStore) parkedKey(customer string) string {
	return s.keys.Customer(customer, "usage", "parked")
}
func (s *redisStore) rollupKey(customer, meter string, day int64) string {
	return s.keys.Customer(customer, "usage", "r", meter, strconv.FormatInt(day, 10))
}
func (s *redisStore) dueKey() string       { return s.keys.Global("usage", "due") }
func (s *redisStore) customersKey() string { return s.keys.Global("usage", "customers") }
func (s *redisStore) leaseKey() string     { return s.keys.Global("usage", "lease") }

// applyChunk writes a chunk: one script for the whole chunk on a single
// Redis. On Cluster: the customers into the customer set first, then one
// script per customer (its keys share a slot), then the due index; a crash
// before the last step leaves customers with open windows that the leader's
// periodic sweep (ensureDue) puts back into the due index.
//
// Customers whose stored usage the script refused come back in rejected;
// nothing of theirs was written. On a single Redis nothing at all was
// written then; on Cluster the others were. Either way the caller takes
// them out of the chunk and sends it again (what was applied is skipped).
func (s *redisStore) applyChunk(ctx context.Context, c *chunk, now time.Time) (map[string]rejection, error) {
	if !s.cluster {
		keys := []string{s.keys.Global("usage", "flushed"), s.dueKey(), s.customersKey()}
		return s.runFlush(ctx, keys, c, c.entries, now, true)
	}
	byCustomer := make(map[string][]entry)
	for _, e := range c.entries {
		byCustomer[e.customer] = append(byCustomer[e.customer], e)
	}
	members := make([]any, 0, len(byCustomer))
	for cus := range byCustomer {
		members = append(members, cus)
	}
	if err := s.rdb.SAdd(ctx, s.customersKey(), members...).Err(); err != nil {
		return nil, fmt.Errorf("meter: flush index: %w", err)
	}
	rejected := make(map[string]rejection)
	for cus, es := range byCustomer {
		keys := []string{s.keys.Customer(cus, "usage", "flushed")}
		bad, err := s.runFlush(ctx, keys, c, es, now, false)
		if err != nil {
			return nil, err
		}
		if r, ok := bad[cus]; ok {
			rejected[cus] = r
			delete(byCustomer, cus)
		}
	}
	if err := s.indexDue(ctx, byCustomer); err != nil {
		return nil, err
	}
	return rejected, nil
}

// indexDue puts each customer into the due index at its earliest window's
// end, unless it is due earlier already (Cluster: after the scripts).
func (s *redisStore) indexDue(ctx context.Context, byCustomer map[string][]entry) error {
	if len(byCustomer) == 0 {
		return nil
	}
	pipe := s.rdb.Pipeline()
	for cus, es := range byCustomer {
		earliest := es[0].window
		for _, e := range es {
			earliest = min(earliest, e.window)
		}
		pipe.ZAddLT(ctx, s.dueKey(), redis.Z{Score: float64(earliest + s.win.size), Member: cus})
	}
	if _, err := pipe.Exec(ctx); err != nil {
		return fmt.Errorf("meter: flush index: %w", err)
	}
	return nil
}

// runFlush runs flushScript for entries es of chunk c and returns the
// customers it refused.
func (s *redisStore) runFlush(ctx context.Context, keys []string, c *chunk, es []entry, now time.Time, global bool) (map[string]rejection, error) {
	g := "0"
	if global {
		g = "1"
	}
	args := make([]any, 0, 6+6*len(es))
	args = append(args, s.replica, c.seq, now.Unix(), g, int64(rollupTTL/time.Second), c.gen)
	for _, e := range es {
		b := s.win.bucketOf(e.window)
		keys = append(keys, s.windowKey(e.customer, e.meter, e.window), s.openKey(e.customer),
			s.totalsKey(e.customer), s.rollupKey(e.customer, e.meter, dayOf(b)))
		args = append(args, e.customer, e.meter, e.window, e.window+s.win.size, e.units, b)
	}
	res, err := flushScript.Run(ctx, s.rdb, keys, args...).Result()
	if err != nil {
		return nil, fmt.Errorf("meter: flush %d entries: %w", len(es), scriptError(err))
	}
	refused, _ := res.([]any)
	if len(refused) == 0 {
		return nil, nil
	}
	out := make(map[string]rejection, len(refused)/3)
	for i := 0; i+2 < len(refused); i += 3 {
		cus, _ := refused[i].(string)
		reason, _ := refused[i+1].(string)
		detail, _ := refused[i+2].(string)
		out[cus] = rejection{reason: reason, detail: detail}
	}
	return out, nil
}

// intent is a recorded intent to report units of one window.
type intent struct {
	customer, meter string
	window          int64
	gen             string
	seq             int64
	units           int64
	since           int64 // when the intent was first recorded, Unix ms
}

func (it intent) identifier() string {
	return Identifier(it.customer, it.meter, it.window, it.gen, it.seq)
}

// Outcomes of begin.
const (
	beginNothing = 0 // the window is gone
	beginIntent  = 1 // report it
	beginDone    = 2 // fully reported (or parked); left the index
)

func (s *redisStore) begin(ctx context.Context, customer, meter string, ws int64, now time.Time) (int64, intent, error) {
	member := meter + ":" + strconv.FormatInt(ws, 10)
	res, err := beginScript.Run(ctx, s.rdb, []string{s.windowKey(customer, meter, ws), s.openKey(customer)},
		member, int64(windowRetention/time.Second), now.UnixMilli()).Slice()
	if err != nil {
		return 0, intent{}, fmt.Errorf("meter: begin %s: %w", member, scriptError(err))
	}
	state, _ := res[0].(int64)
	it := intent{customer: customer, meter: meter, window: ws}
	if state == beginIntent && len(res) == 5 {
		it.gen, _ = res[1].(string)
		it.seq, _ = res[2].(int64)
		it.units, _ = res[3].(int64)
		it.since, _ = res[4].(int64)
	}
	return state, it, nil
}

// settle ends an intent as reported (park == "") or parked with record.
func (s *redisStore) settle(ctx context.Context, it intent, parkField, record string) (int64, error) {
	keys := []string{s.windowKey(it.customer, it.meter, it.window), s.totalsKey(it.customer)}
	if parkField != "" {
		keys = append(keys, s.parkedKey(it.customer))
	}
	n, err := settleScript.Run(ctx, s.rdb, keys, it.seq, it.meter, parkField, record).Int64()
	if err != nil {
		return 0, fmt.Errorf("meter: settle %s: %w", it.identifier(), scriptError(err))
	}
	return n, nil
}

// refreshDue sets the customer's place in the due index to its earliest
// unfinished window, or removes it. The two keys are in different slots, so
// this is not atomic; removing, then re-reading the open index and putting
// the customer back if a flush added a window meanwhile, is safe against a
// concurrent flush (which updates the index after its open windows).
func (s *redisStore) refreshDue(ctx context.Context, customer string) error {
	first, err := s.rdb.ZRangeWithScores(ctx, s.openKey(customer), 0, 0).Result()
	if err != nil {
		return fmt.Errorf("meter: refresh due %s: %w", customer, err)
	}
	if len(first) > 0 {
		return s.rdb.ZAdd(ctx, s.dueKey(), redis.Z{Score: first[0].Score, Member: customer}).Err()
	}
	if err := s.rdb.ZRem(ctx, s.dueKey(), customer).Err(); err != nil {
		return fmt.Errorf("meter: refresh due %s: %w", customer, err)
	}
	again, err := s.rdb.ZRangeWithScores(ctx, s.openKey(customer), 0, 0).Result()
	if err != nil {
		return fmt.Errorf("meter: refresh due %s: %w", customer, err)
	}
	if len(again) > 0 {
		return s.rdb.ZAddLT(ctx, s.dueKey(), redis.Z{Score: again[0].Score, Member: customer}).Err()
	}
	return nil
}

// ensureDue puts customers with open windows into the due index, at their
// earliest window's end unless they are already due earlier (ZADD LT).
func (s *redisStore) ensureDue(ctx context.Context, customers []string) error {
	if len(customers) == 0 {
		return nil
	}
	pipe := s.rdb.Pipeline()
	firsts := make([]*redis.ZSliceCmd, len(customers))
	for i, c := range customers {
		firsts[i] = pipe.ZRangeWithScores(ctx, s.openKey(c), 0, 0)
	}
	if _, err := pipe.Exec(ctx); err != nil {
		return fmt.Errorf("meter: ensure due: %w", err)
	}
	pipe = s.rdb.Pipeline()
	for i, c := range customers {
		if z := firsts[i].Val(); len(z) > 0 {
			pipe.ZAddLT(ctx, s.dueKey(), redis.Z{Score: z[0].Score, Member: c})
		}
	}
	if _, err := pipe.Exec(ctx); err != nil {
		return fmt.Errorf("meter: ensure due: %w", err)
	}
	return nil
}

// dueWindow is one closed window waiting for a report.
type dueWindow struct {
	customer, meter string
	window          int64
}

// dueWindows returns closed windows (ending at or before cutoff) of up to
// limit customers from the due index, and the due customers that turned
// out to have none (their index entry is stale).
func (s *redisStore) dueWindows(ctx context.Context, cutoff int64, limit int64) ([]dueWindow, []string, error) {
	max := strconv.FormatInt(cutoff, 10)
	customers, err := s.rdb.ZRangeByScore(ctx, s.dueKey(), &redis.ZRangeBy{Min: "-inf", Max: max, Count: limit}).Result()
	if err != nil || len(customers) == 0 {
		return nil, nil, err
	}
	pipe := s.rdb.Pipeline()
	cmds := make([]*redis.StringSliceCmd, len(customers))
	for i, cus := range customers {
		cmds[i] = pipe.ZRangeByScore(ctx, s.openKey(cus), &redis.ZRangeBy{Min: "-inf", Max: max})
	}
	if _, err := pipe.Exec(ctx); err != nil && !errors.Is(err, redis.Nil) {
		return nil, nil, fmt.Errorf("meter: due windows: %w", err)
	}
	var out []dueWindow
	var stale []string
	for i, cus := range customers {
		members := cmds[i].Val()
		if len(members) == 0 {
			stale = append(stale, cus)
		}
		for _, m := range members {
			i := strings.LastIndexByte(m, ':')
			ws, err := strconv.ParseInt(m[i+1:], 10, 64)
			if i < 0 || err != nil {
				continue
			}
			out = append(out, dueWindow{customer: cus, meter: m[:i], window: ws})
		}
	}
	return out, stale, nil
}
