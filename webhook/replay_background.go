package webhook

import (
	"context"
	"errors"
	"fmt"
	"strconv"
	"time"

	"github.com/redis/go-redis/v9"

	"github.com/tollgate-dev/tollgate/internal/lease"
	"github.com/tollgate-dev/tollgate/internal/store"
)

// Background replay (gating.replay_interval).
const (
	// FirstReplayLookback is how far back the first background run lists,
	// when no run has finished before: Stripe retries a failed delivery
	// for up to 3 days, so an older lost event is one it gave up on
	// (`tollgate replay -since 30d` reaches those).
	FirstReplayLookback = 72 * time.Hour
	// replayOverlap is how far before the previous run's start the next
	// run lists from, for events that reached the list late and clocks
	// that disagree.
	replayOverlap = 5 * time.Minute
)

// ReplayMark remembers, across replicas and restarts, where the next
// background replay lists from: one global key, prefix +
// "webhook:replay:mark", holding a Unix second.
type ReplayMark struct {
	rdb redis.UniversalClient
	key string
}

// NewReplayMark returns the mark on an open store connection.
func NewReplayMark(rdb redis.UniversalClient, keys store.Keys) *ReplayMark {
	return &ReplayMark{rdb: rdb, key: keys.Global("webhook", "replay", "mark")}
}

// Get returns the mark; false when no run has finished yet.
func (m *ReplayMark) Get(ctx context.Context) (time.Time, bool, error) {
	v, err := m.rdb.Get(ctx, m.key).Result()
	if errors.Is(err, redis.Nil) {
		return time.Time{}, false, nil
	}
	if err != nil {
		return time.Time{}, false, fmt.Errorf("webhook: read the replay mark: %w", err)
	}
	sec, err := strconv.ParseInt(v, 10, 64)
	if err != nil {
		return time.Time{}, false, nil // unreadable: start over
	}
	return time.Unix(sec, 0), true, nil
}

// Set records the mark, kept as long as Stripe lists events.
func (m *ReplayMark) Set(ctx context.Context, t time.Time) error {
	return m.rdb.Set(ctx, m.key, strconv.FormatInt(t.Unix(), 10), EventsRetention).Err()
}

// RunEvery runs a replay every interval on whichever replica takes the
// "replay" lease first, until ctx ends. Each run lists from where the last
// finished run started (less an overlap), or from the oldest event it
// could not apply, so every event is listed by at least one run after it
// exists; a run that could not list everything leaves the mark where it
// was.
func (r *Replayer) RunEvery(ctx context.Context, interval time.Duration, mark *ReplayMark) {
	lease.Every(ctx, interval, func(ctx context.Context, ttl time.Duration) (bool, error) {
		return r.o.Store.Acquire(ctx, "replay", ttl)
	}, func(ctx context.Context) { r.background(ctx, mark) })
}

// background is one run of RunEvery on the replica holding the lease.
func (r *Replayer) background(ctx context.Context, mark *ReplayMark) {
	start := r.now()
	since := start.Add(-FirstReplayLookback)
	m, ok, err := mark.Get(ctx)
	if err != nil {
		r.log.Warn("webhook: background replay skipped", "err", err)
		return
	}
	if ok {
		since = m
	}
	if oldest := start.Add(-EventsRetention); since.Before(oldest) {
		since = oldest
	}
	rep, err := r.Run(ctx, since, false)
	if err != nil {
		r.log.Warn("webhook: background replay stopped; the next run lists from the same point",
			"since", since.UTC(), "pages", rep.Pages, "applied", rep.Results[resultProcessed], "err", err)
		return
	}
	next := start.Add(-replayOverlap)
	if o := rep.oldestUnapplied; !o.IsZero() && o.Before(next) {
		next = o
	}
	if err := mark.Set(ctx, next); err != nil {
		r.log.Warn("webhook: could not record the replay mark", "err", err)
	}
	level := r.log.Debug
	if rep.Results[resultProcessed] > 0 || rep.Failures() > 0 {
		level = r.log.Info
	}
	level("webhook: background replay done", "since", since.UTC(), "pages", rep.Pages, "listed", rep.Listed,
		"applied", rep.Results[resultProcessed], "failed", rep.Failures(), "busy", rep.Results[resultBusy],
		"took_ms", rep.Took.Milliseconds())
}
