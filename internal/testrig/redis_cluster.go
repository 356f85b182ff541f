package testrig

import (
	"context"
	"errors"
	"fmt"
	"os/exec"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"
)

// Redis Cluster limits. A node refuses to turn its state ok for 2 s after
// it started (CLUSTER_WRITABLE_DELAY in cluster.c), so a cluster is never
// ready much sooner than that.
const (
	clusterSlots        = 16384
	clusterReadyTimeout = 30 * time.Second
	clusterMinMajor     = 7 // --cluster-port, CLUSTER MEET with a bus port, ADDSLOTSRANGE
)

// RedisCluster is a Redis Cluster of real redis-server processes owned by
// one test: every node a master, the 16384 slots split evenly between them,
// no replicas, no persistence.
type RedisCluster struct {
	tb    testing.TB
	nodes []*Redis
}

// StartRedisCluster starts n redis-server processes in cluster mode on
// free loopback ports, assigns the slots evenly across them, joins them with
// CLUSTER MEET, and returns once every node reports cluster_state:ok and a
// cluster client can write and read a key in every node's slots. The nodes
// are killed at cleanup.
//
// Each node runs like StartRedis's (same binding, log and data directory,
// same start-up retries) with --cluster-enabled yes, its own bus port
// (--cluster-port, so ports near the top of the range work) and
// --cluster-node-timeout 2000, without AOF or RDB. There is no embedded
// fallback: without redis-server 7.0 or newer on PATH the test is skipped,
// or fails when TOLLGATE_TEST_REQUIRE_REDIS=1.
//
// Start-up takes a little over 2 s, most of it Redis's own delay before a
// fresh node accepts writes: share one cluster between the tests of a
// package (subtests, distinct key prefixes).
func StartRedisCluster(tb testing.TB, n int) *RedisCluster {
	tb.Helper()
	if n < 1 || n > clusterSlots {
		tb.Fatalf("testrig: a redis cluster of %d nodes", n)
	}
	bin, err := exec.LookPath("redis-server")
	if err != nil {
		missingRedisServer(tb, "a cluster", err)
	}
	if err := checkClusterVersion(bin); err != nil {
		missingRedisServer(tb, "a cluster", err)
	}
	c := &RedisCluster{tb: tb}
	for range n {
		c.nodes = append(c.nodes, startRedisServer(tb, bin, redisConfig{cluster: true}))
	}
	ctx, cancel := context.WithTimeout(context.Background(), clusterReadyTimeout)
	defer cancel()
	if err := c.form(ctx); err != nil {
		tb.Fatalf("testrig: form a redis cluster of %d nodes: %v%s", n, err, c.logs())
	}
	return c
}

// missingRedisServer handles a missing or too old redis-server for a
// topology (what: "a cluster"): a failure when EnvRequireRedis is set, a
// skip otherwise (StartRedis would fall back to miniredis, which has no
// cluster or sentinel mode).
func missingRedisServer(tb testing.TB, what string, why error) {
	tb.Helper()
	if required(EnvRequireRedis) {
		tb.Fatalf("testrig: no redis-server for %s (%v) and %s=1; %s", what, why, EnvRequireRedis, redisInstallHint)
	}
	tb.Skipf("testrig: no redis-server for %s (%v); miniredis has none; %s", what, why, redisInstallHint)
}

var redisVersionRe = regexp.MustCompile(`v=(\d+)\.`)

// checkClusterVersion refuses a redis-server older than 7.0.
func checkClusterVersion(bin string) error {
	out, err := exec.Command(bin, "--version").Output()
	if err != nil {
		return fmt.Errorf("%s --version: %w", bin, err)
	}
	m := redisVersionRe.FindSubmatch(out)
	if m == nil {
		return fmt.Errorf("%s --version printed %q", bin, out)
	}
	if major, _ := strconv.Atoi(string(m[1])); major < clusterMinMajor {
		return fmt.Errorf("%s is %s; a cluster needs %d.0 or newer", bin, strings.TrimSpace(string(out)), clusterMinMajor)
	}
	return nil
}

// Addrs are the nodes' "127.0.0.1:port", as config's redis.addrs takes them.
func (c *RedisCluster) Addrs() []string {
	out := make([]string, len(c.nodes))
	for i, n := range c.nodes {
		out[i] = n.Addr()
	}
	return out
}

// Client returns a new cluster client, closed at cleanup. Each call is a
// client of its own, as each replica of tollgate has.
func (c *RedisCluster) Client() *redis.ClusterClient {
	cc := redis.NewClusterClient(&redis.ClusterOptions{Addrs: c.Addrs()})
	c.tb.Cleanup(func() { _ = cc.Close() })
	return cc
}

// slotRange is node i's share of the slots, first and last.
func slotRange(i, n int) (int, int) {
	return i * clusterSlots / n, (i+1)*clusterSlots/n - 1
}

// ownerOf is the node whose slotRange holds slot.
func ownerOf(slot, n int) int {
	for i := range n {
		if _, hi := slotRange(i, n); slot <= hi {
			return i
		}
	}
	return n - 1
}

// form assigns the slots, introduces the nodes to each other and waits
// until the cluster serves every slot.
func (c *RedisCluster) form(ctx context.Context) error {
	admins := make([]*redis.Client, len(c.nodes))
	for i, n := range c.nodes {
		admins[i] = redis.NewClient(&redis.Options{Addr: n.Addr()})
		defer admins[i].Close()
	}
	for i, a := range admins {
		lo, hi := slotRange(i, len(admins))
		if err := a.ClusterAddSlotsRange(ctx, lo, hi).Err(); err != nil {
			return fmt.Errorf("CLUSTER ADDSLOTSRANGE %d %d on %s: %w", lo, hi, c.nodes[i].Addr(), err)
		}
	}
	// Every pair meets directly: nodes that only hear of each other by
	// gossip may take several seconds to connect. The bus port is not
	// port+10000, so MEET names it.
	for i, a := range admins {
		for _, n := range c.nodes[i+1:] {
			if err := a.Do(ctx, "CLUSTER", "MEET", "127.0.0.1", n.port, n.busPort).Err(); err != nil {
				return fmt.Errorf("CLUSTER MEET %s from %s: %w", n.Addr(), c.nodes[i].Addr(), err)
			}
		}
	}
	if err := pollCtx(ctx, func() error { return c.converged(ctx, admins) }); err != nil {
		return err
	}
	return c.servesEverySlot(ctx, admins[0])
}

// converged reports whether every node knows every other, is connected to
// it over the bus (so PUBLISH reaches it) and calls the cluster ok.
func (c *RedisCluster) converged(ctx context.Context, admins []*redis.Client) error {
	for i, a := range admins {
		info, err := a.ClusterInfo(ctx).Result()
		if err != nil {
			return fmt.Errorf("CLUSTER INFO on %s: %w", c.nodes[i].Addr(), err)
		}
		for _, want := range []string{"cluster_state:ok", "cluster_known_nodes:" + strconv.Itoa(len(admins)),
			"cluster_slots_assigned:" + strconv.Itoa(clusterSlots)} {
			if !strings.Contains(info, want+"\r\n") {
				return fmt.Errorf("node %s: no %q yet in CLUSTER INFO", c.nodes[i].Addr(), want)
			}
		}
		nodes, err := a.ClusterNodes(ctx).Result()
		if err != nil {
			return fmt.Errorf("CLUSTER NODES on %s: %w", c.nodes[i].Addr(), err)
		}
		for _, line := range strings.Split(strings.TrimSpace(nodes), "\n") {
			if !strings.Contains(line, " connected") || strings.Contains(line, "handshake") || strings.Contains(line, "fail") {
				return fmt.Errorf("node %s sees %q", c.nodes[i].Addr(), line)
			}
		}
	}
	return nil
}

// servesEverySlot writes and reads, through a cluster client, one key in
// each node's share of the slots.
func (c *RedisCluster) servesEverySlot(ctx context.Context, admin *redis.Client) error {
	keys := make([]string, len(c.nodes))
	found := 0
	for i := 0; found < len(keys); i++ {
		key := "testrig:ready:" + strconv.Itoa(i)
		slot, err := admin.ClusterKeySlot(ctx, key).Result()
		if err != nil {
			return fmt.Errorf("CLUSTER KEYSLOT: %w", err)
		}
		node := ownerOf(int(slot), len(keys))
		if keys[node] == "" {
			keys[node] = key
			found++
		}
	}
	cc := redis.NewClusterClient(&redis.ClusterOptions{Addrs: c.Addrs()})
	defer cc.Close()
	return pollCtx(ctx, func() error {
		for _, k := range keys {
			if err := cc.Set(ctx, k, k, time.Minute).Err(); err != nil {
				cc.ReloadState(ctx)
				return fmt.Errorf("SET %s through a cluster client: %w", k, err)
			}
			if got, err := cc.Get(ctx, k).Result(); err != nil || got != k {
				return fmt.Errorf("GET %s through a cluster client = %q, %v", k, got, err)
			}
		}
		return nil
	})
}

// pollCtx is poll with ctx's deadline; a ctx already ended stops it.
func pollCtx(ctx context.Context, cond func() error) error {
	deadline, ok := ctx.Deadline()
	if !ok {
		return errors.New("testrig: pollCtx needs a deadline")
	}
	return poll(time.Until(deadline), func() error {
		if err := ctx.Err(); err != nil {
			return permanent(err)
		}
		return cond()
	})
}

// logs is every node's log, for a failure message.
func (c *RedisCluster) logs() string { return nodeLogs(c.nodes, 0) }

// nodeLogs is the log of every node (its last tail bytes; 0 for all), for
// a failure message.
func nodeLogs(nodes []*Redis, tail int) string {
	var b strings.Builder
	for _, n := range nodes {
		log := readFrom(filepath.Join(n.dir, "redis.log"), 0)
		if tail > 0 && len(log) > tail {
			log = log[len(log)-tail:]
		}
		fmt.Fprintf(&b, "\n--- redis-server %s log ---\n%s", n.Addr(), log)
	}
	return b.String()
}
