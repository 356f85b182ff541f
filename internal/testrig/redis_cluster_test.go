package testrig

import (
	"context"
	"errors"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"
)

// One cluster for every check, then proof that its processes ended with the
// test that started them.
func TestRedisCluster(t *testing.T) {
	var pids []int
	t.Run("cluster", func(t *testing.T) {
		start := time.Now()
		c := StartRedisCluster(t, 3)
		t.Logf("3-node cluster ready in %v", time.Since(start).Round(time.Millisecond))
		for _, n := range c.nodes {
			pids = append(pids, n.proc.cmd.Process.Pid)
		}
		t.Run("KeysSpreadAcrossNodes", func(t *testing.T) { testClusterSpreadsKeys(t, c) })
		t.Run("CrossSlotRefused", func(t *testing.T) { testClusterRefusesCrossSlot(t, c) })
	})
	if len(pids) == 0 {
		t.Skip("no cluster was started")
	}
	for _, pid := range pids {
		if err := syscall.Kill(pid, 0); !errors.Is(err, syscall.ESRCH) {
			t.Errorf("signal 0 to cluster node pid %d after cleanup: %v; want ESRCH", pid, err)
		}
	}
}

// {a} and {b} hash to slots owned by different nodes: each key is stored
// on its own node only, and a node asked for the other's key redirects.
func testClusterSpreadsKeys(t *testing.T, c *RedisCluster) {
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	if got := len(c.Addrs()); got != 3 {
		t.Fatalf("Addrs() has %d entries; want 3", got)
	}
	cc := c.Client()
	owner := map[string]string{}
	for _, key := range []string{"{a}x", "{b}x"} {
		if err := cc.Set(ctx, key, key, 0).Err(); err != nil {
			t.Fatalf("SET %s: %v", key, err)
		}
		node, err := cc.MasterForKey(ctx, key)
		if err != nil {
			t.Fatalf("MasterForKey(%s): %v", key, err)
		}
		owner[key] = node.Options().Addr
	}
	if owner["{a}x"] == owner["{b}x"] {
		t.Fatalf("{a}x and {b}x both live on %s; want different nodes", owner["{a}x"])
	}
	for _, key := range []string{"{a}x", "{b}x"} {
		for _, addr := range c.Addrs() {
			direct := redis.NewClient(&redis.Options{Addr: addr, MaxRetries: -1})
			got, err := direct.Get(ctx, key).Result()
			direct.Close()
			switch {
			case addr == owner[key] && (err != nil || got != key):
				t.Errorf("GET %s on its owner %s = %q, %v; want %q", key, addr, got, err, key)
			case addr != owner[key] && (err == nil || !strings.HasPrefix(err.Error(), "MOVED")):
				t.Errorf("GET %s on %s (not its owner) = %q, %v; want a MOVED redirect", key, addr, got, err)
			}
		}
	}
}

// Multi-key work across slots fails with CROSSSLOT, as on any real cluster;
// the same work inside one hash tag succeeds.
func testClusterRefusesCrossSlot(t *testing.T, c *RedisCluster) {
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	cc := c.Client()
	script := redis.NewScript(`redis.call('SET', KEYS[1], '1'); redis.call('SET', KEYS[2], '2'); return 1`)
	for _, tc := range []struct {
		name      string
		k1, k2    string
		wantCross bool
	}{
		{"two customers", "{a}x", "{b}x", true},
		{"one hash tag", "{a}x", "{a}y", false},
	} {
		t.Run(tc.name, func(t *testing.T) {
			for _, op := range []struct {
				name string
				run  func() error
			}{
				{"MSET", func() error { return cc.Do(ctx, "MSET", tc.k1, "1", tc.k2, "2").Err() }},
				{"SUNIONSTORE", func() error { return cc.Do(ctx, "SUNIONSTORE", tc.k1+":u", tc.k1+":s", tc.k2+":s").Err() }},
				{"EVAL", func() error { return script.Run(ctx, cc, []string{tc.k1 + ":e", tc.k2 + ":e"}).Err() }},
			} {
				err := op.run()
				crossSlot := err != nil && strings.HasPrefix(err.Error(), "CROSSSLOT")
				if crossSlot != tc.wantCross || (!tc.wantCross && err != nil) {
					t.Errorf("%s %s %s = %v; want CROSSSLOT %v", op.name, tc.k1, tc.k2, err, tc.wantCross)
				}
			}
		})
	}
}

// Without redis-server there is no cluster: the test is skipped, or fails
// with the install hint when Redis is required.
func TestStartRedisClusterWithoutRedisServer(t *testing.T) {
	for _, tc := range []struct {
		name, require string
		wantFatal     bool
	}{
		{"skipped", "", false},
		{"required", "1", true},
	} {
		t.Run(tc.name, func(t *testing.T) {
			t.Setenv("PATH", t.TempDir())
			t.Setenv(EnvRequireRedis, tc.require)
			f := runFake(t, func(tb testing.TB) { StartRedisCluster(tb, 3) })
			msg := f.skip
			if tc.wantFatal {
				msg = f.fatal
			}
			if msg == "" || !strings.Contains(msg, "apt-get install redis-server") {
				t.Errorf("fatal %q, skip %q; want the install hint in the %s message", f.fatal, f.skip, tc.name)
			}
		})
	}
}
