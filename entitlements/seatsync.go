package entitlements

import (
	"context"
	"crypto/rand"
	"errors"
	"fmt"
	"log/slog"
	"strconv"
	"sync/atomic"
	"time"

	"github.com/redis/go-redis/v9"

	"github.com/tollgate-dev/tollgate/config"
	"github.com/tollgate-dev/tollgate/internal/lease"
)

// SeatQuantities changes a subscription item's quantity in Stripe;
// *StripeQuantities is one.
type SeatQuantities interface {
	// SetQuantity sets item's quantity with Stripe's proration_behavior,
	// sending idempotencyKey, so that a retry is applied once.
	SetQuantity(ctx context.Context, item string, quantity int64, proration, idempotencyKey string) error
}

// SeatSyncOptions configure a SeatSync.
type SeatSyncOptions struct {
	Seats     *Seats // with SyncDelay set
	Store     Store  // where the seat item of a customer's subscription is read
	Plans     map[string]*config.Plan
	Stripe    SeatQuantities
	Proration string // billing.seat_proration
	Logger    *slog.Logger
}

// SeatSync makes the quantity of each customer's seat item follow its
// seats in use (billing.seats_sync). Every change of a customer's holders
// bumps its generation and marks it due SyncDelay later (a mark already
// there stays, so changes within one delay are billed as one update).
// Each round one replica (a Redis lease) takes the due customers; per
// customer a lock keeps any other run off it while it
//
//  1. takes the customer out of the due set,
//  2. reads the generation and the seats in use, and stops if that
//     generation was applied,
//  3. sets the seat item's quantity to max(seats in use, 1) with the
//     Idempotency-Key tg-seats-<customer>-<item>-<quantity>-<generation>,
//  4. records the generation as applied, or, when Stripe failed, puts the
//     customer back in the due set with a backoff (SyncDelay doubling up
//     to an hour).
//
// A change during 2-4 bumps the generation and marks the customer due
// again; a retry after a lost answer sends the same key, which Stripe
// applies once. A crash between 1 and 4 loses the due mark only: a sweep
// (every sweepEvery) re-marks every indexed customer whose generation is
// not applied.
type SeatSync struct {
	o     SeatSyncOptions
	plans *Plans
	st    seatStore
	delay time.Duration
	log   *slog.Logger
	now   func() time.Time

	// lastSweep is when the last sweep succeeded (unix nanoseconds; 0
	// before the first). Atomic: Round is safe for concurrent use.
	lastSweep atomic.Int64
}

// Bounds of the sync: customers per round, a customer's lock, the backoff
// of failed updates and the sweep's period.
const (
	seatSyncBatch = 100
	seatLockTTL   = time.Minute
	seatBackoff   = time.Hour
	sweepEvery    = time.Minute
)

// NewSeatSync returns a SeatSync; Run runs it.
func NewSeatSync(o SeatSyncOptions) *SeatSync {
	s := &SeatSync{o: o, plans: NewPlans(o.Plans), st: o.Seats.st, delay: o.Seats.delay, log: o.Logger, now: o.Seats.now}
	if s.log == nil {
		s.log = slog.Default()
	}
	return s
}

// Run syncs due customers until ctx ends, on one replica at a time.
func (s *SeatSync) Run(ctx context.Context) {
	tick := min(s.delay, time.Second)
	lease.Every(ctx, tick, lease.Redis(s.st.rdb, s.st.keys.Global("lease", "seats-sync")), s.Round)
}

// Round syncs the customers due now (and sweeps now and then).
func (s *SeatSync) Round(ctx context.Context) {
	if s.now().UnixNano()-s.lastSweep.Load() >= int64(sweepEvery) {
		if err := s.sweep(ctx); err != nil {
			s.log.WarnContext(ctx, "seats: sweep for lost quantity updates failed", "err", err)
		} else {
			s.lastSweep.Store(s.now().UnixNano())
		}
	}
	due, err := s.st.rdb.ZRangeByScore(ctx, s.st.dueKey(), &redis.ZRangeBy{Min: "-inf",
		Max: strconv.FormatInt(s.now().UnixMilli(), 10), Count: seatSyncBatch}).Result()
	if err != nil {
		s.log.WarnContext(ctx, "seats: reading the due quantity updates failed", "err", err)
		return
	}
	for _, customer := range due {
		if ctx.Err() != nil {
			return
		}
		if err := s.syncLocked(ctx, customer); err != nil {
			s.log.WarnContext(ctx, "seats: quantity update", "customer", customer, "err", err)
		}
	}
}

// unlockScript deletes a lock if it is still the caller's.
var unlockScript = redis.NewScript(`
if redis.call('GET', KEYS[1]) == ARGV[1] then return redis.call('DEL', KEYS[1]) end
return 0
`)

func (s *SeatSync) syncLocked(ctx context.Context, customer string) error {
	lock, token := s.st.keys.Customer(customer, "seats", "lock"), rand.Text()
	ok, err := s.st.rdb.SetNX(ctx, lock, token, seatLockTTL).Result()
	if err != nil || !ok {
		return err // another run has it
	}
	defer func() {
		uctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), 5*time.Second)
		defer cancel()
		_ = unlockScript.Run(uctx, s.st.rdb, []string{lock}, token).Err()
	}()
	if err := s.st.rdb.ZRem(ctx, s.st.dueKey(), customer).Err(); err != nil {
		return err
	}
	return s.sync(ctx, customer)
}

// seatSyncState is a customer's generation, what was applied, and its
// seats in use.
type seatSyncState struct {
	gen, applied string
	appliedQty   int64
	attempts     int
	used         int64
}

func (s *SeatSync) read(ctx context.Context, customer string) (seatSyncState, error) {
	pipe := s.st.rdb.Pipeline()
	h := pipe.HMGet(ctx, s.st.syncKey(customer), "gen", "applied_gen", "attempts", "applied_qty")
	n := pipe.ZCard(ctx, s.st.holdersKey(customer))
	if _, err := pipe.Exec(ctx); err != nil {
		return seatSyncState{}, err
	}
	v := h.Val()
	str := func(i int) string { s, _ := v[i].(string); return s }
	attempts, _ := strconv.Atoi(str(2))
	qty, _ := strconv.ParseInt(str(3), 10, 64)
	return seatSyncState{gen: str(0), applied: str(1), appliedQty: qty, attempts: attempts, used: n.Val()}, nil
}

func (s *SeatSync) sync(ctx context.Context, customer string) error {
	ss, err := s.read(ctx, customer)
	if err != nil {
		return s.retry(ctx, customer, ss, err)
	}
	if ss.gen == ss.applied {
		return nil
	}
	st, err := s.o.Store.Get(ctx, customer)
	if err != nil && !errors.Is(err, ErrNotFound) {
		return s.retry(ctx, customer, ss, err)
	}
	item, plan, ok := Item{}, "", false
	if st != nil {
		item, plan, ok = s.plans.SeatItem(st)
	}
	if !ok {
		// Nothing to bill (no running subscription to a seat plan): the
		// next subscription is bought with its own quantity.
		s.log.InfoContext(ctx, "seats: no seat subscription to update", "customer", customer, "seats", ss.used)
		return s.applied(ctx, customer, ss, 0)
	}
	qty := max(ss.used, 1)
	if qty == ss.appliedQty && qty == item.Quantity {
		return s.applied(ctx, customer, ss, qty) // Stripe has it (a seat came and went within the delay)
	}
	key := fmt.Sprintf("tg-seats-%s-%s-%d-%s", customer, item.ID, qty, ss.gen)
	if err := s.o.Stripe.SetQuantity(ctx, item.ID, qty, s.o.Proration, key); err != nil {
		return s.retry(ctx, customer, ss, fmt.Errorf("set quantity of %s to %d: %w", item.ID, qty, err))
	}
	s.log.InfoContext(ctx, "seats: subscription quantity updated", "customer", customer, "plan", plan,
		"item", item.ID, "quantity", qty, "was", item.Quantity, "proration", s.o.Proration)
	return s.applied(ctx, customer, ss, qty)
}

// applied records the generation as applied; even when the run is being
// cut short, as Stripe has it already.
func (s *SeatSync) applied(ctx context.Context, customer string, ss seatSyncState, qty int64) error {
	ctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), 5*time.Second)
	defer cancel()
	return s.st.rdb.HSet(ctx, s.st.syncKey(customer), "applied_gen", ss.gen, "applied_qty", qty, "attempts", 0).Err()
}

// retry puts the customer back in the due set after a failure, backing
// off: the update is never lost, and Stripe is not hammered.
func (s *SeatSync) retry(ctx context.Context, customer string, ss seatSyncState, cause error) error {
	ctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), 5*time.Second)
	defer cancel()
	wait := s.delay << min(ss.attempts, 20)
	wait = min(wait, seatBackoff)
	at := float64(s.now().Add(wait).UnixMilli())
	pipe := s.st.rdb.Pipeline()
	pipe.HIncrBy(ctx, s.st.syncKey(customer), "attempts", 1)
	pipe.ZAdd(ctx, s.st.dueKey(), redis.Z{Score: at, Member: customer})
	if _, err := pipe.Exec(ctx); err != nil {
		return errors.Join(cause, fmt.Errorf("reschedule (the sweep will): %w", err))
	}
	level := slog.LevelWarn
	if ss.attempts >= 4 {
		level = slog.LevelError
	}
	s.log.Log(ctx, level, "seats: quantity update failed; retrying later", "customer", customer,
		"attempts", ss.attempts+1, "retry_in", wait.String(), "err", cause)
	return nil
}

// sweep re-marks every indexed customer whose generation is not applied
// (a due mark lost to a crash or a failed write).
func (s *SeatSync) sweep(ctx context.Context) error {
	iter := s.st.rdb.SScan(ctx, s.st.indexKey(), 0, "", 500).Iterator()
	var batch []string
	flush := func() error {
		pipe := s.st.rdb.Pipeline()
		cmds := make([]*redis.SliceCmd, len(batch))
		for i, c := range batch {
			cmds[i] = pipe.HMGet(ctx, s.st.syncKey(c), "gen", "applied_gen")
		}
		if _, err := pipe.Exec(ctx); err != nil {
			return err
		}
		now := float64(s.now().UnixMilli())
		for i, cmd := range cmds {
			if v := cmd.Val(); len(v) == 2 && v[0] != v[1] {
				if err := s.st.rdb.ZAddNX(ctx, s.st.dueKey(), redis.Z{Score: now, Member: batch[i]}).Err(); err != nil {
					return err
				}
			}
		}
		batch = batch[:0]
		return nil
	}
	for iter.Next(ctx) {
		if batch = append(batch, iter.Val()); len(batch) == 500 {
			if err := flush(); err != nil {
				return err
			}
		}
	}
	if err := iter.Err(); err != nil {
		return err
	}
	if len(batch) == 0 {
		return nil
	}
	return flush()
}
