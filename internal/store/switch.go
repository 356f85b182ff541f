package store

import "sync"

// PrimarySwitched returns a channel that is closed when the store's primary
// next changes, or nil (never) when it cannot: only Sentinel moves the
// primary to another address. The change is seen when a dial reaches
// another server than the dial before it; go-redis drops its pooled
// connections to the old primary when Sentinel announces the switch, so the
// next command dials the new one. Issue 11: the change feed's subscription
// is not among the connections go-redis drops, and stays on the old
// primary, which keeps running for several seconds after a planned
// failover; entitlements resubscribes when this fires.
func (s *Store) PrimarySwitched() <-chan struct{} {
	if s.switches == nil {
		return nil
	}
	return s.switches.next()
}

// switchWatch tracks the server dials reach.
type switchWatch struct {
	mu   sync.Mutex
	addr string        // the server the last dial reached
	ch   chan struct{} // closed at the next change
}

func newSwitchWatch() *switchWatch { return &switchWatch{ch: make(chan struct{})} }

// reached records a dial to addr; a server other than the last one closes
// the current channel.
func (w *switchWatch) reached(addr string) {
	w.mu.Lock()
	defer w.mu.Unlock()
	if w.addr != "" && addr != w.addr {
		close(w.ch)
		w.ch = make(chan struct{})
	}
	w.addr = addr
}

func (w *switchWatch) next() <-chan struct{} {
	w.mu.Lock()
	defer w.mu.Unlock()
	return w.ch
}
