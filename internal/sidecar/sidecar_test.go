package sidecar

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"net/http/httptest"
	"os"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"go.uber.org/goleak"

	"github.com/tollgate-dev/tollgate/config"
	"github.com/tollgate-dev/tollgate/internal/testrig"
)

func TestMain(m *testing.M) {
	code := m.Run()
	// The test client's idle keep-alive connections are not the sidecar's.
	http.DefaultClient.CloseIdleConnections()
	if err := goleak.Find(); code == 0 && err != nil {
		fmt.Fprintln(os.Stderr, "goroutine leak:", err)
		code = 1
	}
	os.Exit(code)
}

func testConfig(t *testing.T, upstream string) *config.Config {
	t.Helper()
	cfg := config.Default()
	cfg.Listen, cfg.AdminListen = "127.0.0.1:0", "127.0.0.1:0"
	cfg.Upstream = upstream
	cfg.Server.DrainDelay = 0
	cfg.Server.ShutdownTimeout = 10 * time.Second
	cfg.Auth.JWT = config.Default().Auth.JWT
	cfg.Auth.JWT.Algorithms = []string{"HS256"}
	cfg.Auth.JWT.Audience = []string{"api"}
	cfg.Auth.JWT.HMACSecret = strings.Repeat("k", 32)
	cfg.Routes = []*config.Route{{Path: "/**", Auth: config.AuthNone}}
	cfg.Billing.SuccessURL = "https://app.test/billing?done={CHECKOUT_SESSION_ID}"
	cfg.Billing.CancelURL = "https://app.test/billing"
	cfg.Billing.ReturnURL = "https://app.test/billing"
	if err := cfg.Validate(); err != nil {
		t.Fatalf("test config invalid: %v", err)
	}
	return cfg
}

type running struct {
	sc   *Sidecar
	stop context.CancelFunc
	done chan error
}

func start(t *testing.T, cfg *config.Config) *running {
	t.Helper()
	return startLogged(t, cfg, slog.New(slog.NewTextHandler(io.Discard, nil)))
}

// startLogged is start with the replica's logs going to log.
func startLogged(t *testing.T, cfg *config.Config, log *slog.Logger) *running {
	t.Helper()
	ctx, cancel := context.WithCancel(context.Background())
	sc, err := New(ctx, cfg, Options{Logger: log})
	if err != nil {
		t.Fatalf("New: %v", err)
	}
	if err := sc.Listen(); err != nil {
		t.Fatalf("Listen: %v", err)
	}
	r := &running{sc: sc, stop: cancel, done: make(chan error, 1)}
	go func() { r.done <- sc.Serve(ctx) }()
	t.Cleanup(func() {
		cancel()
		<-r.done
	})
	return r
}

func get(t *testing.T, url string) (int, string) {
	t.Helper()
	resp, err := http.Get(url)
	if err != nil {
		t.Fatalf("GET %s: %v", url, err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	return resp.StatusCode, string(b)
}

// The admin endpoints exist only on the admin listener. On the proxy
// listener the same paths are ordinary app paths: forwarded (here, to a
// catch-all route) and answered by the app, never by tollgate.
func TestAdminEndpointsNotOnProxyListener(t *testing.T) {
	var appHits atomic.Int32
	app := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		appHits.Add(1)
		io.WriteString(w, "app:"+r.URL.Path)
	}))
	defer app.Close()
	r := start(t, testConfig(t, app.URL))
	for _, p := range []string{"/metrics", "/healthz", "/readyz"} {
		code, body := get(t, "http://"+r.sc.ProxyAddr()+p)
		if code != 200 || body != "app:"+p {
			t.Errorf("proxy %s = %d %q; want the app's own answer", p, code, body)
		}
		if strings.Contains(body, "tollgate_") {
			t.Errorf("proxy %s leaked metrics", p)
		}
	}
	if got := appHits.Load(); got != 3 {
		t.Errorf("app saw %d requests; want 3", got)
	}
	admin := "http://" + r.sc.AdminAddr()
	if code, body := get(t, admin+"/metrics"); code != 200 || !strings.Contains(body, "tollgate_requests_total{") {
		t.Errorf("admin /metrics = %d, has requests_total: %v", code, strings.Contains(body, "tollgate_requests_total{"))
	}
	if code, _ := get(t, admin+"/healthz"); code != 200 {
		t.Errorf("admin /healthz = %d", code)
	}
	// Ready once the change feed is live, a moment after start.
	testrig.Eventually(t, "admin /readyz to answer 200", func() bool {
		code, _ := get(t, admin+"/readyz")
		return code == 200
	})
}

// SIGTERM semantics (the signal itself is tested on the binary in
// cmd/tollgate): /readyz turns 503 during the drain delay, an in-flight
// request completes, and new connections are refused afterwards.
func TestGracefulShutdown(t *testing.T) {
	arrived, release := make(chan struct{}), make(chan struct{})
	app := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.URL.Path == "/slow" {
			close(arrived)
			<-release
		}
		io.WriteString(w, "done")
	}))
	defer app.Close()
	cfg := testConfig(t, app.URL)
	cfg.Server.DrainDelay = 500 * time.Millisecond
	r := start(t, cfg)
	proxyURL := "http://" + r.sc.ProxyAddr()

	type result struct {
		code int
		body string
		err  error
	}
	slow := make(chan result, 1)
	go func() {
		resp, err := http.Get(proxyURL + "/slow")
		if err != nil {
			slow <- result{err: err}
			return
		}
		defer resp.Body.Close()
		b, err := io.ReadAll(resp.Body)
		slow <- result{resp.StatusCode, string(b), err}
	}()
	<-arrived

	r.stop() // what SIGTERM does in cmd/tollgate
	testrig.Eventually(t, "/readyz to answer 503 while draining", func() bool {
		resp, err := http.Get("http://" + r.sc.AdminAddr() + "/readyz")
		if err != nil {
			return false
		}
		resp.Body.Close()
		return resp.StatusCode == http.StatusServiceUnavailable
	})
	testrig.Eventually(t, "the proxy listener to refuse new connections", func() bool {
		c, err := net.DialTimeout("tcp", r.sc.ProxyAddr(), time.Second)
		if err != nil {
			return true
		}
		c.Close()
		return false
	})
	select {
	case err := <-r.done:
		t.Fatalf("Serve returned %v while a request was in flight", err)
	default:
	}
	close(release)
	got := <-slow
	if got.err != nil || got.code != 200 || got.body != "done" {
		t.Errorf("in-flight request = %d %q %v; want 200 done", got.code, got.body, got.err)
	}
	if err := <-r.done; err != nil {
		t.Errorf("Serve = %v; want nil after a clean shutdown", err)
	}
	r.done <- nil // for Cleanup
}

// Readiness follows the store: Redis killed → 503, restarted → 200.
func TestReadyzFollowsRedis(t *testing.T) {
	rd := testrig.StartRedis(t)
	app := httptest.NewServer(http.NotFoundHandler())
	defer app.Close()
	cfg := testConfig(t, app.URL)
	cfg.Redis.URL = rd.URL()
	r := start(t, cfg)
	readyz := func() int {
		resp, err := http.Get("http://" + r.sc.AdminAddr() + "/readyz")
		if err != nil {
			return 0
		}
		resp.Body.Close()
		return resp.StatusCode
	}
	testrig.Eventually(t, "ready with redis up", func() bool { return readyz() == 200 })
	rd.Kill()
	testrig.Eventually(t, "503 with redis down", func() bool { return readyz() == 503 })
	rd.Restart()
	testrig.Eventually(t, "ready again after restart", func() bool { return readyz() == 200 })
}

func TestListenErrorNamesField(t *testing.T) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	cfg := testConfig(t, "http://127.0.0.1:1")
	cfg.AdminListen = ln.Addr().String()
	sc, err := New(context.Background(), cfg, Options{Logger: slog.New(slog.NewTextHandler(io.Discard, nil))})
	if err != nil {
		t.Fatal(err)
	}
	defer sc.close()
	err = sc.Listen()
	if err == nil || !strings.Contains(err.Error(), "admin_listen") {
		t.Errorf("Listen on a busy admin port = %v; want an error naming admin_listen", err)
	}
	var op *net.OpError
	if !errors.As(err, &op) {
		t.Errorf("error %v does not wrap the net error", err)
	}
}
