package testrig

import (
	"context"
	"fmt"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"
)

// Sentinel timings of the rig. A primary that stops answering is
// subjectively down after sentinelDownAfter, and a failover then takes one
// or two seconds more (election, promotion, announcement).
const (
	sentinelMasterName   = "tollgate"
	sentinelQuorum       = 2
	sentinelDownAfter    = 1000 * time.Millisecond
	sentinelFailoverTime = 10 * time.Second // Sentinel's failover-timeout
	sentinelReadyTimeout = 30 * time.Second // start-up until every sentinel sees the others
	failoverTimeout      = 30 * time.Second // Failover and Kill until the switch is announced
)

// sentinelMonitor is what a Sentinel process watches.
type sentinelMonitor struct {
	name     string
	primary  string // "127.0.0.1:port"
	authPass string // the data nodes' password, "" for none
}

// RedisSentinel is a Redis Sentinel deployment of real redis-server
// processes owned by one test: a primary, one replica and three Sentinels
// (quorum 2) on free loopback ports, killed at cleanup.
//
// Both data nodes run like StartRedis's (AOF with appendfsync always); the
// replica starts with --replicaof the primary. Sentinels run
// `redis-server sentinel.conf --sentinel` (the redis-server binary is also
// Sentinel; Debian's redis-sentinel package is the same binary) with
// down-after-milliseconds 1000, so a killed primary is replaced within a few
// seconds. StartRedisSentinel returns once the replica is in sync and every
// Sentinel knows the replica and the two other Sentinels, so that a failover
// can be elected at once.
//
// Replication is asynchronous, as in any Sentinel deployment: a write the
// primary acknowledged in the instant before it died, not yet sent to the
// replica, is lost with it.
//
// There is no embedded fallback: without redis-server on PATH the test is
// skipped, or fails when TOLLGATE_TEST_REQUIRE_REDIS=1.
type RedisSentinel struct {
	tb        testing.TB
	password  string   // of every process; "" for none
	data      []*Redis // [0] the first primary, [1] the first replica
	sentinels []*Redis
}

// SentinelOption configures StartRedisSentinel.
type SentinelOption func(*RedisSentinel)

// WithPassword protects every data node and every Sentinel with password
// (requirepass; masterauth on the replica; auth-pass in the Sentinels), as
// charts such as Bitnami's do by default.
func WithPassword(password string) SentinelOption {
	return func(s *RedisSentinel) { s.password = password }
}

// StartRedisSentinel starts a Sentinel deployment for the test.
func StartRedisSentinel(tb testing.TB, opts ...SentinelOption) *RedisSentinel {
	tb.Helper()
	bin, err := exec.LookPath("redis-server")
	if err != nil {
		missingRedisServer(tb, "sentinel", err)
	}
	s := &RedisSentinel{tb: tb}
	for _, o := range opts {
		o(s)
	}
	primary := startRedisServer(tb, bin, redisConfig{persistence: true, password: s.password})
	replica := startRedisServer(tb, bin, redisConfig{persistence: true, replicaOf: primary.Addr(), password: s.password})
	s.data = []*Redis{primary, replica}
	ctx, cancel := context.WithTimeout(context.Background(), sentinelReadyTimeout)
	defer cancel()
	if err := pollCtx(ctx, func() error { return s.replicaInSync(ctx, replica.Addr()) }); err != nil {
		tb.Fatalf("testrig: replica %s of %s: %v%s", replica.Addr(), primary.Addr(), err, s.logs())
	}
	mon := &sentinelMonitor{name: sentinelMasterName, primary: primary.Addr(), authPass: s.password}
	for range 3 {
		s.sentinels = append(s.sentinels, startRedisServer(tb, bin, redisConfig{sentinel: mon, password: s.password}))
	}
	if err := pollCtx(ctx, func() error { return s.settled(ctx) }); err != nil {
		tb.Fatalf("testrig: sentinels did not settle: %v%s", err, s.logs())
	}
	return s
}

// sentinelConf writes the Sentinel's config file (Sentinel insists on a
// writable one, which it rewrites with what it learns) and returns its path.
func (r *Redis) sentinelConf() string {
	m := r.cfg.sentinel
	host, port, _ := strings.Cut(m.primary, ":")
	path := filepath.Join(r.dir, "sentinel.conf")
	if _, err := os.Stat(path); err == nil {
		return path // a restart keeps what the Sentinel learnt
	}
	conf := fmt.Sprintf(`sentinel monitor %[1]s %[2]s %[3]s %[4]d
sentinel down-after-milliseconds %[1]s %[5]d
sentinel failover-timeout %[1]s %[6]d
sentinel parallel-syncs %[1]s 1
`, m.name, host, port, sentinelQuorum, sentinelDownAfter.Milliseconds(), sentinelFailoverTime.Milliseconds())
	if m.authPass != "" {
		conf += fmt.Sprintf("sentinel auth-pass %s %s\n", m.name, m.authPass)
	}
	if err := os.WriteFile(path, []byte(conf), 0o600); err != nil {
		r.tb.Fatalf("testrig: write %s: %v", path, err)
	}
	return path
}

// MasterName is the monitored master's name, as redis.master_name takes it.
func (s *RedisSentinel) MasterName() string { return sentinelMasterName }

// Addrs are the Sentinels' "127.0.0.1:port", as redis.addrs takes them.
func (s *RedisSentinel) Addrs() []string {
	out := make([]string, len(s.sentinels))
	for i, n := range s.sentinels {
		out[i] = n.Addr()
	}
	return out
}

// Client returns a new Sentinel-aware client of the current primary,
// closed at cleanup.
func (s *RedisSentinel) Client() *redis.Client {
	c := redis.NewFailoverClient(&redis.FailoverOptions{MasterName: sentinelMasterName, SentinelAddrs: s.Addrs(),
		Password: s.password, SentinelPassword: s.password})
	s.tb.Cleanup(func() { _ = c.Close() })
	return c
}

// Primary is the data node every Sentinel currently names as the primary.
func (s *RedisSentinel) Primary() *Redis {
	s.tb.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	addr, err := s.agreedPrimary(ctx)
	if err != nil {
		s.tb.Fatalf("testrig: %v", err)
	}
	return s.node(addr)
}

// Replica is the data node that is not the current primary.
func (s *RedisSentinel) Replica() *Redis {
	s.tb.Helper()
	p := s.Primary()
	for _, n := range s.data {
		if n != p {
			return n
		}
	}
	panic("not reached")
}

// Failover asks the Sentinels for a failover (SENTINEL FAILOVER, as an
// operator's planned switch) and returns the new primary once every
// Sentinel names it and it reports role:master. The old primary keeps
// running; Sentinel turns it into a replica only several seconds later.
func (s *RedisSentinel) Failover() *Redis {
	s.tb.Helper()
	old := s.Primary()
	c := s.sentinelClient(s.sentinels[0])
	defer c.Close()
	ctx, cancel := context.WithTimeout(context.Background(), failoverTimeout)
	defer cancel()
	if err := pollCtx(ctx, func() error { return c.Failover(ctx, sentinelMasterName).Err() }); err != nil {
		s.tb.Fatalf("testrig: SENTINEL FAILOVER: %v%s", err, s.logs())
	}
	return s.awaitNewPrimary(ctx, old)
}

// KillPrimary SIGKILLs the current primary and returns the replica the
// Sentinels promoted in its place, once every Sentinel names it and it
// reports role:master. The killed node stays down (Restart brings it back;
// Sentinel then makes it a replica of the new primary).
func (s *RedisSentinel) KillPrimary() (killed, promoted *Redis) {
	s.tb.Helper()
	old := s.Primary()
	old.Kill()
	ctx, cancel := context.WithTimeout(context.Background(), failoverTimeout)
	defer cancel()
	return old, s.awaitNewPrimary(ctx, old)
}

func (s *RedisSentinel) awaitNewPrimary(ctx context.Context, old *Redis) *Redis {
	s.tb.Helper()
	var addr string
	err := pollCtx(ctx, func() error {
		a, err := s.agreedPrimary(ctx)
		if err != nil {
			return err
		}
		if a == old.Addr() {
			return fmt.Errorf("the sentinels still name %s", a)
		}
		if err := s.isPrimary(ctx, a); err != nil {
			return err
		}
		addr = a
		return nil
	})
	if err != nil {
		s.tb.Fatalf("testrig: no new primary in place of %s: %v%s", old.Addr(), err, s.logs())
	}
	return s.node(addr)
}

// agreedPrimary is the primary every Sentinel names, or an error while
// they disagree or one does not answer.
func (s *RedisSentinel) agreedPrimary(ctx context.Context) (string, error) {
	var agreed string
	for _, n := range s.sentinels {
		c := s.sentinelClient(n)
		hp, err := c.GetMasterAddrByName(ctx, sentinelMasterName).Result()
		c.Close()
		if err != nil {
			return "", fmt.Errorf("sentinel %s: %w", n.Addr(), err)
		}
		addr := net.JoinHostPort(hp[0], hp[1])
		if agreed != "" && addr != agreed {
			return "", fmt.Errorf("sentinels disagree: %s and %s", agreed, addr)
		}
		agreed = addr
	}
	return agreed, nil
}

// settled reports whether every Sentinel knows the primary, the replica
// and the two other Sentinels, and sees nothing down.
func (s *RedisSentinel) settled(ctx context.Context) error {
	for _, n := range s.sentinels {
		c := s.sentinelClient(n)
		m, err := c.Master(ctx, sentinelMasterName).Result()
		c.Close()
		if err != nil {
			return fmt.Errorf("sentinel %s: %w", n.Addr(), err)
		}
		want := map[string]string{"num-slaves": "1", "num-other-sentinels": strconv.Itoa(len(s.sentinels) - 1), "flags": "master"}
		for k, v := range want {
			if m[k] != v {
				return fmt.Errorf("sentinel %s: %s is %q, want %q", n.Addr(), k, m[k], v)
			}
		}
	}
	return nil
}

// replicaInSync reports whether the node at addr is a replica whose link
// to its primary is up.
func (s *RedisSentinel) replicaInSync(ctx context.Context, addr string) error {
	info, err := s.nodeInfo(ctx, addr)
	if err != nil {
		return err
	}
	if !strings.Contains(info, "role:slave\r\n") || !strings.Contains(info, "master_link_status:up\r\n") {
		return fmt.Errorf("%s is not an in-sync replica yet", addr)
	}
	return nil
}

// isPrimary reports whether the node at addr says it is a primary.
func (s *RedisSentinel) isPrimary(ctx context.Context, addr string) error {
	info, err := s.nodeInfo(ctx, addr)
	if err != nil {
		return err
	}
	if !strings.Contains(info, "role:master\r\n") {
		return fmt.Errorf("%s does not report role:master yet", addr)
	}
	return nil
}

func (s *RedisSentinel) nodeInfo(ctx context.Context, addr string) (string, error) {
	c := redis.NewClient(&redis.Options{Addr: addr, MaxRetries: -1, Password: s.password})
	defer c.Close()
	info, err := c.Info(ctx, "replication").Result()
	if err != nil {
		return "", fmt.Errorf("INFO replication on %s: %w", addr, err)
	}
	return info, nil
}

// Password is every process's password ("" for none).
func (s *RedisSentinel) Password() string { return s.password }

func (s *RedisSentinel) sentinelClient(n *Redis) *redis.SentinelClient {
	return redis.NewSentinelClient(&redis.Options{Addr: n.Addr(), Password: s.password})
}

// node is the data node listening on addr.
func (s *RedisSentinel) node(addr string) *Redis {
	for _, n := range s.data {
		if n.Addr() == addr {
			return n
		}
	}
	s.tb.Fatalf("testrig: %s is not a data node of this deployment", addr)
	return nil
}

// logs is the end of every process's log, for a failure message.
func (s *RedisSentinel) logs() string {
	return nodeLogs(append(append([]*Redis{}, s.data...), s.sentinels...), 3000)
}
