// Package stack runs one example app behind a real tollgate for the example
// tests (examples/examples_test.go, and the browser test in its own module):
// a redis-server, the recording Stripe double, the tollgate binary serving
// examples/tollgate.yaml, and the app process, all on loopback. It also plays
// Stripe's part of a checkout (the customer pays, Stripe sends the event).
package stack

import (
	"fmt"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/golang-jwt/jwt/v5"
	"github.com/stripe/stripe-go/v76"

	"github.com/tollgate-dev/tollgate/internal/testrig"
	"github.com/tollgate-dev/tollgate/proxy/auth"
)

// Secrets of the test deployment (examples/tollgate.yaml reads them from
// the environment).
const (
	jwtSecret      = "example-app-jwt-secret-of-at-least-32-bytes"
	jwtAudience    = "example-app"
	webhookSecret  = "whsec_example_from_stripe"
	ForwardSecret  = "whsec_example_forwarded_to_the_app"
	readyTimeout   = 60 * time.Second // a loaded CI machine starting Next.js or Django
	requestTimeout = 30 * time.Second
)

// Prices in the double, as examples/tollgate.yaml's plans name them.
var prices = map[string]int64{"starter": 2000, "pro": 8000}

// Stack is one app behind one tollgate.
type Stack struct {
	t       testing.TB
	App     App
	Stripe  *testrig.StripeDouble
	URL     string // tollgate's proxy listener: what browsers and clients use
	AppURL  string // the app itself, on loopback (tollgate's forwarder posts here)
	DataDir string // the app's data: the webhook outbox
	Redis   *testrig.Redis
}

// Dir is the examples/ directory.
func Dir() string {
	_, file, _, _ := runtime.Caller(0)
	return filepath.Join(filepath.Dir(file), "..", "..")
}

// Start runs app behind tollgate, skipping the test (or failing it, with
// TOLLGATE_TEST_REQUIRE_EXAMPLES=1) when the app's toolchain is missing.
func Start(t testing.TB, app App) *Stack {
	t.Helper()
	app.require(t)
	s := &Stack{t: t, App: app, Redis: testrig.StartRedis(t, testrig.WithoutPersistence()),
		Stripe: testrig.NewStripeDouble(t), DataDir: t.TempDir()}
	for plan, amount := range prices {
		s.Stripe.PutPrice(&stripe.Price{ID: "price_" + plan, Active: true, Type: stripe.PriceTypeRecurring,
			UnitAmount: amount, Currency: "usd",
			Recurring: &stripe.PriceRecurring{Interval: "month", IntervalCount: 1, UsageType: "licensed"}})
	}
	tgPort, adminPort, appPort := testrig.FreePort(t), testrig.FreePort(t), testrig.FreePort(t)
	s.URL = fmt.Sprintf("http://127.0.0.1:%d", tgPort)
	s.AppURL = fmt.Sprintf("http://127.0.0.1:%d", appPort)

	cmd := exec.Command(buildTollgate(t), "serve", "-config", filepath.Join(Dir(), "tollgate.yaml"))
	cmd.Env = append(os.Environ(),
		"TOLLGATE_LISTEN="+strings.TrimPrefix(s.URL, "http://"),
		fmt.Sprintf("TOLLGATE_ADMIN_LISTEN=127.0.0.1:%d", adminPort),
		"APP_URL="+s.AppURL, "PUBLIC_URL="+s.URL, "REDIS_URL="+s.Redis.URL(),
		"STRIPE_SECRET_KEY="+testrig.StripeTestKey, "STRIPE_WEBHOOK_SECRET="+webhookSecret,
		"STRIPE_API_BASE="+s.Stripe.URL(), "TOLLGATE_FORWARD_SECRET="+ForwardSecret, "JWT_HMAC_SECRET="+jwtSecret)
	tg := testrig.StartCommand(t, "tollgate", cmd)
	t.Cleanup(tg.Kill) // before StartCommand's SIGTERM: nothing to drain, no drain_delay to wait
	waitOK(t, tg, "tollgate /readyz", fmt.Sprintf("http://127.0.0.1:%d/readyz", adminPort))

	a := app.Run(t, appPort, "TOLLGATE_URL="+s.URL, "DATA_DIR="+s.DataDir)
	waitOK(t, a, app.Name+" /healthz", s.AppURL+"/healthz")
	return s
}

// Run starts the app alone on 127.0.0.1:port; env (NAME=value) comes last,
// so it can override HOST and the rest.
func (a App) Run(t testing.TB, port int, env ...string) *testrig.Command {
	t.Helper()
	a.require(t)
	cmd := a.command(port)
	cmd.Env = append(os.Environ(), a.env...)
	cmd.Env = append(cmd.Env, fmt.Sprintf("PORT=%d", port), "HOST=127.0.0.1", "TOLLGATE_FORWARD_SECRET="+ForwardSecret,
		"DATA_DIR="+t.TempDir())
	cmd.Env = append(cmd.Env, env...)
	return testrig.StartCommand(t, a.Name, cmd)
}

// waitOK waits until url answers 200, failing at once if the process died.
func waitOK(t testing.TB, c *testrig.Command, what, url string) {
	t.Helper()
	client := &http.Client{Timeout: 2 * time.Second}
	testrig.WaitFor(t, readyTimeout, func() error {
		if done, err := c.Exited(); done {
			t.Fatalf("%s: process exited (%v) before it was ready:\n%s", what, err, c.Output())
		}
		resp, err := client.Get(url)
		if err != nil {
			return err
		}
		resp.Body.Close()
		if resp.StatusCode != http.StatusOK {
			return fmt.Errorf("%s = %d", what, resp.StatusCode)
		}
		return nil
	})
}

// buildTollgate returns the tollgate binary to run, built once per test
// binary (Main removes it).
func buildTollgate(t testing.TB) string {
	t.Helper()
	bin, err := tollgateBinary()
	if err != nil {
		t.Fatal(err)
	}
	return bin
}

var binDir string

// tollgateBinary is $TOLLGATE_BIN (CI builds the binary once for every
// step), or the binary built from this checkout.
var tollgateBinary = sync.OnceValues(func() (string, error) {
	if bin := os.Getenv("TOLLGATE_BIN"); bin != "" {
		return bin, nil
	}
	dir, err := os.MkdirTemp("", "tollgate-examples")
	if err != nil {
		return "", err
	}
	binDir = dir
	bin := filepath.Join(dir, "tollgate")
	cmd := exec.Command("go", "build", "-o", bin, "./cmd/tollgate")
	cmd.Dir = filepath.Join(Dir(), "..")
	if out, err := cmd.CombinedOutput(); err != nil {
		return "", fmt.Errorf("go build tollgate: %v\n%s", err, out)
	}
	return bin, nil
})

// Main runs the tests and removes the tollgate binary: call it from
// TestMain, os.Exit(stack.Main(m)).
func Main(m *testing.M) int {
	code := m.Run()
	if binDir != "" {
		os.RemoveAll(binDir)
	}
	return code
}

// Eventually waits up to 30 s for cond, checking twice a second: for a
// condition read through the billing API, which is rate-limited per user.
func (s *Stack) Eventually(what string, cond func() bool) {
	s.t.Helper()
	testrig.WaitEvery(s.t, 30*time.Second, 500*time.Millisecond, func() error {
		if cond() {
			return nil
		}
		return fmt.Errorf("still waiting for %s", what)
	})
}

// Token is a signed-in user's JWT, as the app's own auth would issue it.
func (s *Stack) Token(user string) string {
	s.t.Helper()
	tok, err := auth.SignHS256([]byte(jwtSecret), jwt.MapClaims{
		"sub": user, "aud": jwtAudience, "exp": time.Now().Add(time.Hour).Unix()})
	if err != nil {
		s.t.Fatal(err)
	}
	return tok
}

// Outbox lists the welcome emails the app's webhook receiver wrote.
func (s *Stack) Outbox() []string {
	s.t.Helper()
	var out []string
	entries, err := os.ReadDir(filepath.Join(s.DataDir, "outbox"))
	if err != nil && !os.IsNotExist(err) {
		s.t.Fatal(err)
	}
	for _, e := range entries {
		if !strings.HasSuffix(e.Name(), ".tmp") {
			out = append(out, e.Name())
		}
	}
	return out
}
