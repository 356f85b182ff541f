package meter

import (
	"fmt"
	"sort"
	"strings"
	"time"
)

// heldRetryEvery is how many flushes pass before counts Redis refused are
// sent again (a minute at the default flush_interval of 1 s): they wait for
// an operator to repair the customer's usage in Redis, and a retry costs a
// script run that would most likely refuse them again.
const heldRetryEvery = 60

// rejection is why Redis refused one customer's counts in a flush, and
// wrote nothing of them: reason is corrupt (a stored value that is not a
// valid count, a key of the wrong type) or overflow (a total would pass
// MaxTotal); detail names the key and field.
type rejection struct{ reason, detail string }

// tick counts a flush; every heldRetryEvery-th one, the held counts go
// back to pending to be sent again.
func (b *buffer) tick() {
	b.mu.Lock()
	b.flushes++
	due := b.flushes >= heldRetryEvery
	b.mu.Unlock()
	if due {
		b.retryHeld()
	}
}

// retryHeld moves the held counts back to pending. A count that cannot be
// merged into pending without passing MaxTotal stays held.
func (b *buffer) retryHeld() {
	b.mu.Lock()
	defer b.mu.Unlock()
	b.flushes = 0
	clear(b.heldWhy)
	for k, u := range b.held {
		if !b.addPending(k, u) {
			continue
		}
		delete(b.held, k)
		p := pairKey{k.customer, k.meter}
		delete(b.heldAt, p)
		if w, ok := b.latest[p]; !ok || k.window > w {
			b.latest[p] = k.window
		}
	}
}

// heldCustomer is what hold moved out of a chunk for one customer.
type heldCustomer struct {
	rejection
	fresh  bool             // not held since the last retry: log at error
	meters map[string]int64 // units held per meter
	lost   []overflowEvent  // units that would pass MaxTotal in held
}

// hold moves the counts of the rejected customers out of chunk c into
// held. Redis wrote nothing of them, so c is sent again without them.
//
// A (customer, meter) keeps its held units in one entry, in the window of
// its first held count (an earlier timestamp, as a full buffer merges):
// a customer whose data stays bad for weeks takes one slot per meter, not
// one per window, and so never fills the buffer other customers' counts
// need.
func (b *buffer) hold(c *chunk, rejected map[string]rejection) map[string]*heldCustomer {
	b.mu.Lock()
	defer b.mu.Unlock()
	out := make(map[string]*heldCustomer, len(rejected))
	kept := c.entries[:0]
	for _, e := range c.entries {
		r, ok := rejected[e.customer]
		if !ok {
			kept = append(kept, e)
			continue
		}
		h := out[e.customer]
		if h == nil {
			_, seen := b.heldWhy[e.customer]
			h = &heldCustomer{rejection: r, fresh: !seen, meters: make(map[string]int64)}
			out[e.customer] = h
			b.heldWhy[e.customer] = r.reason
		}
		p := pairKey{e.customer, e.meter}
		k := e.ckey
		if w, ok := b.heldAt[p]; ok {
			k.window = w
		}
		sum, fits := addUnits(b.held[k], e.units)
		if !fits {
			h.lost = append(h.lost, overflowEvent{k: e.ckey, units: e.units, into: k.window, dropped: true, overflow: true})
			continue
		}
		b.held[k] = sum
		b.heldAt[p] = k.window
		h.meters[e.meter] = satAdd(h.meters[e.meter], e.units)
	}
	clear(c.entries[len(kept):])
	c.entries = kept
	return out
}

// hold takes the rejected customers' counts out of c, keeps them in memory,
// logs (at error once per customer between retries) and counts them.
func (m *Meter) hold(c *chunk, rejected map[string]rejection) {
	for cus, h := range m.buf.hold(c, rejected) {
		for meter, units := range h.meters {
			m.metrics.UsageReportErrors.WithLabelValues(meter, h.reason).Inc()
			msg := "metering: redis refused a customer's counts; they stay in this replica's memory and are retried"
			args := []any{"customer", cus, "meter", meter, "units", units, "reason", h.reason, "detail", h.detail,
				"retry_in", heldRetryEvery * m.cfg.FlushInterval}
			if h.fresh {
				m.log.Error(msg, args...)
			} else {
				m.log.Debug(msg, args...)
			}
		}
		for _, e := range h.lost {
			m.overflowed(e)
		}
	}
}

// heldAtShutdown reports the counts still held after Close's last flush:
// Redis refused them until the end, so they are lost, logged one by one.
func (m *Meter) heldAtShutdown() error {
	m.buf.mu.Lock()
	var lost []entry
	for k, u := range m.buf.held {
		lost = append(lost, entry{k, u})
	}
	why := make(map[string]string, len(m.buf.heldWhy))
	for c, r := range m.buf.heldWhy {
		why[c] = r
	}
	m.buf.mu.Unlock()
	if len(lost) == 0 {
		return nil
	}
	sort.Slice(lost, func(i, j int) bool { return lost[i].customer < lost[j].customer })
	var customers []string
	for _, e := range lost {
		m.metrics.UsageReportErrors.WithLabelValues(e.meter, "lost_at_shutdown").Inc()
		m.log.Error("metering: counts refused by redis until shutdown: LOST",
			"customer", e.customer, "meter", e.meter, "window", time.UnixMilli(e.window).UTC(), "units", e.units,
			"reason", why[e.customer])
		if len(customers) == 0 || customers[len(customers)-1] != e.customer {
			customers = append(customers, e.customer)
		}
	}
	n := len(customers)
	if n > 10 {
		customers = append(customers[:10], "...")
	}
	return fmt.Errorf("%w: redis refused the counts of %d customers (%s): their stored usage is corrupt or at meter.MaxTotal",
		ErrUnflushed, n, strings.Join(customers, ", "))
}
