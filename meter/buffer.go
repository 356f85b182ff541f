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

// chunk is one batch of counts on its way to Redis. Once cut it never
// changes: after an error whose outcome is unknown (a timeout, a connection
// lost after the script ran) the same chunk is sent again with the same
// sequence number, and Redis skips it if it was applied.
type chunk struct {
	seq     int64
	gen     string // generation for windows this chunk creates
	entries []entry
}

// buffer holds counts drained from the shards until Redis has them. It is
// bounded by max entries (pending plus the chunk in flight).
type buffer struct {
	mu        sync.Mutex
	max       int
	genPrefix string
	pending   map[ckey]int64
	latest    map[pairKey]int64 // newest window of each pair in pending
	inflight  *chunk
	seq       int64
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
	}
}

func (b *buffer) size() int {
	n := len(b.pending)
	if b.inflight != nil {
		n += len(b.inflight.entries)
	}
	return n
}

// overflowEvent is what a full buffer did with a count.
type overflowEvent struct {
	k       ckey
	units   int64
	into    int64 // the window the units were merged into
	dropped bool
}

// add moves taken into the buffer. A key already buffered always takes
// more units. A new key takes a slot while there is one; when the buffer is
// full its units go to the newest buffered window of the same (customer,
// meter), and only a pair with nothing buffered at all is dropped. Both are
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
			b.pending[k] += u
			if w, ok := b.latest[p]; !ok || k.window > w {
				b.latest[p] = k.window
			}
			continue
		}
		if w, ok := b.latest[p]; ok {
			b.pending[ckey{k.customer, k.meter, w}] += u
			events = append(events, overflowEvent{k, u, w, false})
			continue
		}
		events = append(events, overflowEvent{k, u, 0, true})
	}
	return events
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

// unitsByMeter sums what the buffer holds (pending and in flight) per meter.
func (b *buffer) unitsByMeter() map[string]int64 {
	b.mu.Lock()
	defer b.mu.Unlock()
	out := make(map[string]int64)
	for k, u := range b.pending {
		out[k.meter] += u
	}
	if b.inflight != nil {
		for _, e := range b.inflight.entries {
			out[e.meter] += e.units
		}
	}
	return out
}

// sum is what the buffer holds for (customer, meter) in windows starting at
// or after since.
func (b *buffer) sum(customer, meter string, since int64) int64 {
	b.mu.Lock()
	defer b.mu.Unlock()
	var n int64
	for k, u := range b.pending {
		if k.customer == customer && k.meter == meter && k.window >= since {
			n += u
		}
	}
	if b.inflight != nil {
		for _, e := range b.inflight.entries {
			if e.customer == customer && e.meter == meter && e.window >= since {
				n += e.units
			}
		}
	}
	return n
}

// flush writes the buffer to Redis chunk by chunk; it stops at the first
// error, keeping the failed chunk for the next attempt.
func (m *Meter) flush(ctx context.Context) error {
	for {
		c := m.buf.next()
		if c == nil {
			return nil
		}
		if err := m.st.applyChunk(ctx, c, m.now()); err != nil {
			return err
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
