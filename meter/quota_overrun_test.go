package meter

import (
	"context"
	"errors"
	"fmt"
	"testing"
	"time"

	"github.com/tollgate-dev/tollgate/internal/testrig"
)

// Quota bypass through shadow mode: a request forwarded although its
// quota refused it (Overrun) is counted in the ledger, so another replica
// refuses with every unit served counted; its share is not evicted while
// the request is open, even when shares are evicted as soon as they are
// idle, because evicting it would drop what it then serves.
func TestQuotaOverrunReachesTheLedger(t *testing.T) {
	r := newQuotaRig(t, false)
	a := r.replica(func(o *QuotaOptions) { o.SyncInterval, o.MaxShares = 20*time.Millisecond, 0 })
	b := r.replica(nil)
	c := r.claim(3, 1)
	if n := serveAll(t, a, c, 1); n != 3 {
		t.Fatalf("%d admitted on a quota of 3", n)
	}
	s, err := a.Overrun(c)
	if err != nil {
		t.Fatal(err)
	}
	// Another customer's share, idle at once: its eviction shows that
	// eviction rounds ran while the overrun was open.
	other := c
	other.Customer = "cus_other"
	o, err := a.Reserve(context.Background(), other)
	if err != nil {
		t.Fatal(err)
	}
	o.Settle(1, 0)
	testrig.WaitFor(t, 10*time.Second, func() error {
		a.mu.RLock()
		defer a.mu.RUnlock()
		if _, ok := a.shares[o.key]; ok {
			return errors.New("the idle share is not evicted yet")
		}
		if _, ok := a.shares[s.key]; !ok {
			return errors.New("the share of an open overrun was evicted")
		}
		return nil
	})
	s.SettleOverrun(4)
	testrig.WaitFor(t, 10*time.Second, func() error {
		if used, _ := r.ledger(); used != 7 {
			return fmt.Errorf("ledger used %d; want 7 (3 reserved + 4 overrun)", used)
		}
		return nil
	})
	_, err = b.Reserve(context.Background(), c)
	var ex *QuotaExceeded
	if !errors.As(err, &ex) || ex.Used != 7 {
		t.Errorf("another replica's Reserve = %v; want QuotaExceeded with 7 used", err)
	}
}
