package entitlements

import (
	"context"
	"errors"
	"math/rand/v2"
	"strconv"
	"strings"
	"time"

	"github.com/redis/go-redis/v9"
)

// ErrPrimarySwitched ends a change feed whose store moved to another
// primary (a Sentinel failover): the subscription is on the old one.
var ErrPrimarySwitched = errors.New("entitlements: the store's primary changed; resubscribing")

// Watch implements Store with Redis pub/sub.
//
// Probe publishes a marker of this watcher's own on the channel, through
// the same client and path as every announcement, and its arrival is the
// Sync event: a message published before it cannot arrive after it, so
// every change announced before the probe has been delivered. Issue 11: a
// PING on the subscriber connection proved only that connection alive, and
// after a Sentinel failover the old primary, still running, kept answering
// it while every announcement went to the new primary. A marker published
// to the new primary never comes back on a feed left on the old one, so
// the feed never claims to be current there; and on Sentinel the feed is
// also closed as soon as a dial reaches another primary (the store's
// PrimarySwitched), so that it resubscribes within moments of the switch.
func (r *RedisStore) Watch(ctx context.Context) Watcher {
	var switched <-chan struct{}
	if r.switched != nil {
		switched = r.switched() // before subscribing: a switch after this is seen
	}
	wctx, cancel := context.WithCancel(ctx)
	ps := r.rdb.Subscribe(wctx, r.channel())
	// A blocked receive does not watch ctx; closing the connection ends it.
	stop := context.AfterFunc(wctx, func() { ps.Close() })
	w := &redisWatcher{ps: ps, stop: stop, cancel: cancel, store: r, switched: switched,
		marker: syncMarker + strconv.FormatUint(rand.Uint64(), 36)}
	if switched != nil {
		go func() {
			select {
			case <-switched:
				cancel()
			case <-wctx.Done():
			}
		}()
	}
	return w
}

// syncMarker starts a Probe's message; customer ids never hold a NUL.
const syncMarker = "\x00sync:"

type redisWatcher struct {
	ps       *redis.PubSub
	stop     func() bool
	cancel   context.CancelFunc
	store    *RedisStore
	switched <-chan struct{} // nil: the primary never changes
	marker   string          // this watcher's probe message
}

func (w *redisWatcher) Next(ctx context.Context, timeout time.Duration) (WatchEvent, error) {
	deadline := time.Now().Add(timeout)
	for {
		msg, err := w.ps.ReceiveTimeout(ctx, time.Until(deadline))
		if err != nil {
			var ne interface{ Timeout() bool }
			switch {
			case w.primarySwitched():
				return WatchEvent{}, ErrPrimarySwitched
			case errors.As(err, &ne) && ne.Timeout():
				return WatchEvent{Timeout: true}, nil
			}
			return WatchEvent{}, err
		}
		switch m := msg.(type) {
		case *redis.Message:
			if strings.HasPrefix(m.Payload, syncMarker) {
				if m.Payload == w.marker {
					return WatchEvent{Sync: true}, nil
				}
				continue // another watcher's probe
			}
			return WatchEvent{Customer: m.Payload}, nil
		case *redis.Subscription:
			return WatchEvent{Subscribed: m.Kind == "subscribe"}, nil
		}
		return WatchEvent{Timeout: true}, nil // a PONG or other reply proves nothing
	}
}

func (w *redisWatcher) primarySwitched() bool {
	select {
	case <-w.switched: // never, when nil
		return true
	default:
		return false
	}
}

func (w *redisWatcher) Probe(ctx context.Context) error { return w.store.publish(ctx, w.marker) }

func (w *redisWatcher) Close() error {
	w.stop()
	w.cancel()
	return w.ps.Close()
}
