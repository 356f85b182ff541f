package entitlements

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/redis/go-redis/v9"
	"golang.org/x/sync/singleflight"

	"github.com/tollgate-dev/tollgate/internal/store"
)

// SeatLimitExceeded is Take's answer for a user beyond the seat limit.
type SeatLimitExceeded struct {
	Limit, Used int64
}

func (e *SeatLimitExceeded) Error() string {
	return fmt.Sprintf("entitlements: seat limit reached: %d of %d seats in use", e.Used, e.Limit)
}

// seatRecheck is how long a replica admits a seat holder from memory
// before it asks Redis again (which also records the holder as seen): the
// resolution of "last seen", and the bound on how long a holder released
// while this replica missed the announcement keeps being admitted.
const seatRecheck = 30 * time.Second

// seatTimeout bounds the round trip of a take.
const seatTimeout = 5 * time.Second

// SeatOptions configure Seats.
type SeatOptions struct {
	Redis redis.UniversalClient
	Keys  store.Keys
	// MaxStaleness is how long a known holder is still admitted from
	// memory while Redis cannot be asked (gating.max_staleness).
	MaxStaleness time.Duration
	// MaxCached bounds the (customer, user) holders kept in memory.
	MaxCached int
	// SyncDelay, when positive, marks every change of a customer's holders
	// for a quantity update at most that long after (billing.seats_sync).
	SyncDelay time.Duration
	Logger    *slog.Logger
	Now       func() time.Time // nil: time.Now
}

// Seats enforces seat limits exactly across replicas.
//
// The holders of a customer are one Redis sorted set; a user takes a seat
// in one atomic script that admits a holder always and a newcomer only
// while the holders are fewer than the limit, so two users racing for the
// last seat on any replicas get exactly one seat between them. Each
// replica remembers the holders it has seen, so a holder's request costs
// no round trip (for seatRecheck); a newcomer costs one. A release is
// announced on a channel, and every replica forgets the holder at once;
// after the channel reconnects, a replica forgets every holder it knew,
// since it may have missed releases meanwhile.
type Seats struct {
	st       seatStore
	maxStale time.Duration
	max      int
	delay    time.Duration
	log      *slog.Logger
	now      func() time.Time
	base     time.Time
	takes    singleflight.Group

	mu   sync.RWMutex
	held map[seatKey]time.Duration // when Redis last confirmed the holder (monotonic)
	// epoch counts releases and resets seen; a round trip that overlapped
	// one does not fill the memory (it may be about a released holder).
	epoch   atomic.Uint64
	indexed sync.Map // customers this process put in the seats index
	live    atomic.Bool
}

type seatKey struct{ customer, user string }

// NewSeats returns Seats; Run keeps its memory in line with releases made
// on other replicas.
func NewSeats(o SeatOptions) *Seats {
	s := &Seats{st: seatStore{rdb: o.Redis, keys: o.Keys}, maxStale: o.MaxStaleness, max: o.MaxCached,
		delay: o.SyncDelay, log: o.Logger, now: o.Now, base: time.Now(), held: map[seatKey]time.Duration{}}
	if s.log == nil {
		s.log = slog.Default()
	}
	if s.now == nil {
		s.now = time.Now
	}
	if s.max <= 0 {
		s.max = 100000
	}
	return s
}

func (s *Seats) mono() time.Duration { return time.Since(s.base) }

// Take makes sure user holds one of customer's seats: a holder always
// does; a newcomer takes a free one, or gets a *SeatLimitExceeded. limit
// below 0 tracks seats without a limit. Another error means Redis could
// not be asked about a user this replica does not know as a holder.
func (s *Seats) Take(ctx context.Context, customer, user string, limit int64) error {
	k := seatKey{customer, user}
	now := s.mono()
	s.mu.RLock()
	at, known := s.held[k]
	s.mu.RUnlock()
	if known && now-at < seatRecheck {
		return nil
	}
	epoch := s.epoch.Load()
	v, err, _ := s.takes.Do(customer+"\x00"+user, func() (any, error) {
		// Shared by every request of this user waiting here: not cut
		// short when the first one goes away.
		tctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), seatTimeout)
		defer cancel()
		return s.takeNow(tctx, customer, user, limit)
	})
	if err != nil {
		if known && now-at < s.maxStale {
			return nil // a holder, and Redis cannot say otherwise: as the gate does, trust memory a while
		}
		return err
	}
	if a := v.(seatAnswer); !a.ok {
		if known {
			s.forget(k) // released meanwhile, and the seats are taken
		}
		return &SeatLimitExceeded{Limit: limit, Used: a.used}
	}
	s.remember(k, now, epoch)
	return nil
}

func (s *Seats) takeNow(ctx context.Context, customer, user string, limit int64) (seatAnswer, error) {
	if err := s.index(ctx, customer); err != nil {
		return seatAnswer{}, err
	}
	a, err := s.st.take(ctx, customer, user, limit, s.now())
	if err != nil {
		return a, fmt.Errorf("entitlements: take a seat of %s: %w", customer, err)
	}
	if a.gen > 0 {
		s.due(ctx, customer)
	}
	return a, nil
}

// Release frees user's seat of customer on every replica; it reports
// whether the user held one, and how many seats are in use now.
func (s *Seats) Release(ctx context.Context, customer, user string) (bool, int64, error) {
	if err := s.index(ctx, customer); err != nil {
		return false, 0, err
	}
	a, err := s.st.release(ctx, customer, user)
	s.forget(seatKey{customer, user})
	if err != nil {
		return a.ok, a.used, fmt.Errorf("entitlements: release a seat of %s: %w", customer, err)
	}
	if a.gen > 0 {
		s.due(ctx, customer)
	}
	return a.ok, a.used, nil
}

// MaxListed bounds the holders List returns.
const MaxListed = 1000

// List returns the customer's holders (at most MaxListed, the longest
// standing first) and how many seats are in use.
func (s *Seats) List(ctx context.Context, customer string) ([]SeatHolder, int64, error) {
	return s.st.list(ctx, customer, MaxListed)
}

// InUse counts the seats in use of each customer that has any.
func (s *Seats) InUse(ctx context.Context, customers []string) (map[string]int64, error) {
	return s.st.inUse(ctx, customers)
}

// index puts a customer into the seats index before its holders first
// change here, so that the quantity sync's sweep can always find it.
func (s *Seats) index(ctx context.Context, customer string) error {
	if s.delay <= 0 {
		return nil
	}
	if _, ok := s.indexed.Load(customer); ok {
		return nil
	}
	if err := s.st.rdb.SAdd(ctx, s.st.indexKey(), customer).Err(); err != nil {
		return fmt.Errorf("entitlements: index seats of %s: %w", customer, err)
	}
	s.indexed.Store(customer, true)
	return nil
}

// due marks a customer's quantity as due for an update, if it is not
// already: changes within one delay are billed as one. A mark lost here
// (Redis failed just now) is put back by the sync's sweep.
func (s *Seats) due(ctx context.Context, customer string) {
	if s.delay <= 0 {
		return
	}
	at := float64(s.now().Add(s.delay).UnixMilli())
	if err := s.st.rdb.ZAddNX(ctx, s.st.dueKey(), redis.Z{Score: at, Member: customer}).Err(); err != nil {
		s.log.WarnContext(ctx, "seats: could not mark the quantity update (the sweep will)", "customer", customer, "err", err)
	}
}

func (s *Seats) remember(k seatKey, at time.Duration, epoch uint64) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.epoch.Load() != epoch {
		return // a release came in meanwhile: ask again next time
	}
	if _, ok := s.held[k]; !ok && len(s.held) >= s.max {
		n := s.max/16 + 1
		for old := range s.held { // map order: an arbitrary sixteenth goes
			delete(s.held, old)
			if n--; n == 0 {
				break
			}
		}
	}
	s.held[k] = at
}

func (s *Seats) forget(k seatKey) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.epoch.Add(1)
	delete(s.held, k)
}

func (s *Seats) forgetAll() {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.epoch.Add(1)
	clear(s.held)
}

// Run applies the releases announced by every replica until ctx ends.
func (s *Seats) Run(ctx context.Context) {
	backoff := 100 * time.Millisecond
	for ctx.Err() == nil {
		err := s.listen(ctx)
		if ctx.Err() != nil {
			return
		}
		s.log.Warn("seats: release feed lost; holders known here are admitted from memory meanwhile", "err", err)
		t := time.NewTimer(backoff)
		select {
		case <-ctx.Done():
			t.Stop()
			return
		case <-t.C:
		}
		backoff = min(backoff*2, 5*time.Second)
	}
}

// Live reports whether the release feed is up.
func (s *Seats) Live() bool { return s.live.Load() }

func (s *Seats) listen(ctx context.Context) error {
	ps := s.st.rdb.Subscribe(ctx, s.st.channel())
	defer ps.Close()
	defer s.live.Store(false)
	stop := context.AfterFunc(ctx, func() { ps.Close() })
	defer stop()
	for {
		msg, err := ps.ReceiveTimeout(ctx, 10*time.Second)
		if err != nil {
			var ne interface{ Timeout() bool }
			if errors.As(err, &ne) && ne.Timeout() {
				if err := ps.Ping(ctx); err != nil {
					return err
				}
				continue
			}
			return err
		}
		switch m := msg.(type) {
		case *redis.Subscription:
			// (Re)subscribed: releases made while the feed was down were
			// missed, so every holder is asked about again.
			s.forgetAll()
			s.live.Store(true)
		case *redis.Message:
			if customer, user, ok := strings.Cut(m.Payload, "\x00"); ok {
				s.forget(seatKey{customer, user})
			}
		}
	}
}
