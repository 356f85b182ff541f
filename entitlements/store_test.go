package entitlements

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"sync"
	"testing"
	"time"

	"github.com/tollgate-dev/tollgate/config"
	"github.com/tollgate-dev/tollgate/internal/store"
	"github.com/tollgate-dev/tollgate/internal/testrig"
)

var quiet = slog.New(slog.NewTextHandler(io.Discard, nil))

// backends are the Store implementations every conformance test runs
// against: Redis on a real redis-server, and on the embedded store.
func backends(t *testing.T) map[string]func(t *testing.T) *RedisStore {
	return map[string]func(t *testing.T) *RedisStore{
		"redis-server": func(t *testing.T) *RedisStore {
			rd := testrig.StartRedis(t, testrig.WithoutPersistence())
			return openStore(t, config.Redis{URL: rd.URL(), Prefix: "tg:"})
		},
		"embedded": func(t *testing.T) *RedisStore {
			return openStore(t, config.Redis{Prefix: "tg:"})
		},
	}
}

func openStore(t *testing.T, c config.Redis) *RedisStore {
	t.Helper()
	c.DialTimeout, c.ReadTimeout, c.WriteTimeout = time.Second, time.Second, time.Second
	s, err := store.Open(c, quiet)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { s.Close() })
	return NewRedisStore(s)
}

func TestStoreConformance(t *testing.T) {
	for name, open := range backends(t) {
		t.Run(name, func(t *testing.T) { runConformance(t, open) })
	}
}

// runConformance runs every Store test, each on a fresh store from open
// (store_cluster_test.go runs it on Redis Cluster too).
func runConformance(t *testing.T, open func(t *testing.T) *RedisStore) {
	for _, tc := range []struct {
		name string
		fn   func(*testing.T, *RedisStore)
	}{
		{"GetMissing", testGetMissing},
		{"UpdateRoundTrip", testUpdateRoundTrip},
		{"UpdateNoChangeNoAnnouncement", testUpdateNoChange},
		{"ConcurrentUpdatesNeverLoseWrites", testConcurrentUpdates},
		{"DeleteAndIndex", testDeleteAndIndex},
		{"GetMany", testGetMany},
		{"UserLinks", testUserLinks},
		{"UserLinkFirstWins", testLinkFirstWins},
		{"WatchDeliversChangesBeforeSync", testWatch},
		{"AcquireIsExclusive", testAcquire},
	} {
		t.Run(tc.name, func(t *testing.T) { tc.fn(t, open(t)) })
	}
}

func testGetMissing(t *testing.T, s *RedisStore) {
	if _, err := s.Get(context.Background(), "cus_none"); !errors.Is(err, ErrNotFound) {
		t.Errorf("Get(missing) = %v; want ErrNotFound", err)
	}
}

func testUpdateRoundTrip(t *testing.T, s *RedisStore) {
	ctx := context.Background()
	want := &State{Subscriptions: []Subscription{sub("active", "price_pro")}, Features: []string{"x"}, Source: "test"}
	err := s.Update(ctx, "cus_a", func(cur *State) (*State, error) {
		if cur != nil {
			t.Errorf("cur = %+v; want nil for a new customer", cur)
		}
		return want, nil
	})
	if err != nil {
		t.Fatal(err)
	}
	got, err := s.Get(ctx, "cus_a")
	if err != nil {
		t.Fatal(err)
	}
	want.Customer = "cus_a"
	if !got.SameAs(want) || got.Source != "test" {
		t.Errorf("Get = %+v; want %+v", got, want)
	}
}

func testUpdateNoChange(t *testing.T, s *RedisStore) {
	ctx := context.Background()
	if err := s.Update(ctx, "cus_n", func(*State) (*State, error) { return &State{Source: "one"}, nil }); err != nil {
		t.Fatal(err)
	}
	w := s.Watch(ctx)
	defer w.Close()
	waitSubscribed(t, w)
	if err := s.Update(ctx, "cus_n", func(cur *State) (*State, error) { return cur, nil }); err != nil {
		t.Fatal(err)
	}
	if err := s.Update(ctx, "cus_other", func(*State) (*State, error) { return &State{}, nil }); err != nil {
		t.Fatal(err)
	}
	if got := nextCustomer(t, w); got != "cus_other" {
		t.Errorf("first announcement = %q; want cus_other (an unchanged update announces nothing)", got)
	}
}

// Two writers on one customer: WATCH/MULTI retries, so no increment is lost.
func testConcurrentUpdates(t *testing.T, s *RedisStore) {
	ctx := context.Background()
	const writers, each = 8, 10
	var wg sync.WaitGroup
	for w := 0; w < writers; w++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := 0; i < each; i++ {
				err := s.Update(ctx, "cus_c", func(cur *State) (*State, error) {
					n := &State{}
					if cur != nil {
						*n = *cur
					}
					n.PaymentFailures++
					return n, nil
				})
				if err != nil {
					t.Error(err)
				}
			}
		}()
	}
	wg.Wait()
	got, err := s.Get(ctx, "cus_c")
	if err != nil {
		t.Fatal(err)
	}
	if got.PaymentFailures != writers*each {
		t.Errorf("after %d concurrent increments the count is %d: writes interleaved", writers*each, got.PaymentFailures)
	}
}

func testDeleteAndIndex(t *testing.T, s *RedisStore) {
	ctx := context.Background()
	for _, c := range []string{"cus_1", "cus_2"} {
		if err := s.Update(ctx, c, func(*State) (*State, error) { return &State{}, nil }); err != nil {
			t.Fatal(err)
		}
	}
	if err := s.Update(ctx, "cus_1", func(*State) (*State, error) { return nil, nil }); err != nil {
		t.Fatal(err)
	}
	if _, err := s.Get(ctx, "cus_1"); !errors.Is(err, ErrNotFound) {
		t.Errorf("deleted customer Get = %v; want ErrNotFound", err)
	}
	got, err := s.Customers(ctx)
	if err != nil || len(got) != 1 || got[0] != "cus_2" {
		t.Errorf("Customers = %v, %v; want [cus_2]", got, err)
	}
}

func testGetMany(t *testing.T, s *RedisStore) {
	ctx := context.Background()
	var ids []string
	for i := 0; i < 5; i++ {
		id := fmt.Sprintf("cus_m%d", i)
		ids = append(ids, id)
		if i%2 == 0 {
			if err := s.Update(ctx, id, func(*State) (*State, error) { return &State{Source: id}, nil }); err != nil {
				t.Fatal(err)
			}
		}
	}
	got, err := s.GetMany(ctx, ids)
	if err != nil {
		t.Fatal(err)
	}
	if len(got) != 3 || got["cus_m2"] == nil || got["cus_m2"].Source != "cus_m2" || got["cus_m1"] != nil {
		t.Errorf("GetMany = %v; want cus_m0, cus_m2, cus_m4", got)
	}
}

func testUserLinks(t *testing.T, s *RedisStore) {
	ctx := context.Background()
	if _, ok, err := s.CustomerForUser(ctx, "user_1"); ok || err != nil {
		t.Errorf("unlinked user = %v, %v; want not found", ok, err)
	}
	if err := s.LinkUser(ctx, "user_1", "cus_9"); err != nil {
		t.Fatal(err)
	}
	if c, ok, err := s.CustomerForUser(ctx, "user_1"); c != "cus_9" || !ok || err != nil {
		t.Errorf("CustomerForUser = %q %v %v; want cus_9", c, ok, err)
	}
}

func testWatch(t *testing.T, s *RedisStore) {
	ctx := context.Background()
	w := s.Watch(ctx)
	defer w.Close()
	waitSubscribed(t, w)
	if err := s.Update(ctx, "cus_w", func(*State) (*State, error) { return &State{}, nil }); err != nil {
		t.Fatal(err)
	}
	if seen := probe(t, w); len(seen) != 1 || seen[0] != "cus_w" {
		t.Errorf("before sync saw %v; want [cus_w]", seen)
	}
}

// probe asks w for a sync and returns the customers announced before it.
func probe(t *testing.T, w Watcher) []string {
	t.Helper()
	ctx := context.Background()
	if err := w.Probe(ctx); err != nil {
		t.Fatal(err)
	}
	var seen []string
	for {
		ev, err := w.Next(ctx, 5*time.Second)
		if err != nil || ev.Timeout {
			t.Fatalf("Next = %+v, %v; want the change, then the sync", ev, err)
		}
		if ev.Sync {
			return seen
		}
		seen = append(seen, ev.Customer)
	}
}

func testAcquire(t *testing.T, s *RedisStore) {
	ctx := context.Background()
	a, err1 := s.Acquire(ctx, "job", time.Minute)
	b, err2 := s.Acquire(ctx, "job", time.Minute)
	if !a || b || err1 != nil || err2 != nil {
		t.Errorf("Acquire twice = %v, %v (%v %v); want true then false", a, b, err1, err2)
	}
}

func waitSubscribed(t *testing.T, w Watcher) {
	t.Helper()
	for {
		ev, err := w.Next(context.Background(), 5*time.Second)
		if err != nil || ev.Timeout {
			t.Fatalf("watch never subscribed: %+v %v", ev, err)
		}
		if ev.Subscribed {
			return
		}
	}
}

func nextCustomer(t *testing.T, w Watcher) string {
	t.Helper()
	for {
		ev, err := w.Next(context.Background(), 5*time.Second)
		if err != nil || ev.Timeout {
			t.Fatalf("no announcement: %+v %v", ev, err)
		}
		if ev.Customer != "" {
			return ev.Customer
		}
	}
}

func testLinkFirstWins(t *testing.T, s *RedisStore) {
	ctx := context.Background()
	if err := s.LinkUser(ctx, "user_f", "cus_first"); err != nil {
		t.Fatal(err)
	}
	if err := s.LinkUser(ctx, "user_f", "cus_first"); err != nil {
		t.Errorf("relinking to the same customer = %v; want nil", err)
	}
	if err := s.LinkUser(ctx, "user_f", "cus_attacker"); !errors.Is(err, ErrLinkConflict) {
		t.Errorf("linking to another customer = %v; want ErrLinkConflict", err)
	}
	if c, _, _ := s.CustomerForUser(ctx, "user_f"); c != "cus_first" {
		t.Errorf("link = %q; want the first one kept", c)
	}
}
