package testrig

import (
	"context"
	"errors"
	"os/exec"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"
)

// redisBackends runs a test against redis-server and the miniredis fallback,
// so both keep the same contract.
var redisBackends = []struct {
	name  string
	start func(testing.TB, ...RedisOption) *Redis
}{
	{"redis-server", func(tb testing.TB, opts ...RedisOption) *Redis {
		tb.Helper()
		bin, err := exec.LookPath("redis-server")
		if err != nil {
			if required(EnvRequireRedis) {
				tb.Fatalf("redis-server not found: %v; %s", err, redisInstallHint)
			}
			tb.Skipf("redis-server not found: %v; %s", err, redisInstallHint)
		}
		return startRedisServer(tb, bin, newRedisConfig(opts))
	}},
	{"miniredis", func(tb testing.TB, opts ...RedisOption) *Redis {
		tb.Helper()
		return startEmbedded(tb, newRedisConfig(opts))
	}},
}

func TestRedisRestartKeepsOrDropsData(t *testing.T) {
	cases := []struct {
		name     string
		opts     []RedisOption
		down     func(*Redis)
		wantKept bool
	}{
		{"aof/kill", nil, (*Redis).Kill, true},
		{"aof/stop", nil, (*Redis).Stop, true},
		{"aof/restart-while-running", nil, func(*Redis) {}, true},
		{"no-persistence/kill", []RedisOption{WithoutPersistence()}, (*Redis).Kill, false},
		{"no-persistence/stop", []RedisOption{WithoutPersistence()}, (*Redis).Stop, false},
	}
	for _, b := range redisBackends {
		for _, tc := range cases {
			t.Run(b.name+"/"+tc.name, func(t *testing.T) {
				r := b.start(t, tc.opts...)
				c := r.Client()
				ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
				defer cancel()
				if err := c.Set(ctx, "k", "v", 0).Err(); err != nil {
					t.Fatalf("SET: %v", err)
				}
				tc.down(r)
				r.Restart()
				got, err := c.Get(ctx, "k").Result()
				switch {
				case tc.wantKept && (err != nil || got != "v"):
					t.Errorf("GET k after restart = %q, %v; want \"v\"", got, err)
				case !tc.wantKept && !errors.Is(err, redis.Nil):
					t.Errorf("GET k after restart = %q, %v; want redis.Nil", got, err)
				}
			})
		}
	}
}

func TestRedisDownRefusesThenRecovers(t *testing.T) {
	for _, b := range redisBackends {
		t.Run(b.name, func(t *testing.T) {
			r := b.start(t)
			if want := "redis://" + r.Addr() + "/0"; r.URL() != want {
				t.Errorf("URL() = %q; want %q", r.URL(), want)
			}
			if got, want := r.Embedded(), b.name == "miniredis"; got != want {
				t.Errorf("Embedded() = %v; want %v", got, want)
			}
			// No retries: a refused connection should show at once.
			c := redis.NewClient(&redis.Options{Addr: r.Addr(), MaxRetries: -1})
			t.Cleanup(func() { _ = c.Close() })
			r.Kill()
			ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
			defer cancel()
			if err := c.Ping(ctx).Err(); err == nil {
				t.Errorf("PING after Kill succeeded; want an error")
			}
			r.Restart()
			if err := c.Ping(ctx).Err(); err != nil {
				t.Errorf("PING after Restart: %v", err)
			}
			opts, err := redis.ParseURL(r.URL())
			if err != nil {
				t.Fatalf("ParseURL(%q): %v", r.URL(), err)
			}
			if opts.Addr != r.Addr() {
				t.Errorf("ParseURL(%q).Addr = %q; want %q", r.URL(), opts.Addr, r.Addr())
			}
		})
	}
}

// The whole fallback decision of StartRedis, with redis-server hidden.
func TestStartRedisFallsBackToMiniredis(t *testing.T) {
	t.Setenv("PATH", t.TempDir())
	t.Setenv(EnvRequireRedis, "")
	var r *Redis
	f := runFake(t, func(tb testing.TB) { r = StartRedis(tb) })
	if f.fatal != "" || f.skip != "" {
		t.Fatalf("StartRedis without redis-server: fatal %q, skip %q; want a fallback", f.fatal, f.skip)
	}
	if !r.Embedded() {
		t.Fatalf("Embedded() = false; want true")
	}
	if len(f.logs) != 1 || !strings.Contains(f.logs[0], "miniredis") {
		t.Errorf("logs = %q; want one notice about miniredis", f.logs)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	if err := r.Client().Ping(ctx).Err(); err != nil {
		t.Errorf("PING: %v", err)
	}
}

func TestStartRedisRequiredFailsWithHint(t *testing.T) {
	t.Setenv("PATH", t.TempDir())
	t.Setenv(EnvRequireRedis, "1")
	f := runFake(t, func(tb testing.TB) { StartRedis(tb) })
	if !strings.Contains(f.fatal, "apt-get install redis-server") {
		t.Errorf("Fatalf message = %q; want the install hint", f.fatal)
	}
}

// A redis-server started by a test is gone once the test's cleanups ran.
func TestRedisProcessEndsAtCleanup(t *testing.T) {
	var pid int
	t.Run("start", func(t *testing.T) {
		r := redisBackends[0].start(t)
		pid = r.proc.cmd.Process.Pid
	})
	if pid == 0 {
		t.Skip("no redis-server was started")
	}
	if err := syscall.Kill(pid, 0); !errors.Is(err, syscall.ESRCH) {
		t.Errorf("signal 0 to redis-server pid %d after cleanup: %v; want ESRCH", pid, err)
	}
}
