package main

import (
	"bytes"
	"context"
	_ "embed"
	"encoding/json"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"os"
	"strings"
	"time"

	"github.com/golang-jwt/jwt/v5"

	"github.com/tollgate-dev/tollgate/config"
	"github.com/tollgate-dev/tollgate/internal/sidecar"
)

// demoConfig is the embedded default `tollgate demo` runs on. Its secrets
// are public demo values: never reuse them.
//
//go:embed demo.yaml
var demoConfig []byte

const (
	demoHMACSecret    = "tollgate-demo-hmac-secret-DO-NOT-USE-IN-PRODUCTION"
	demoWebhookSecret = "whsec_tollgate_demo_DO_NOT_USE_IN_PRODUCTION"
	demoUser          = "user_demo"
	demoUser2         = "user_demo_2" // a second user of the same customer, for the seat walk
	demoCustomer      = "cus_demo"
	demoPrice         = "price_demo_starter" // the starter plan of demo.yaml
	demoTeamPrice     = "price_demo_team"    // the team plan of demo.yaml: one seat
)

// demoEnv fills the ${DEMO_*} values of the embedded demo configuration.
func demoEnv(listen, admin, upstream, logLevel string) map[string]string {
	return map[string]string{
		"DEMO_UPSTREAM":       upstream,
		"DEMO_LISTEN":         listen,
		"DEMO_ADMIN":          admin,
		"DEMO_HMAC_SECRET":    demoHMACSecret,
		"DEMO_WEBHOOK_SECRET": demoWebhookSecret,
		"DEMO_LOG_LEVEL":      logLevel,
	}
}

// loadDemoConfig loads the embedded demo configuration (demo, and trigger
// without -config).
func loadDemoConfig(env map[string]string) (*config.Config, error) {
	return config.Load(bytes.NewReader(demoConfig), func(k string) (string, bool) {
		v, ok := env[k]
		return v, ok
	})
}

func demo(ctx context.Context, args []string, stdout, stderr io.Writer) int {
	fs := newFlags("demo")
	listen := fs.String("listen", "127.0.0.1:8080", "proxy listener address")
	admin := fs.String("admin-listen", "127.0.0.1:0", "admin listener address (0 = any free port)")
	logLevel := fs.String("log-level", "warn", "log level: debug, info, warn, error")
	if code, ok := parse(fs, args, stdout, stderr); !ok {
		return code
	}
	if fs.NArg() > 0 {
		return usageError(stderr, fs, "unexpected argument %q", fs.Arg(0))
	}
	up, err := startDemoUpstream()
	if err != nil {
		fmt.Fprintf(stderr, "demo: start demo upstream: %v\n", err)
		return 1
	}
	defer up.Close()

	cfg, err := loadDemoConfig(demoEnv(*listen, *admin, "http://"+up.Addr, *logLevel))
	if err != nil {
		printProblems(stderr, "embedded demo config", err)
		return 1
	}
	log := newLogger(cfg.Log, stderr)
	return runSidecar(ctx, cfg, log, func(sc *sidecar.Sidecar) {
		printDemoHelp(stdout, sc, cfg)
	})
}

func demoToken(cfg *config.Config, user string, ttl time.Duration) string {
	now := time.Now()
	tok, err := jwt.NewWithClaims(jwt.SigningMethodHS256, jwt.MapClaims{
		"sub":                      user,
		cfg.Auth.JWT.CustomerClaim: demoCustomer,
		"iss":                      cfg.Auth.JWT.Issuer,
		"aud":                      cfg.Auth.JWT.Audience,
		"iat":                      now.Unix(),
		"exp":                      now.Add(ttl).Unix(),
	}).SignedString([]byte(demoHMACSecret))
	if err != nil {
		panic(err) // HS256 signing with a fixed key cannot fail
	}
	return tok
}

func printDemoHelp(w io.Writer, sc *sidecar.Sidecar, cfg *config.Config) {
	base := "http://" + sc.ProxyAddr()
	tok, tok2 := demoToken(cfg, demoUser, 24*time.Hour), demoToken(cfg, demoUser2, 24*time.Hour)
	fmt.Fprintf(w, `tollgate demo is running (embedded store, demo upstream, demo secrets; Ctrl-C stops it).

  proxy:   %[1]s
  admin:   http://%[2]s  (/metrics /healthz /readyz)

Demo tokens (users %[3]s and %[9]s of Stripe customer %[4]s, valid 24h):

  export TOKEN=%[5]s
  export TOKEN2=%[10]s

Try:

  curl -i %[1]s/healthz                                        # public route: 200
  curl -i %[1]s/api/hello                                      # no token: 401
  curl -i -H "Authorization: Bearer $TOKEN" %[1]s/api/hello    # verified, not subscribed yet: 402
  %[6]s trigger customer.subscription.created -url %[1]s -customer %[4]s -price %[7]s
  curl -i -H "Authorization: Bearer $TOKEN" %[1]s/api/hello    # subscribed: 200, the app sees X-Tollgate-Customer/-Plan
  curl -i -H "X-Tollgate-Customer: cus_evil" -H "Authorization: Bearer $TOKEN" %[1]s/api/hello   # spoofed header is dropped
  curl -i --path-as-is "%[1]s/api/..%%2fadmin"                     # encoded slash: 400
  curl -i %[1]s/nowhere                                        # no route: 403
  # a failed payment (dunning): the renewal could not be charged, and the 72h grace period is over
  %[6]s trigger invoice.payment_failed -url %[1]s -customer %[4]s
  %[6]s trigger customer.subscription.updated -url %[1]s -customer %[4]s -price %[7]s -status past_due -period-end -96h
  curl -i -H "Authorization: Bearer $TOKEN" %[1]s/api/hello    # 402 with payment_url: the invoice to pay
  %[6]s trigger invoice.paid -url %[1]s -customer %[4]s
  %[6]s trigger customer.subscription.updated -url %[1]s -customer %[4]s -price %[7]s -status active   # paid: 200 again
  # seats: the team plan has one seat, taken by the first user who uses it
  %[6]s trigger customer.subscription.updated -url %[1]s -customer %[4]s -price %[8]s -status active
  curl -i -H "Authorization: Bearer $TOKEN" %[1]s/api/hello    # %[3]s takes the seat: 200
  curl -i -H "Authorization: Bearer $TOKEN2" %[1]s/api/hello   # %[9]s, same customer: 403 seat_limit (limit 1, used 1)
  %[6]s trigger customer.subscription.deleted -url %[1]s -customer %[4]s   # canceled: 402 again
  curl -s http://%[2]s/metrics | grep -E 'tollgate_(requests|webhook_events|usage_units)_total'   # usage counted

trigger signs a realistic Stripe event with the demo's webhook secret and posts it to the webhook
endpoint, as Stripe would. The demo has no Stripe key, so tollgate takes the state from the signed
event itself (trusted payload mode); with stripe.secret_key set it re-reads it from Stripe instead,
and the billing API's GET subscription shows the failed payment (payment_failed: attempt_count,
next_payment_attempt, hosted_invoice_url) for the app's "fix your card" banner.
`, base, sc.AdminAddr(), demoUser, demoCustomer, tok, selfCommand(), demoPrice, demoTeamPrice, demoUser2, tok2)
}

// selfCommand is how to run this binary again from the same directory:
// as invoked, or "go run ./cmd/tollgate" under go run (a temporary file).
func selfCommand() string {
	exe := os.Args[0]
	if strings.Contains(exe, "go-build") || exe == "" {
		return "go run ./cmd/tollgate"
	}
	return exe
}

type demoUpstream struct {
	Addr string
	srv  *http.Server
}

func (d *demoUpstream) Close() { d.srv.Close() }

// startDemoUpstream runs a tiny app that echoes what tollgate forwarded.
func startDemoUpstream() (*demoUpstream, error) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return nil, err
	}
	srv := &http.Server{ReadHeaderTimeout: 5 * time.Second, Handler: http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		seen := map[string]string{"path": r.URL.EscapedPath(), "method": r.Method}
		for k, v := range r.Header {
			if strings.HasPrefix(k, "X-Tollgate-") || k == "X-Request-Id" {
				seen[k] = strings.Join(v, ",")
			}
		}
		w.Header().Set("Content-Type", "application/json")
		_ = json.NewEncoder(w).Encode(map[string]any{"demo_app_saw": seen})
	})}
	go func() {
		if err := srv.Serve(ln); err != nil && err != http.ErrServerClosed {
			slog.Error("demo upstream failed", "err", err)
		}
	}()
	return &demoUpstream{Addr: ln.Addr().String(), srv: srv}, nil
}
