package testrig

import (
	"context"
	"testing"

	"github.com/alicebob/miniredis/v2"
)

// startEmbedded is StartRedis's fallback: a miniredis on a loopback port.
// Kill and Stop close its listener and keep the data in memory, which models
// AOF; with WithoutPersistence, Restart starts empty.
func startEmbedded(tb testing.TB, cfg redisConfig) *Redis {
	tb.Helper()
	m := miniredis.NewMiniRedis()
	m.ClockTTL(true) // TTLs expire on the wall clock, as on redis-server
	if err := m.StartAddr("127.0.0.1:0"); err != nil {
		tb.Fatalf("testrig: start miniredis: %v", err)
	}
	r := &Redis{tb: tb, cfg: cfg, addr: m.Addr(), mini: m, miniRunning: true}
	tb.Cleanup(r.Kill)
	return r
}

func (r *Redis) closeEmbeddedLocked() {
	if !r.miniRunning {
		return
	}
	r.mini.Close()
	r.miniRunning = false
}

func (r *Redis) restartEmbeddedLocked() {
	r.tb.Helper()
	if !r.cfg.persistence {
		r.mini.FlushAll()
	}
	// Close cancelled the context that blocking commands (BLPOP, XREAD)
	// wait on; a restarted server needs a live one.
	r.mini.Lock()
	r.mini.Ctx, r.mini.CtxCancel = context.WithCancel(context.Background())
	r.mini.Unlock()
	// Restart listens on the same port again; it may be busy for a moment.
	err := poll(redisRestartTimeout, r.mini.Restart)
	if err != nil {
		r.tb.Fatalf("testrig: restart miniredis on %s: %v", r.addr, err)
	}
	r.miniRunning = true
}
