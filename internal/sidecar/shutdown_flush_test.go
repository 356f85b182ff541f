package sidecar

import (
	"context"
	"io"
	"net/http"
	"net/http/httptest"
	"testing"
	"time"

	"github.com/tollgate-dev/tollgate/internal/testrig"
	"github.com/tollgate-dev/tollgate/meter"
)

// A request that outlives server.shutdown_timeout must not leave the final
// flush of counts no time at all: graceful shutdown loses nothing while
// Redis is up.
func TestShutdownFlushHasItsOwnBound(t *testing.T) {
	rd := testrig.StartRedis(t)
	hang, arrived := make(chan struct{}), make(chan struct{})
	defer close(hang)
	app := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.URL.Path == "/api/hang" {
			close(arrived)
			select {
			case <-hang:
			case <-r.Context().Done():
			}
		}
	}))
	defer app.Close()
	cfg := meteringConfig(t, app.URL, rd.URL(), "http://127.0.0.1:1")
	cfg.Stripe.SecretKey = "" // count only: nothing is reported, so counts stay visible as pending
	cfg.Metering.FlushInterval = time.Minute
	cfg.Metering.Window = time.Hour
	cfg.Server.ShutdownTimeout = 300 * time.Millisecond
	r := start(t, cfg)
	tok := customerToken(t, cfg.Auth.JWT.HMACSecret, "cus_F")
	do := func(path string) (*http.Response, error) {
		req, _ := http.NewRequest("GET", "http://"+r.sc.ProxyAddr()+path, nil)
		req.Header.Set("Authorization", "Bearer "+tok)
		return http.DefaultClient.Do(req)
	}
	for i := 0; i < 7; i++ {
		resp, err := do("/api/x")
		if err != nil || resp.StatusCode != 200 {
			t.Fatalf("request %d: %v", i, err)
		}
		io.Copy(io.Discard, resp.Body)
		resp.Body.Close()
	}
	go func() {
		if resp, err := do("/api/hang"); err == nil {
			resp.Body.Close()
		}
	}()
	<-arrived
	r.stop()
	<-r.done
	r.done <- nil
	u, err := meter.ReadUsage(context.Background(), rd.Client(), r.sc.Store.Keys)
	if err != nil {
		t.Fatal(err)
	}
	var counted int64
	for _, row := range u.Rows {
		counted += row.Counted
	}
	if counted != 7 {
		t.Errorf("after a shutdown that timed out on a hanging request, %d units are in Redis; want 7", counted)
	}
}
