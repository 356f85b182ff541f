package testrig

import (
	"bufio"
	"errors"
	"fmt"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/alicebob/miniredis/v2"
	"github.com/redis/go-redis/v9"
)

// Timeouts for the Redis lifecycle. They bound waits; a healthy local
// redis-server answers PING within a few milliseconds.
const (
	redisReadyTimeout   = 10 * time.Second // start-up until PING answers
	redisStopTimeout    = 10 * time.Second // SIGTERM until exit, then SIGKILL
	redisRestartTimeout = 5 * time.Second  // retrying a port that is still busy
	redisStartAttempts  = 5                // fresh ports tried by StartRedis
)

// errAddrInUse marks a start that lost the race for its port.
var errAddrInUse = errors.New("address already in use")

// RedisOption configures StartRedis.
type RedisOption func(*redisConfig)

type redisConfig struct {
	persistence bool // AOF with appendfsync always
	cluster     bool // a Redis Cluster node (StartRedisCluster)
	// replicaOf is the primary's "127.0.0.1:port" for a replica
	// (StartRedisSentinel); empty for a primary.
	replicaOf string
	// sentinel, when set, makes the process a Sentinel monitoring it
	// (StartRedisSentinel).
	sentinel *sentinelMonitor
	// password, when set, is the server's requirepass (and, on a replica,
	// its masterauth).
	password string
}

func newRedisConfig(opts []RedisOption) redisConfig {
	cfg := redisConfig{persistence: true}
	for _, o := range opts {
		o(&cfg)
	}
	return cfg
}

// WithoutPersistence turns AOF off: Kill or Stop followed by Restart then
// starts with an empty data set, like a cache-only deployment.
func WithoutPersistence() RedisOption {
	return func(c *redisConfig) { c.persistence = false }
}

// Redis is a Redis server owned by one test: a redis-server child process or,
// when that binary is absent, an embedded miniredis. Either way it listens on
// a fixed loopback port for its whole life, so clients reconnect to the same
// address after Restart.
type Redis struct {
	tb   testing.TB
	cfg  redisConfig
	addr string

	mu sync.Mutex // guards the fields below; held across Stop/Kill/Restart

	// redis-server
	bin     string
	dir     string
	port    int
	busPort int      // cluster bus port, with cfg.cluster
	proc    *process // nil while stopped

	// embedded fallback
	mini        *miniredis.Miniredis
	miniRunning bool
}

// StartRedis starts a Redis server for the test and stops it at cleanup.
//
// By default it runs redis-server --port P --bind 127.0.0.1 --save ""
// --dir <tb.TempDir()> --appendonly yes --appendfsync always, so a Kill or
// Stop followed by Restart keeps every acknowledged write, as a real
// deployment with AOF does. If redis-server is not on PATH the test fails
// when TOLLGATE_TEST_REQUIRE_REDIS=1, and otherwise uses an in-process
// miniredis (see Embedded).
func StartRedis(tb testing.TB, opts ...RedisOption) *Redis {
	tb.Helper()
	cfg := newRedisConfig(opts)
	bin, err := exec.LookPath("redis-server")
	if err != nil {
		if required(EnvRequireRedis) {
			tb.Fatalf("testrig: redis-server not found (%v) and %s=1; %s", err, EnvRequireRedis, redisInstallHint)
		}
		tb.Logf("testrig: redis-server not found (%v); using embedded miniredis instead (%s)", err, redisInstallHint)
		return startEmbedded(tb, cfg)
	}
	return startRedisServer(tb, bin, cfg)
}

func startRedisServer(tb testing.TB, bin string, cfg redisConfig) *Redis {
	tb.Helper()
	r := &Redis{tb: tb, cfg: cfg, bin: bin, dir: tb.TempDir()}
	tb.Cleanup(r.Kill)
	r.mu.Lock()
	defer r.mu.Unlock()
	var err error
	for range redisStartAttempts {
		if r.port, err = freePort(); err != nil {
			tb.Fatalf("testrig: pick a port for redis-server: %v", err)
		}
		r.addr = loopbackAddr(r.port)
		if cfg.cluster {
			// Port+10000, the default bus port, may not exist or be free.
			if r.busPort, err = freePort(); err != nil {
				tb.Fatalf("testrig: pick a cluster bus port: %v", err)
			}
		}
		if err = r.launchLocked(); !errors.Is(err, errAddrInUse) {
			break
		}
	}
	if err != nil {
		tb.Fatalf("testrig: %v", err)
	}
	return r
}

// Addr is the server's "127.0.0.1:port".
func (r *Redis) Addr() string { return r.addr }

// URL is the server's redis:// URL, database 0.
func (r *Redis) URL() string { return "redis://" + r.addr + "/0" }

// Embedded reports whether this is the in-process miniredis fallback rather
// than a redis-server process.
func (r *Redis) Embedded() bool { return r.mini != nil }

// Client returns a new go-redis client for the server, closed at cleanup.
func (r *Redis) Client() *redis.Client {
	c := redis.NewClient(&redis.Options{Addr: r.addr, Password: r.cfg.password})
	r.tb.Cleanup(func() { _ = c.Close() })
	return c
}

// Stop shuts the server down gracefully (SIGTERM, which makes redis-server
// flush and close like SHUTDOWN) and waits for it to exit. Stopping a stopped
// server does nothing.
func (r *Redis) Stop() {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.stopLocked()
}

func (r *Redis) stopLocked() {
	if r.mini != nil {
		r.closeEmbeddedLocked()
		return
	}
	if r.proc == nil {
		return
	}
	if !r.proc.signalAndWait(syscall.SIGTERM, redisStopTimeout) {
		r.tb.Logf("testrig: redis-server on %s ignored SIGTERM for %v; killed it", r.addr, redisStopTimeout)
	}
	r.proc = nil
}

// Kill ends the server abruptly (SIGKILL) and waits for it to exit, as a
// crash or an OOM kill would. Killing a stopped server does nothing.
func (r *Redis) Kill() {
	r.mu.Lock()
	defer r.mu.Unlock()
	if r.mini != nil {
		r.closeEmbeddedLocked()
		return
	}
	if r.proc == nil {
		return
	}
	r.proc.kill()
	r.proc = nil
}

// Restart starts the server again on the same port and data directory and
// waits until it answers PING; a running server is stopped gracefully first.
// A port still held for a moment by the old process is retried briefly.
func (r *Redis) Restart() {
	r.tb.Helper()
	r.mu.Lock()
	defer r.mu.Unlock()
	r.stopLocked()
	if r.mini != nil {
		r.restartEmbeddedLocked()
		return
	}
	err := poll(redisRestartTimeout, func() error {
		err := r.launchLocked()
		if err != nil && !errors.Is(err, errAddrInUse) {
			return permanent(err)
		}
		return err
	})
	if err != nil {
		r.tb.Fatalf("testrig: restart: %v", err)
	}
}

// launchLocked starts redis-server on r.port and waits for PING. On failure
// the process is gone and the error carries the new part of the server log.
func (r *Redis) launchLocked() error {
	logPath := filepath.Join(r.dir, "redis.log")
	logStart := fileSize(logPath)
	p, err := startProcess(r.bin, r.args(logPath), nil)
	if err != nil {
		return err
	}
	err = poll(redisReadyTimeout, func() error {
		if p.exited() {
			return permanent(fmt.Errorf("redis-server exited: %v", p.err))
		}
		return pingRedis(r.addr, r.cfg.password)
	})
	if err == nil {
		r.proc = p
		return nil
	}
	p.kill()
	log := readFrom(logPath, logStart)
	if strings.Contains(log, "Address already in use") {
		return fmt.Errorf("redis-server on %s: %w", r.addr, errAddrInUse)
	}
	return fmt.Errorf("redis-server on %s not ready: %v\n--- redis log ---\n%s", r.addr, err, log)
}

func (r *Redis) args(logPath string) []string {
	var args []string
	if r.cfg.sentinel != nil {
		args = []string{r.sentinelConf(), "--sentinel"}
	}
	args = append(args,
		"--port", strconv.Itoa(r.port),
		"--bind", "127.0.0.1",
		"--save", "",
		"--dir", r.dir,
		"--logfile", logPath,
		"--daemonize", "no",
	)
	if r.cfg.password != "" {
		args = append(args, "--requirepass", r.cfg.password)
	}
	if r.cfg.sentinel != nil {
		return args
	}
	if host, port, ok := strings.Cut(r.cfg.replicaOf, ":"); ok {
		args = append(args, "--replicaof", host, port)
		if r.cfg.password != "" {
			args = append(args, "--masterauth", r.cfg.password)
		}
	}
	if r.cfg.cluster {
		args = append(args,
			"--cluster-enabled", "yes",
			"--cluster-port", strconv.Itoa(r.busPort),
			"--cluster-config-file", filepath.Join(r.dir, "nodes-"+strconv.Itoa(r.port)+".conf"),
			"--cluster-node-timeout", "2000")
	}
	if r.cfg.persistence {
		return append(args, "--appendonly", "yes", "--appendfsync", "always")
	}
	return append(args, "--appendonly", "no")
}

// pingRedis sends an inline PING (after AUTH, with a password) and
// expects +PONG: a server still loading its AOF answers -LOADING and is not
// ready yet.
func pingRedis(addr, password string) error {
	conn, err := net.DialTimeout("tcp", addr, 250*time.Millisecond)
	if err != nil {
		return err
	}
	defer conn.Close()
	if err := conn.SetDeadline(time.Now().Add(time.Second)); err != nil {
		return err
	}
	req, want := "PING\r\n", []string{"+PONG"}
	if password != "" {
		req, want = "AUTH "+password+"\r\n"+req, []string{"+OK", "+PONG"}
	}
	if _, err := conn.Write([]byte(req)); err != nil {
		return err
	}
	rd := bufio.NewReader(conn)
	for _, w := range want {
		line, err := rd.ReadString('\n')
		if err != nil {
			return err
		}
		if line = strings.TrimSpace(line); line != w {
			return fmt.Errorf("PING answered %q", line)
		}
	}
	return nil
}

func fileSize(path string) int64 {
	fi, err := os.Stat(path)
	if err != nil {
		return 0
	}
	return fi.Size()
}

// readFrom returns the content of path from offset on (a log's new part).
func readFrom(path string, offset int64) string {
	b, err := os.ReadFile(path)
	if err != nil {
		return fmt.Sprintf("(no log: %v)", err)
	}
	if offset > int64(len(b)) {
		offset = 0
	}
	return string(b[offset:])
}
