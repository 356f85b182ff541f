package store

import (
	"context"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/tollgate-dev/tollgate/config"
	"github.com/tollgate-dev/tollgate/internal/testrig"
)

// Issue 11: after enough failed dials go-redis stopped dialing and probed
// once a second, so the first commands after Redis came back still failed.
// However many commands failed during the outage, the first one after Redis
// answers again must succeed, and the ones during it must say why.
func TestFirstCommandAfterRestartSucceeds(t *testing.T) {
	rd := testrig.StartRedis(t)
	if rd.Embedded() {
		t.Skip("needs a redis-server process to kill")
	}
	for _, c := range []struct {
		name string
		cfg  config.Redis
	}{
		{"url", config.Redis{URL: rd.URL(), Prefix: "t:"}},
		{"addrs", config.Redis{Addrs: []string{rd.Addr()}, Prefix: "t:"}},
	} {
		t.Run(c.name, func(t *testing.T) {
			s, err := Open(c.cfg, quiet)
			if err != nil {
				t.Fatal(err)
			}
			defer s.Close()
			ctx := context.Background()
			if err := s.Ping(ctx); err != nil {
				t.Fatalf("Ping before the outage: %v", err)
			}
			rd.Kill()
			defer func() {
				if t.Failed() {
					rd.Restart() // for the next case
				}
			}()
			// Far more failed dials than the pool's size (20 on 2 cores).
			var wg sync.WaitGroup
			errs := make([]error, 200)
			for i := range errs {
				wg.Add(1)
				go func() {
					defer wg.Done()
					cctx, cancel := context.WithTimeout(ctx, 2*time.Second)
					defer cancel()
					errs[i] = s.Client.Get(cctx, "t:k").Err()
				}()
			}
			wg.Wait()
			for i, err := range errs {
				if err == nil || !strings.Contains(err.Error(), "dial tcp "+rd.Addr()) {
					t.Fatalf("command %d during the outage: %v; want the dial error naming %s", i, err, rd.Addr())
				}
			}
			rd.Restart() // returns once redis-server answers PING
			if err := s.Client.Set(ctx, "t:k", "v", 0).Err(); err != nil {
				t.Errorf("first command after Redis answered again: %v; want success", err)
			}
		})
	}
}
