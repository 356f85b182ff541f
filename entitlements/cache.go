package entitlements

import (
	"hash/maphash"
	"sync"
	"sync/atomic"
	"time"
)

// entry is one cached customer, in one allocation with its view (see
// view.go for why it is packed).
type entry struct {
	view
	loadedAt int64 // unix nanoseconds: read from the store (or Stripe) then
	// negativeUntil, when not 0, marks a customer Stripe does not know; it
	// is denied without a lookup until then (unix nanoseconds).
	negativeUntil int64
	// gone is set, under the shard's lock, when the cache stops holding
	// the entry (replaced, removed or evicted): a caller's memo of it
	// (Gate.DecideMemo) is then no longer used.
	gone atomic.Bool
}

// newEntry caches v, read at loadedAt.
func newEntry(v view, loadedAt time.Time) *entry {
	return &entry{view: v, loadedAt: loadedAt.UnixNano()}
}

// negative reports whether the entry marks a customer Stripe does not know.
func (e *entry) negative() bool { return e.negativeUntil != 0 }

const shards = 32

// cache is a bounded, sharded map of customer → entry. When a shard is
// full an arbitrary entry is evicted: any evicted customer is simply
// reloaded from the store on its next request.
type cache struct {
	seed  maphash.Seed
	limit int64
	n     atomic.Int64 // entries across all shards
	shard [shards]struct {
		mu sync.RWMutex
		m  map[string]*entry
	}
}

func newCache(size int) *cache {
	c := &cache{seed: maphash.MakeSeed(), limit: int64(max(1, size))}
	for i := range c.shard {
		c.shard[i].m = make(map[string]*entry)
	}
	return c
}

func (c *cache) idx(customer string) int {
	return int(maphash.String(c.seed, customer) % shards)
}

func (c *cache) get(customer string) *entry {
	s := &c.shard[c.idx(customer)]
	s.mu.RLock()
	e := s.m[customer]
	s.mu.RUnlock()
	return e
}

func (c *cache) put(customer string, e *entry) {
	i := c.idx(customer)
	s := &c.shard[i]
	s.mu.Lock()
	old, had := s.m[customer]
	s.m[customer] = e
	if had {
		old.gone.Store(true)
	}
	s.mu.Unlock()
	if !had && c.n.Add(1) > c.limit {
		c.evictOne(i)
	}
}

// evictOne drops one entry, from the shard after the one just written to.
func (c *cache) evictOne(from int) {
	for j := 1; j <= shards; j++ {
		s := &c.shard[(from+j)%shards]
		s.mu.Lock()
		for k, e := range s.m {
			e.gone.Store(true)
			delete(s.m, k)
			c.n.Add(-1)
			s.mu.Unlock()
			return
		}
		s.mu.Unlock()
	}
}

func (c *cache) remove(customer string) {
	s := &c.shard[c.idx(customer)]
	s.mu.Lock()
	if e, ok := s.m[customer]; ok {
		e.gone.Store(true)
		delete(s.m, customer)
		c.n.Add(-1)
	}
	s.mu.Unlock()
}

// has reports whether the customer is cached (so a change is worth loading).
func (c *cache) has(customer string) bool { return c.get(customer) != nil }

// keys lists every cached customer.
func (c *cache) keys() []string {
	var out []string
	for i := range c.shard {
		s := &c.shard[i]
		s.mu.RLock()
		for k := range s.m {
			out = append(out, k)
		}
		s.mu.RUnlock()
	}
	return out
}

func (c *cache) len() int { return int(c.n.Load()) }
