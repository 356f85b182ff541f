package entitlements

import (
	"context"
	"errors"
	"fmt"
	"sync"
	"sync/atomic"
	"testing"

	"github.com/tollgate-dev/tollgate/internal/testrig"
)

// Seats on a real 3-node Redis Cluster: each customer's seat keys share
// its slot (no CROSSSLOT in the scripts), customers on every node race for
// their last seats on two replicas, and a release reaches the other
// replica over the cluster's pub/sub.
func TestSeatsOnRedisCluster(t *testing.T) {
	c := testrig.StartRedisCluster(t, 3)
	cfg := clusterConfig(c, "tgs:")
	a, b := newSeatReplicaOn(t, cfg, SeatOptions{SyncDelay: seatDelay}), newSeatReplicaOn(t, cfg, SeatOptions{SyncDelay: seatDelay})
	ctx := context.Background()
	nodes := map[string]bool{}
	for i := range 6 {
		customer := fmt.Sprintf("cus_cl%d", i)
		n, err := c.Client().MasterForKey(ctx, a.st.holdersKey(customer))
		if err != nil {
			t.Fatal(err)
		}
		nodes[n.Options().Addr] = true
		var got atomic.Int64
		var wg sync.WaitGroup
		for u := range 10 {
			r := []seatReplica{a, b}[u%2]
			wg.Go(func() {
				err := r.Take(ctx, customer, fmt.Sprintf("u%d", u), 2)
				var ex *SeatLimitExceeded
				switch {
				case err == nil:
					got.Add(1)
				case !errors.As(err, &ex):
					t.Errorf("%s: Take: %v", customer, err)
				}
			})
		}
		wg.Wait()
		if got.Load() != 2 {
			t.Errorf("%s: %d seats taken of 2", customer, got.Load())
		}
		holders, used, err := b.List(ctx, customer)
		if err != nil || used != 2 || len(holders) != 2 {
			t.Fatalf("%s: List = %v, %d, %v", customer, holders, used, err)
		}
		if ok, _, err := a.Release(ctx, customer, holders[0].User); !ok || err != nil {
			t.Fatalf("%s: Release = %v, %v", customer, ok, err)
		}
		if err := a.Take(ctx, customer, "newcomer", 2); err != nil {
			t.Fatalf("%s: newcomer after a release: %v", customer, err)
		}
		released := holders[0].User
		testrig.Eventually(t, "replica b to refuse the released holder", func() bool {
			var ex *SeatLimitExceeded
			return errors.As(b.Take(ctx, customer, released, 2), &ex)
		})
	}
	if len(nodes) != 3 {
		t.Errorf("customers on %d nodes; want 3", len(nodes))
	}
	if n, err := c.Client().ZCard(ctx, a.st.dueKey()).Result(); err != nil || n != 6 {
		t.Errorf("quantity updates due = %d, %v; want 6", n, err)
	}
}
