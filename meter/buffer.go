package meter

import (
	"context"
	"strconv"
	"sync"
	"time"
)

// maxChunk bounds the (customer, meter, window) entries written by one
// script: a flush after a long Redis outage is split into several, so that
// no single script blocks Redis for long.
const maxChunk = 1000

// pairKey is a (customer, meter): the unit of ordering for reports.
type pairKey struct{ customer, meter string }

type entry struct {
	ckey
	units int64
}

// chunk is one batch of counts on its way to Redis. After an error whose
// outcome is unknown (a timeout, a connection lost after the script ran)
// the same chunk is sent again with the same sequence number, and Redis
// skips it if it was applied. It changes only after Redis answered that it
// refused some customers' counts and wrote nothing of them (hold): those
// leave the chunk, and the rest is sent again under the same number.
type chunk struct {
	seq     int64
	gen     string // generation for windows this chunk creates
	entries []entry
}

// buffer holds counts drained from the shards until Redis has them, and
// counts Redis refused (held, see held.go). It is bounded by max entries
// (pending, the chunk in flight and held).
type buffer struct {
	mu        sync.Mutex
	max       int
	genPrefix string
	pending   map[ckey]int64
	latest    map[pairKey]int64 // newest window of each pair in pending
	inflight  *chunk
	seq       int64
	held      map[ckey]int64    // refused by Redis, waiting for a retry
	heldAt    map[pairKey]int64 // the one window each pair's held units are kept in
	heldWhy   map[string]string // customer → reason, until the next retry
	flushes   int               // flushes since held counts were last retried
}

func newBuffer(max int) *buffer {
	if max < 1 {
		max = 1
	}
	return &buffer{
		max:       max,
		genPrefix: randomHex(4),
		pending:   make(map[ckey]int64),
		latest:    make(map[pairKey]int64),
		held:      make(map[ckey]int64),
		heldAt:    make(map[pairKey]int64),
		heldWhy:   make(map[string]string),
	}
}

func (b *buffer) size() int {
	n := len(b.pending) + len(b.held)
	if b.inflight != nil {
		n += len(b.inflight.entries)
	}
	return n
}

// overflowEvent is what the buffer did with a count it could not simply
// add: merged into an earlier window (full buffer), dropped (full buffer,
// nothing of the pair buffered), or refused (overflow: the total would
// pass MaxTotal).
type overflowEvent struct {
	k        ckey
	units    int64
	into     int64 // the window the units were merged into
	dropped  bool
	overflow bool
}

// add moves taken into the buffer. A key already buffered always takes
// more units. A new key takes a slot while there is one; when the buffer is
// full its units go to the newest buffered window of the same (customer,
// meter), and only a pair with nothing buffered at all is dropped. Units
// that would take a buffered total past MaxTotal are refused. All three are
// returned, for the caller to log and count.
func (b *buffer) add(taken map[ckey]int64) []overflowEvent {
	if len(taken) == 0 {
		return nil
	}
	var events []overflowEvent
	b.mu.Lock()
	defer b.mu.Unlock()
	for k, u := range taken {
		p := pairKey{k.customer, k.meter}
		if _, ok := b.pending[k]; ok || b.size() < b.max {
			if !b.addPending(k, u) {
				events = append(events, overflowEvent{k: k, units: u, dropped: true, overflow: true})
				continue
			}
			if w, ok := b.latest[p]; !ok || k.window > w {
				b.latest[p] = k.window
			}
			continue
		}
		if w, ok := b.latest[p]; ok {
			into := ckey{k.customer, k.meter, w}
			if !b.addPending(into, u) {
				events = append(events, overflowEvent{k: k, units: u, into: w, dropped: true, overflow: true})
				continue
			}
			events = append(events, overflowEvent{k: k, units: u, into: w})
			continue
		}
		events = append(events, overflowEvent{k: k, units: u, dropped: true})
	}
	return events
}

// addPending adds u to pending[k] unless that would pass MaxTotal.
func (b *buffer) addPending(k ckey, u int64) bool {
	sum, ok := addUnits(b.pending[k], u)
	if ok {
		b.pending[k] = sum
	}
	return ok
}

// next returns the chunk to write: the one still in flight, or a new one
// cut from pending; nil when there is nothing to write.
func (b *buffer) next() *chunk {
	b.mu.Lock()
	defer b.mu.Unlock()
	if b.inflight != nil {
		return b.inflight
	}
	if len(b.pending) == 0 {
		return nil
	}
	b.seq++
	c := &chunk{seq: b.seq, gen: b.genPrefix + strconv.FormatInt(b.seq, 36)}
	for k, u := range b.pending {
		c.entries = append(c.entries, entry{k, u})
		delete(b.pending, k)
		if len(c.entries) == maxChunk {
			break
		}
	}
	b.inflight = c
	return c
}

// written marks the chunk in flight as applied in Redis.
func (b *buffer) written(c *chunk) {
	b.mu.Lock()
	defer b.mu.Unlock()
	if b.inflight == c {
		b.inflight = nil
	}
	// Only now is nothing of any pair buffered: until the chunk was
	// written, a full buffer still merges a pair's new window into it.
	if b.inflight == nil && len(b.pending) == 0 {
		clear(b.latest)
	}
}

// each calls fn for every count the buffer holds: pending, in flight and
// held. The caller holds b.mu.
func (b *buffer) each(fn func(k ckey, units int64)) {
	for k, u := range b.pending {
		fn(k, u)
	}
	if b.inflight != nil {
		for _, e := range b.inflight.entries {
			fn(e.ckey, e.units)
		}
	}
	for k, u := range b.held {
		fn(k, u)
	}
}

// unitsByMeter sums what the buffer holds (pending, in flight and held) per
// meter, capped at MaxTotal.
func (b *buffer) unitsByMeter() map[string]int64 {
	b.mu.Lock()
	defer b.mu.Unlock()
	out := make(map[string]int64)
	b.each(func(k ckey, u int64) { out[k.meter] = satAdd(out[k.meter], u) })
	return out
}

// sum is what the buffer holds for (customer, meter) in windows starting at
// or after since, capped at MaxTotal.
func (b *buffer) sum(customer, meter string, since int64) int64 {
	b.mu.Lock()
	defer b.mu.Unlock()
	var n int64
	b.each(func(k ckey, u int64) {
		if k.customer == customer && k.meter == meter && k.window >= since {
			n = satAdd(n, u)
		}
	})
	return n
}

// flush writes the buffer to Redis chunk by chunk; it stops at the first
// error, keeping the failed chunk for the next attempt. Customers whose
// counts Redis refused (their stored usage is corrupt or at MaxTotal) are
// held and the rest of the chunk is sent again: one customer's bad data
// never holds up another's counts.
func (m *Meter) flush(ctx context.Context) error {
	m.buf.tick()
	for {
		c := m.buf.next()
		if c == nil {
			return nil
		}
		if len(c.entries) == 0 {
			m.buf.written(c)
			continue
		}
		rejected, err := m.st.applyChunk(ctx, c, m.now())
		if err != nil {
			return err
		}
		if len(rejected) > 0 {
			m.hold(c, rejected)
			continue
		}
		m.buf.written(c)
	}
}

// flushLoop drains the shards into the buffer and the buffer into Redis
// every flush interval.
func (m *Meter) flushLoop(ctx context.Context) {
	defer m.wg.Done()
	t := time.NewTicker(m.cfg.FlushInterval)
	defer t.Stop()
	failing := false
	for {
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
		m.drainShards(false)
		err := m.flush(ctx)
		switch {
		case err != nil && ctx.Err() == nil:
			if !failing {
				m.log.Warn("metering: redis unreachable, keeping counts in the local buffer", "err", err)
			}
			failing = true
			for meter := range m.buf.unitsByMeter() {
				m.metrics.UsageReportErrors.WithLabelValues(meter, "store").Inc()
			}
		case err == nil && failing:
			m.log.Info("metering: redis reachable again, buffered counts flushed")
			failing = false
		}
		m.updateLocalPending()
	}
}

// updateLocalPending publishes tollgate_usage_pending_units: this replica's
// buffered units plus, on the reporting replica, the units waiting in Redis.
func (m *Meter) updateLocalPending() {
	local := m.buf.unitsByMeter()
	var remote map[string]int64
	if m.batch != nil {
		remote = m.batch.remotePending()
	}
	for name := range m.cfg.Meters {
		m.metrics.UsagePendingUnits.WithLabelValues(name).Set(float64(local[name] + remote[name]))
	}
}
