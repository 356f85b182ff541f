package entitlements

import (
	"context"
	"fmt"
	"slices"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/tollgate-dev/tollgate/config"
	"github.com/tollgate-dev/tollgate/internal/testrig"
)

// The Store on a real 3-node Redis Cluster (redis.addrs): the conformance
// suite, customers spread over every node, and the change feed between two
// replicas. One cluster serves every subtest; each store has its own key
// prefix.
func TestStoreOnRedisCluster(t *testing.T) {
	c := testrig.StartRedisCluster(t, 3)
	var stores atomic.Int64
	open := func(t *testing.T) *RedisStore {
		return openStore(t, clusterConfig(c, fmt.Sprintf("tgc%d:", stores.Add(1))))
	}
	t.Run("Conformance", func(t *testing.T) { runConformance(t, open) })
	t.Run("CustomersOnEveryNode", func(t *testing.T) { testCustomersOnEveryNode(t, c, open(t)) })
	t.Run("ProbeNeverOvertakesAChange", func(t *testing.T) { testProbeNeverOvertakesAChange(t, open(t)) })
	t.Run("IndexFollowsRacingDeletes", func(t *testing.T) { testIndexFollowsRacingDeletes(t, open(t)) })
	t.Run("Grants", func(t *testing.T) { testGrantStore(t, open(t)) })
	t.Run("ChangeReachesOtherReplica", func(t *testing.T) {
		cfg := clusterConfig(c, fmt.Sprintf("tgc%d:", stores.Add(1)))
		testClusterChangeReachesOtherReplica(t, openStore(t, cfg), openStore(t, cfg))
	})
}

func clusterConfig(c *testrig.RedisCluster, prefix string) config.Redis {
	return config.Redis{Addrs: c.Addrs(), Prefix: prefix}
}

// Customers whose state lives on different nodes are written, indexed and
// read back together (the index and the change channel are global keys in
// slots of their own).
func testCustomersOnEveryNode(t *testing.T, c *testrig.RedisCluster, s *RedisStore) {
	ctx := context.Background()
	var ids []string
	for i := range 12 {
		id := fmt.Sprintf("cus_spread%d", i)
		ids = append(ids, id)
		put(t, s, &State{Customer: id, Source: id})
	}
	cc := c.Client()
	nodes := map[string]bool{}
	for _, id := range ids {
		n, err := cc.MasterForKey(ctx, s.stateKey(id))
		if err != nil {
			t.Fatal(err)
		}
		nodes[n.Options().Addr] = true
	}
	if len(nodes) != 3 {
		t.Fatalf("12 customers' states live on %d nodes; want all 3 (test setup)", len(nodes))
	}
	got, err := s.Customers(ctx)
	slices.Sort(got)
	want := slices.Clone(ids)
	slices.Sort(want)
	if err != nil || !slices.Equal(got, want) {
		t.Errorf("Customers = %v, %v; want %v", got, err, want)
	}
	states, err := s.GetMany(ctx, ids)
	if err != nil || len(states) != len(ids) || states["cus_spread7"].Source != "cus_spread7" {
		t.Errorf("GetMany = %d states, %v; want %d", len(states), err, len(ids))
	}
}

// Two replicas, each with its own cluster client: a change written through
// one is enforced by the other (pub/sub on Cluster), for customers on every
// node.
func testClusterChangeReachesOtherReplica(t *testing.T, a, b *RedisStore) {
	customers := []string{"cus_ra", "cus_rb", "cus_rc", "cus_rd", "cus_re", "cus_rf"}
	for _, c := range customers {
		put(t, a, &State{Customer: c, Subscriptions: []Subscription{sub("active", "price_pro")}})
	}
	clk := &clock{}
	clk.advance(-time.Until(t0.Add(-time.Hour))) // decisions happen inside the period
	ga, _ := newGate(t, a, nil, clk)
	gb, _ := newGate(t, b, nil, clk)
	runGate(t, ga)
	runGate(t, gb)
	for _, c := range customers {
		if dec := gb.Decide(context.Background(), c, reqSub, false); !dec.Allowed() {
			t.Fatalf("%s before the change: %+v", c, dec.Denial)
		}
	}
	start := time.Now()
	for _, c := range customers {
		put(t, a, &State{Customer: c, Subscriptions: []Subscription{sub("canceled", "price_pro")}})
	}
	for _, c := range customers {
		testrig.Eventually(t, "replica b to enforce the cancellation of "+c, func() bool {
			return !gb.Decide(context.Background(), c, reqSub, false).Allowed()
		})
	}
	t.Logf("changes enforced on the other replica after %v", time.Since(start))
	if n := gb.announced.Load(); n < uint64(len(customers)) {
		t.Errorf("replica b applied %d announcements; want at least %d (not the periodic refresh)", n, len(customers))
	}
}

// Probe's promise, many times over and for customers on every node: a
// change announced before the probe is delivered before its Sync. On
// Cluster this holds only if PUBLISH goes to the node the watcher
// subscribed on; relayed from another node it arrives after the PONG about
// two times in three.
func testProbeNeverOvertakesAChange(t *testing.T, s *RedisStore) {
	ctx := context.Background()
	w := s.Watch(ctx)
	defer w.Close()
	waitSubscribed(t, w)
	for i := range 100 {
		cus := fmt.Sprintf("cus_probe%d", i)
		put(t, s, &State{Customer: cus})
		if seen := probe(t, w); len(seen) != 1 || seen[0] != cus {
			t.Fatalf("round %d: before the sync saw %v; want [%s]", i, seen, cus)
		}
	}
}

// Writes and deletes of one customer racing each other: once they stop,
// the index (a global key, outside the state's transaction on Cluster)
// lists the customer exactly when its state exists.
func testIndexFollowsRacingDeletes(t *testing.T, s *RedisStore) {
	ctx := context.Background()
	for round := range 10 {
		cus := fmt.Sprintf("cus_race%d", round)
		var wg sync.WaitGroup
		for w := range 4 {
			wg.Go(func() {
				for i := range 10 {
					del := (w+i)%2 == 0
					err := s.Update(ctx, cus, func(*State) (*State, error) {
						if del {
							return nil, nil
						}
						return &State{Source: "race"}, nil
					})
					if err != nil {
						t.Error(err)
					}
				}
			})
		}
		wg.Wait()
		_, err := s.Get(ctx, cus)
		stored := err == nil
		indexed, ierr := s.rdb.SIsMember(ctx, s.indexKey(), cus).Result()
		if ierr != nil || stored != indexed {
			t.Errorf("%s: stored %v (%v), indexed %v (%v); want both the same", cus, stored, err, indexed, ierr)
		}
	}
}
