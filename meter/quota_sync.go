package meter

import (
	"context"
	"errors"
	"fmt"
	"time"
)

// idleEvictRounds is how many sync rounds a settled share stays in memory
// without a request (about an hour at the default interval) before it is
// dropped while memory is not short. A dropped share that is needed again
// starts a new lease, so evicting eagerly would grow the ledger by a field
// per return of the customer.
const idleEvictRounds = 3600

// run syncs every share each interval until ctx ends.
func (q *Quotas) run(ctx context.Context) {
	defer q.wg.Done()
	t := time.NewTicker(q.every)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-t.C:
			q.syncOnce(ctx)
		case <-q.kick:
			q.handBackIdle(ctx)
		}
	}
}

// handBack queues an idle share to be handed back at once.
func (q *Quotas) handBack(s *Share) {
	q.idleMu.Lock()
	q.idle = append(q.idle, s)
	q.idleMu.Unlock()
	select {
	case q.kick <- struct{}{}:
	default: // the loop is already woken
	}
}

// handBackIdle returns the unreserved units of the queued shares that are
// still idle, in one pipeline.
func (q *Quotas) handBackIdle(ctx context.Context) {
	q.idleMu.Lock()
	shares := q.idle
	q.idle = nil
	q.idleMu.Unlock()
	var calls []*leaseCall
	for _, s := range shares {
		s.mu.Lock()
		s.handBack = false
		if s.busy == nil && !s.evicted && s.avail > 0 && s.inflight == 0 && s.waiting == 0 {
			s.avail = 0
			calls = append(calls, s.newCall(0, 0))
		}
		s.mu.Unlock()
	}
	q.runCalls(ctx, calls)
}

// syncOnce reports what every share served, renews the leases that need
// it, returns units a share did not use since the last round, and drops
// shares that have been idle long enough. All calls go in one pipeline.
func (q *Quotas) syncOnce(ctx context.Context) {
	shares := q.list()
	var calls []*leaseCall
	var idle []*Share
	over := len(shares) > q.max
	wall := q.now()
	for _, s := range shares {
		s.mu.Lock()
		if c := s.syncCall(wall); c != nil {
			calls = append(calls, c)
		} else if s.settled() && s.idle >= 2 && (over || s.idle >= idleEvictRounds || wall.After(s.end)) {
			idle = append(idle, s)
		}
		s.mu.Unlock()
	}
	q.runCalls(ctx, calls)
	q.evict(idle)
}

func (q *Quotas) list() []*Share {
	q.mu.RLock()
	defer q.mu.RUnlock()
	out := make([]*Share, 0, len(q.shares))
	for _, s := range q.shares {
		out = append(out, s)
	}
	return out
}

// syncCall decides (s.mu held) whether the share needs a call this round.
func (s *Share) syncCall(wall time.Time) *leaseCall {
	if s.busy != nil || s.evicted {
		return nil
	}
	if s.touched {
		s.idle = 0
	} else {
		s.idle++
	}
	now := s.q.mono()
	// Unused since the last round, or its period is over, or its lease may
	// be gone: hand it back so other replicas can admit it.
	giveBack := s.avail > 0 && (!s.touched || wall.After(s.end) || now >= s.validUntil)
	s.touched = false
	if giveBack {
		s.avail = 0
	}
	renew := s.leased && s.validUntil-now < s.q.ttl/2
	if !giveBack && !renew && s.consumed == s.reported {
		return nil
	}
	return s.newCall(0, 0)
}

// settled reports (s.mu held) a share with nothing held, nothing in flight
// (no overrun either) and everything reported.
func (s *Share) settled() bool {
	return s.busy == nil && s.waiting == 0 && s.inflight == 0 && s.overruns == 0 && s.avail == 0 && !s.leased &&
		s.consumed == s.reported
}

// runCalls runs background lease calls and applies their answers.
func (q *Quotas) runCalls(ctx context.Context, calls []*leaseCall) {
	if len(calls) == 0 {
		return
	}
	cctx, cancel := context.WithTimeout(ctx, q.ttl/2)
	defer cancel()
	replies, errs := q.callAll(cctx, calls)
	for i, c := range calls {
		if errs[i] != nil && !errors.Is(errs[i], ErrCorrupt) { // (a damaged ledger is logged by finish)
			q.log.Warn("quota: sync failed; the share keeps serving until its lease expires", "share", c.s.key.String(), "err", errs[i])
		}
		c.s.mu.Lock()
		c.s.finish(c, replies[i], errs[i])
		c.s.mu.Unlock()
	}
}

// evict drops idle shares that are still idle.
func (q *Quotas) evict(shares []*Share) {
	if len(shares) == 0 {
		return
	}
	q.mu.Lock()
	defer q.mu.Unlock()
	for _, s := range shares {
		s.mu.Lock()
		if s.settled() && !s.touched {
			s.evicted = true
			delete(q.shares, s.key)
		}
		s.mu.Unlock()
	}
}

// Close stops the sync loop and returns every share to its ledger: the
// units served are reported and the unused ones are free for other
// replicas at once. It retries until ctx ends; shares it could not return
// come back when their leases expire.
func (q *Quotas) Close(ctx context.Context) error {
	q.mu.Lock()
	if q.closed.Load() {
		q.mu.Unlock()
		return nil
	}
	q.closed.Store(true)
	q.mu.Unlock()
	q.cancel()
	q.wg.Wait()
	pending := q.list()
	t := time.NewTicker(50 * time.Millisecond)
	defer t.Stop()
	for {
		pending = q.returnShares(ctx, pending)
		if len(pending) == 0 {
			return nil
		}
		select {
		case <-ctx.Done():
			q.log.Error("quota: shares not returned at shutdown; other replicas get their units back when the leases expire",
				"shares", len(pending), "lease_ttl", q.ttl.String())
			return fmt.Errorf("meter: %d quota shares not returned: %w", len(pending), ctx.Err())
		case <-t.C:
		}
	}
}

// returnShares makes one attempt at returning shares and gives back those
// still pending (a call failed, or one was in flight).
func (q *Quotas) returnShares(ctx context.Context, shares []*Share) []*Share {
	var calls []*leaseCall
	var pending []*Share
	for _, s := range shares {
		s.mu.Lock()
		switch {
		case s.busy != nil:
			pending = append(pending, s)
		case s.leased || s.consumed > s.reported || s.avail > 0:
			s.avail = 0
			c := s.newCall(0, 0)
			c.final = true
			calls = append(calls, c)
		}
		s.mu.Unlock()
	}
	if len(calls) == 0 {
		return pending
	}
	replies, errs := q.callAll(ctx, calls)
	for i, c := range calls {
		s := c.s
		s.mu.Lock()
		s.finish(c, replies[i], errs[i])
		// A damaged ledger is not repaired in a shutdown's time: its share
		// is given up, and its lease expires (what it served since its last
		// report is billed by the meter all the same).
		if errors.Is(errs[i], ErrCorrupt) {
			q.log.Error("quota: share not returned at shutdown: its ledger is not valid", "share", s.key.String(), "err", errs[i])
		} else if errs[i] != nil || s.leased || s.consumed > s.reported {
			pending = append(pending, s)
		}
		s.mu.Unlock()
	}
	return pending
}
