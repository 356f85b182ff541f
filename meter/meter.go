// Package meter counts metered usage on the request path and reports it to
// Stripe exactly once.
//
// Counting (Count) touches only memory: a sharded map of (customer, meter,
// window) → units. Every metering.flush_interval a flusher moves those counts
// into Redis with one Lua script per flush, idempotent under retries (a
// per-replica flush sequence number is recorded in the same script). While
// Redis is unreachable the counts wait in a bounded local buffer.
//
// One replica at a time holds a Redis lease and runs the batcher: it reports
// every closed window as a Billing Meter Event (or a legacy usage record)
// whose identifier is derived from (customer, meter, window, report
// sequence). The sequence "record intent in Redis → call Stripe → mark done"
// makes a crash at any point lead to a retry with the same identifier, which
// Stripe deduplicates. See README "Metering" for the guarantees.
package meter

import (
	"context"
	"errors"
	"fmt"
	"hash/maphash"
	"log/slog"
	"sync"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/redis/go-redis/v9"

	"github.com/tollgate-dev/tollgate/config"
	"github.com/tollgate-dev/tollgate/internal/metrics"
	"github.com/tollgate-dev/tollgate/internal/store"
)

// Errors callers may branch on.
var (
	// ErrClosed is returned by Used after Close.
	ErrClosed = errors.New("meter: closed")
	// ErrUnflushed is returned by Close when counts could not be written to
	// Redis before its context ended; they are lost and were logged.
	ErrUnflushed = errors.New("meter: counts not flushed to redis at shutdown")
)

// numShards spreads Count over independent locks; a power of two.
const numShards = 64

// Options configure a Meter.
type Options struct {
	Config  config.Metering
	Redis   redis.UniversalClient
	Keys    store.Keys
	Sender  Sender // reports to Stripe; nil: this replica never reports
	Metrics *metrics.Metrics
	Logger  *slog.Logger
	// Now is the clock that assigns counts to windows and decides when a
	// window is closed; nil means time.Now.
	Now func() time.Time
	// Cluster groups each flush by customer (one script per hash slot)
	// instead of one script for the whole flush. New sets it when Redis is
	// a *redis.ClusterClient.
	Cluster bool
	// ReplicaID names this process in the lease and in flush markers;
	// empty means hostname:pid:random.
	ReplicaID string
}

// Meter counts usage and, on the replica holding the lease, reports it.
// *Meter implements proxy.Counter.
type Meter struct {
	cfg     config.Metering
	win     windows
	now     func() time.Time
	log     *slog.Logger
	metrics *metrics.Metrics
	st      *redisStore
	replica string

	seed   maphash.Seed
	shards [numShards]shard

	buf      *buffer
	batch    *batcher // nil without a Sender
	cancel   context.CancelFunc
	wg       sync.WaitGroup
	closeMu  sync.Mutex
	closed   bool
	unitsCtr map[string]prometheus.Counter
}

// ckey is one aggregate: units of a meter for a customer in a window (the
// window's start in Unix milliseconds).
type ckey struct {
	customer, meter string
	window          int64
}

// shard is one lock and one map of counters. The flusher moves the
// counts into the buffer under the lock and zeroes the counters; a key
// counted since the flush before keeps its counter, so Count on it is one
// map lookup and never allocates, and a key not counted for a whole flush
// interval is removed.
type shard struct {
	mu     sync.Mutex
	cur    map[ckey]*counter
	m      *Meter // whose shard it is, for a memo's counter (CountMemo)
	closed bool
	_      [32]byte // keep neighbouring locks off one cache line
}

// counter is the units of one aggregate counted since the last flush. A
// memo's counter (CountMemo) is used while its shard's map still holds it:
// gone is set, under the shard's lock, when the map drops it.
type counter struct {
	n     int64
	gone  bool
	shard *shard
	key   ckey
}

// New builds a Meter and starts its flusher and, with a Sender, its
// batcher. Workers run until Close.
func New(o Options) (*Meter, error) {
	if o.Redis == nil {
		return nil, errors.New("meter: no redis client")
	}
	if o.Config.Window < time.Second || o.Config.FlushInterval <= 0 {
		return nil, fmt.Errorf("meter: window %s / flush_interval %s out of range", o.Config.Window, o.Config.FlushInterval)
	}
	if _, ok := o.Redis.(*redis.ClusterClient); ok {
		o.Cluster = true
	}
	defaults(&o.Now, &o.Logger, &o.Metrics, &o.ReplicaID)
	m := &Meter{
		cfg:      o.Config,
		win:      newWindows(o.Config.Window),
		now:      o.Now,
		log:      o.Logger.With("component", "meter"),
		metrics:  o.Metrics,
		replica:  o.ReplicaID,
		seed:     maphash.MakeSeed(),
		unitsCtr: make(map[string]prometheus.Counter),
	}
	m.st = &redisStore{rdb: o.Redis, keys: o.Keys, cluster: o.Cluster, win: m.win, replica: o.ReplicaID}
	for i := range m.shards {
		m.shards[i].cur = make(map[ckey]*counter)
		m.shards[i].m = m
	}
	for name := range o.Config.Meters {
		m.unitsCtr[name] = m.metrics.UsageUnits.WithLabelValues(name)
		m.metrics.UsagePendingUnits.WithLabelValues(name).Set(0)
	}
	m.initSeries(o.Config.Meters)
	m.buf = newBuffer(o.Config.MaxBufferedKeys)
	if o.Sender != nil {
		m.batch = newBatcher(m, o.Sender, o.Config)
	}
	ctx, cancel := context.WithCancel(context.Background())
	m.cancel = cancel
	m.wg.Add(1)
	go m.flushLoop(ctx)
	if m.batch != nil {
		m.wg.Add(1)
		go m.batch.run(ctx)
	}
	return m, nil
}

// Count adds units of meter for customer to the current window. It is
// called on the request path: memory only, no I/O, no allocation for a
// key already counted in this flush interval.
//
// Units outside [0, MaxUnits], and units that would take the window's total
// past MaxTotal, are refused: not counted, logged at error and counted in
// usage_report_errors_total{reason="invalid_units"|"overflow"} (issue 9: a
// value near 2^63 wrapped the bill).
func (m *Meter) Count(customer, meter string, units int64) { m.CountMemo(customer, meter, units, nil) }

// CountMemo is Count, with memo keeping the counter of the customer's
// current window from one count to the next (see Memo); nil is Count.
func (m *Meter) CountMemo(customer, meter string, units int64, memo *Memo) {
	if units == 0 || customer == "" {
		return
	}
	k := ckey{customer, meter, m.win.start(m.now())}
	if units < 0 || units > MaxUnits {
		m.refused(k, units, reasonInvalidUnits)
		return
	}
	var c *counter
	if memo = memo.of(customer); memo != nil { // (so its counter is of customer)
		if c = memo.counter.Load(); c != nil && (c.key.window != k.window || c.key.meter != k.meter || c.shard.m != m) {
			c = nil
		}
	}
	s := m.shardOf(customer, c)
	s.mu.Lock()
	if s.closed {
		s.mu.Unlock()
		m.countedAfterClose(customer, meter, units)
		return
	}
	if c == nil || c.gone {
		if c = s.cur[k]; c == nil {
			c = &counter{shard: s, key: k}
			s.cur[k] = c
		}
		if memo != nil {
			memo.counter.Store(c)
		}
	}
	sum, ok := addUnits(c.n, units)
	if ok {
		c.n = sum
	}
	s.mu.Unlock()
	if !ok {
		m.refused(k, units, reasonOverflow)
	}
}

// shardOf is the shard of customer's counters: c's, when there is a
// memo's counter of the customer.
func (m *Meter) shardOf(customer string, c *counter) *shard {
	if c != nil {
		return c.shard
	}
	return &m.shards[maphash.String(m.seed, customer)&(numShards-1)]
}

// countedAfterClose is never reached in tollgate (the proxy has drained
// before Close); a count that arrives anyway is lost loudly, not silently.
func (m *Meter) countedAfterClose(customer, meter string, units int64) {
	m.metrics.UsageReportErrors.WithLabelValues(meter, "counted_after_close").Inc()
	m.log.Error("metering: count after Close is lost", "customer", customer, "meter", meter, "units", units)
}

// drainShards moves every shard's counts into the buffer. It holds the
// shard's lock while doing so, so that Used never misses counts on their
// way. With final set, the shards refuse further counts.
func (m *Meter) drainShards(final bool) {
	counted := make(map[string]int64)
	var events []overflowEvent
	for i := range m.shards {
		s := &m.shards[i]
		s.mu.Lock()
		s.closed = s.closed || final
		var taken map[ckey]int64
		for k, c := range s.cur {
			u := c.n
			if u == 0 || final {
				delete(s.cur, k) // idle for a whole interval, or no more counts
				c.gone = true
			}
			if u == 0 {
				continue
			}
			c.n = 0
			if taken == nil {
				taken = make(map[ckey]int64, len(s.cur))
			}
			taken[k] = u
			counted[k.meter] = satAdd(counted[k.meter], u)
			if pc := m.metrics.CustomerUsageUnits; pc != nil {
				pc.WithLabelValues(k.customer, k.meter).Add(float64(u))
			}
		}
		events = append(events, m.buf.add(taken)...)
		s.mu.Unlock()
	}
	for meter, u := range counted {
		m.unitsCounter(meter).Add(float64(u))
	}
	for _, e := range events {
		m.overflowed(e)
	}
}

func (m *Meter) unitsCounter(meter string) prometheus.Counter {
	if c, ok := m.unitsCtr[meter]; ok {
		return c
	}
	return m.metrics.UsageUnits.WithLabelValues(meter)
}

// overflowed reports what the buffer did with counts it could not add:
// refused (the total would pass MaxTotal), merged into an older window of
// the same (customer, meter) because it was full, or dropped.
func (m *Meter) overflowed(e overflowEvent) {
	k := e.k
	if e.overflow {
		m.refused(k, e.units, reasonOverflow)
		return
	}
	if e.dropped {
		m.metrics.UsageReportErrors.WithLabelValues(k.meter, "buffer_full_dropped").Inc()
		m.log.Error("metering: local buffer full (redis unreachable): counts LOST",
			"customer", k.customer, "meter", k.meter, "window", time.UnixMilli(k.window).UTC(), "units", e.units,
			"max_buffered_keys", m.cfg.MaxBufferedKeys)
		return
	}
	m.metrics.UsageReportErrors.WithLabelValues(k.meter, "buffer_full_merged").Inc()
	m.log.Warn("metering: local buffer full (redis unreachable): counts merged into an earlier window",
		"customer", k.customer, "meter", k.meter, "window", time.UnixMilli(k.window).UTC(),
		"into_window", time.UnixMilli(e.into).UTC(), "units", e.units)
}

// Close stops the batcher (releasing the lease so that another replica takes
// over at once), stops the flusher and writes every count still in memory
// to Redis, retrying until ctx ends. Counts it could not write are logged,
// counted and reported as ErrUnflushed.
func (m *Meter) Close(ctx context.Context) error {
	m.closeMu.Lock()
	defer m.closeMu.Unlock()
	if m.closed {
		return nil
	}
	m.closed = true
	m.cancel()
	m.wg.Wait()
	if m.batch != nil {
		m.batch.release(ctx)
	}
	m.drainShards(true)
	m.buf.retryHeld()
	err := m.flushUntil(ctx)
	if err == nil {
		err = m.heldAtShutdown()
	}
	m.updateLocalPending()
	return err
}

// flushUntil retries the flush until the buffer is empty or ctx ends.
func (m *Meter) flushUntil(ctx context.Context) error {
	t := time.NewTicker(50 * time.Millisecond)
	defer t.Stop()
	for {
		err := m.flush(ctx)
		if err == nil {
			return nil
		}
		select {
		case <-ctx.Done():
			lost := m.buf.unitsByMeter()
			for meter, u := range lost {
				m.metrics.UsageReportErrors.WithLabelValues(meter, "lost_at_shutdown").Inc()
				m.log.Error("metering: counts could not be written to redis before shutdown ended: LOST",
					"meter", meter, "units", u, "err", err)
			}
			return fmt.Errorf("%w: %v", ErrUnflushed, err)
		case <-t.C:
		}
	}
}
