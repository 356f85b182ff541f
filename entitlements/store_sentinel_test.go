package entitlements

import (
	"context"
	"fmt"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/tollgate-dev/tollgate/config"
	"github.com/tollgate-dev/tollgate/internal/testrig"
)

// The Store on a real Sentinel deployment (redis.addrs are the sentinels,
// redis.master_name the master): the conformance suite, then a planned
// failover while two replicas watch. One deployment serves every subtest;
// each store has its own key prefix.
func TestStoreOnRedisSentinel(t *testing.T) {
	s := testrig.StartRedisSentinel(t)
	var stores atomic.Int64
	cfg := func() config.Redis {
		return config.Redis{Addrs: s.Addrs(), MasterName: s.MasterName(), Prefix: fmt.Sprintf("tgs%d:", stores.Add(1))}
	}
	t.Run("Conformance", func(t *testing.T) {
		runConformance(t, func(t *testing.T) *RedisStore { return openStore(t, cfg()) })
	})
	t.Run("FeedFollowsTheNewPrimary", func(t *testing.T) {
		c := cfg()
		testFeedFollowsTheNewPrimary(t, s, openStore(t, c), openStore(t, c))
	})
}

// Issue 11: after SENTINEL FAILOVER the old primary keeps running, as a
// primary, until Sentinel turns it into a replica several seconds later.
// A change feed still subscribed there hears none of the changes written
// to the new primary, while its probes (PING) are still answered. Replica b
// must see a change written through replica a after the switch, and must
// see it before Sentinel's reconfiguration of the old primary would have
// cut its subscription anyway.
func testFeedFollowsTheNewPrimary(t *testing.T, s *testrig.RedisSentinel, a, b *RedisStore) {
	put(t, a, &State{Customer: "cus_fo", Subscriptions: []Subscription{sub("active", "price_pro")}})
	clk := &clock{}
	clk.advance(-time.Until(t0.Add(-time.Hour)))
	ga, _ := newGate(t, a, nil, clk)
	gb, _ := newGate(t, b, nil, clk)
	gb.cfg.RefreshInterval = 0 // only the feed can tell b
	runGate(t, ga)
	runGate(t, gb)
	if !gb.Decide(context.Background(), "cus_fo", reqSub, false).Allowed() {
		t.Fatal("denied before the failover")
	}
	old := s.Primary()
	promoted := s.Failover()
	ctx := context.Background()
	canceled := &State{Customer: "cus_fo", Subscriptions: []Subscription{sub("canceled", "price_pro")}}
	// Until a's client hears of the switch its writes may still go to the
	// old primary, where they are lost: write until the new one holds it.
	testrig.WaitFor(t, 20*time.Second, func() error {
		if err := a.Update(ctx, "cus_fo", func(*State) (*State, error) { return canceled, nil }); err != nil {
			return err
		}
		raw, err := promoted.Client().Get(ctx, a.stateKey("cus_fo")).Result()
		if err != nil || !strings.Contains(raw, `"canceled"`) {
			return fmt.Errorf("the new primary holds %q, %v", raw, err)
		}
		return nil
	})
	written := time.Now()
	testrig.Eventually(t, "replica b to enforce the change", func() bool {
		return !gb.Decide(ctx, "cus_fo", reqSub, false).Allowed()
	})
	took := time.Since(written)
	role, err := old.Client().Do(ctx, "ROLE").Slice()
	if err != nil || len(role) == 0 || role[0] != "master" {
		t.Errorf("replica b enforced the change only after the old primary was reconfigured (ROLE %v, %v): "+
			"its feed stayed on the old primary", role, err)
	}
	t.Logf("change written to the new primary enforced by the other replica after %v", took.Round(time.Millisecond))
}
