package meter

import (
	"context"
	"sync"
	"time"

	"golang.org/x/sync/singleflight"
)

// UsedFunc reads a customer's usage of a meter since a time; (*Meter).Used
// is one.
type UsedFunc func(ctx context.Context, customer, meter string, since time.Time) (int64, error)

// Quotas serves period usage for quota checks from memory. A customer's
// first check reads the store (once, however many requests arrive); after
// that the value is refreshed in the background at most every TTL, so a
// check costs no network round trip, and units this replica counts in
// between are added at once (Add). A quota can therefore be overrun only
// by what other replicas serve within TTL plus metering.flush_interval;
// the README says so.
type Quotas struct {
	used UsedFunc
	ttl  time.Duration
	max  int
	now  func() time.Time

	mu      sync.Mutex
	entries map[quotaKey]*quotaEntry
	loads   singleflight.Group
	wg      sync.WaitGroup
	ctx     context.Context
	cancel  context.CancelFunc
}

type quotaKey struct{ customer, meter string }

type quotaEntry struct {
	since      int64 // the period start the usage is counted from
	used       int64
	at         time.Time
	refreshing bool
}

// NewQuotas returns a cache over used holding at most max entries.
func NewQuotas(used UsedFunc, ttl time.Duration, max int, now func() time.Time) *Quotas {
	if now == nil {
		now = time.Now
	}
	ctx, cancel := context.WithCancel(context.Background())
	return &Quotas{used: used, ttl: ttl, max: max, now: now, entries: map[quotaKey]*quotaEntry{}, ctx: ctx, cancel: cancel}
}

// Used returns the customer's usage of meter since the period start.
func (q *Quotas) Used(ctx context.Context, customer, meter string, since time.Time) (int64, error) {
	k := quotaKey{customer, meter}
	q.mu.Lock()
	e := q.entries[k]
	if e != nil && e.since == since.UnixNano() {
		if !e.refreshing && q.now().Sub(e.at) >= q.ttl && q.ctx.Err() == nil {
			e.refreshing = true
			q.wg.Add(1)
			go q.refresh(k, since)
		}
		used := e.used
		q.mu.Unlock()
		return used, nil
	}
	q.mu.Unlock()
	v, err, _ := q.loads.Do(customer+"\x00"+meter, func() (any, error) {
		return q.load(ctx, k, since)
	})
	if err != nil {
		return 0, err
	}
	return v.(int64), nil
}

// Add counts units this replica just served into the cached usage. The
// sum is capped at MaxTotal (issue 9: += wrapped it negative and opened the
// quota again); negative units are ignored.
func (q *Quotas) Add(customer, meter string, units int64) {
	if units <= 0 {
		return
	}
	q.mu.Lock()
	if e := q.entries[quotaKey{customer, meter}]; e != nil {
		e.used = satAdd(e.used, units)
	}
	q.mu.Unlock()
}

func (q *Quotas) load(ctx context.Context, k quotaKey, since time.Time) (int64, error) {
	at := q.now()
	n, err := q.used(ctx, k.customer, k.meter, since)
	if err != nil {
		return 0, err
	}
	q.mu.Lock()
	defer q.mu.Unlock()
	if len(q.entries) >= q.max {
		for old := range q.entries {
			delete(q.entries, old)
			break
		}
	}
	q.entries[k] = &quotaEntry{since: since.UnixNano(), used: n, at: at}
	return n, nil
}

func (q *Quotas) refresh(k quotaKey, since time.Time) {
	defer q.wg.Done()
	ctx, cancel := context.WithTimeout(q.ctx, 5*time.Second)
	defer cancel()
	at := q.now()
	n, err := q.used(ctx, k.customer, k.meter, since)
	q.mu.Lock()
	defer q.mu.Unlock()
	if e := q.entries[k]; e != nil && e.since == since.UnixNano() {
		e.refreshing = false
		if err == nil {
			e.used, e.at = n, at
		}
	}
}

// Close stops background refreshes and waits for them.
func (q *Quotas) Close() {
	q.cancel()
	q.wg.Wait()
}
