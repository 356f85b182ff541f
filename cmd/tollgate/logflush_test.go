package main

import (
	"context"
	"errors"
	"io"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"time"

	"github.com/tollgate-dev/tollgate/config"
	"github.com/tollgate-dev/tollgate/internal/logging"
	"github.com/tollgate-dev/tollgate/internal/sidecar"
	"github.com/tollgate-dev/tollgate/internal/testrig"
)

// The batch of access lines a run still holds when it stops is written
// before runSidecar returns: with a flush interval far longer than the
// run, the last request's line is there only because of the final flush.
func TestRunWritesTheLastAccessLines(t *testing.T) {
	app := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) { io.WriteString(w, "ok") }))
	defer app.Close()
	cfg, err := config.Load(strings.NewReader(publicProxyConfig(app.URL, "{ drain_delay: 0s, shutdown_timeout: 5s }")),
		func(string) (string, bool) { return "", false })
	if err != nil {
		t.Fatal(err)
	}
	logs := &testrig.LogBuffer{}
	log := logging.New(config.Log{Level: "info", Format: "json", FlushInterval: time.Hour}, logs)
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	addr := make(chan string, 1)
	done := make(chan int, 1)
	go func() { done <- runSidecar(ctx, cfg, log, func(sc *sidecar.Sidecar) { addr <- sc.ProxyAddr() }) }()
	proxyAddr := <-addr
	// A slog line written after the access line writes the batch with it,
	// as it should (lines stay in order): wait for the last of the
	// sidecar's start-up lines, which the change feed writes in the
	// background, so that none comes after the request's.
	testrig.WaitFor(t, 10*time.Second, func() error {
		if !strings.Contains(logs.String(), "change feed live") {
			return errors.New("the change feed is not live yet")
		}
		return nil
	})
	resp, err := http.Get("http://" + proxyAddr + "/last")
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if strings.Contains(logs.String(), `"path":"/last"`) {
		t.Fatalf("the access line was written at once; the test needs it held in its batch; logs:\n%s", logs.String())
	}
	cancel()
	if code := <-done; code != 0 {
		t.Fatalf("runSidecar = %d; want 0", code)
	}
	if !strings.Contains(logs.String(), `"msg":"request","method":"GET","path":"/last"`) {
		t.Errorf("the last access line was not written before the run ended; logs:\n%s", logs.String())
	}
}
