package testrig

import (
	"context"
	"errors"
	"syscall"
	"testing"
	"time"
)

// One Sentinel deployment: a write reaches the replica, a planned failover
// and a killed primary each promote the other node, which keeps the data;
// then proof that every process ended with the test that started it.
func TestRedisSentinel(t *testing.T) {
	var pids []int
	t.Run("sentinel", func(t *testing.T) {
		start := time.Now()
		s := StartRedisSentinel(t)
		t.Logf("primary, replica and 3 sentinels ready in %v", time.Since(start).Round(time.Millisecond))
		for _, n := range append(append([]*Redis{}, s.data...), s.sentinels...) {
			pids = append(pids, n.proc.cmd.Process.Pid)
		}
		ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
		defer cancel()
		c := s.Client()
		if err := c.Set(ctx, "k", "before", 0).Err(); err != nil {
			t.Fatalf("SET through the sentinels: %v", err)
		}
		first := s.Primary()
		if first != s.data[0] || s.Replica() != s.data[1] {
			t.Fatalf("primary %s, replica %s; want the nodes started as such", first.Addr(), s.Replica().Addr())
		}

		start = time.Now()
		promoted := s.Failover()
		t.Logf("SENTINEL FAILOVER: %s promoted in %v", promoted.Addr(), time.Since(start).Round(time.Millisecond))
		if promoted == first {
			t.Fatalf("after SENTINEL FAILOVER the primary is still %s", first.Addr())
		}
		readBack(t, ctx, promoted, "before")

		// The old primary becomes a replica of the new one only after
		// Sentinel's own delay; wait for that before killing the new one.
		if err := pollCtx(ctx, func() error { return s.replicaInSync(ctx, first.Addr()) }); err != nil {
			t.Fatalf("the old primary did not become a replica: %v", err)
		}
		if err := c.Set(ctx, "k", "after", 0).Err(); err != nil {
			t.Fatalf("SET after the failover: %v", err)
		}
		if err := pollCtx(ctx, func() error { return readValue(ctx, first, "after") }); err != nil {
			t.Fatalf("the write did not reach the new replica: %v", err)
		}
		start = time.Now()
		killed, promoted := s.KillPrimary()
		t.Logf("KillPrimary: %s down, %s promoted in %v", killed.Addr(), promoted.Addr(), time.Since(start).Round(time.Millisecond))
		if killed == promoted || promoted != first {
			t.Fatalf("killed %s, promoted %s; want %s promoted", killed.Addr(), promoted.Addr(), first.Addr())
		}
		readBack(t, ctx, promoted, "after")
	})
	if len(pids) == 0 {
		t.Skip("no sentinel deployment was started")
	}
	for _, pid := range pids {
		if err := syscall.Kill(pid, 0); !errors.Is(err, syscall.ESRCH) {
			t.Errorf("signal 0 to pid %d after cleanup: %v; want ESRCH", pid, err)
		}
	}
}

func readBack(t *testing.T, ctx context.Context, n *Redis, want string) {
	t.Helper()
	if err := readValue(ctx, n, want); err != nil {
		t.Error(err)
	}
}

func readValue(ctx context.Context, n *Redis, want string) error {
	got, err := n.Client().Get(ctx, "k").Result()
	if err != nil || got != want {
		return errors.Join(err, errors.New("k on "+n.Addr()+" = "+got+"; want "+want))
	}
	return nil
}
