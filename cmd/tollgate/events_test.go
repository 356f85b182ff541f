package main

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/tollgate-dev/tollgate/config"
	"github.com/tollgate-dev/tollgate/internal/store"
	"github.com/tollgate-dev/tollgate/internal/testrig"
	"github.com/tollgate-dev/tollgate/webhook"
)

// operatorConfig writes a config for the operator commands: Redis under
// prefix "op:", Stripe at stripeURL (none when ""), plus extra YAML.
func operatorConfig(t *testing.T, redisURL, stripeURL, extra string) string {
	t.Helper()
	stripeYAML := "stripe: { trusted_payloads: true }"
	if stripeURL != "" {
		stripeYAML = fmt.Sprintf("stripe: { secret_key: sk_test_x, api_base: %q, webhook_secrets: [whsec_op], max_network_retries: 1 }", stripeURL)
	}
	path := filepath.Join(t.TempDir(), "c.yaml")
	if err := os.WriteFile(path, []byte(fmt.Sprintf(`
upstream: http://127.0.0.1:3000
redis: { url: %q, prefix: "op:" }
%s
auth: { jwt: { algorithms: [HS256], audience: [api], hmac_secret: %q } }
routes: [ { path: /**, auth: none } ]
billing: { prefix: "" }
%s
`, redisURL, stripeYAML, strings.Repeat("k", 32), extra)), 0o600); err != nil {
		t.Fatal(err)
	}
	return path
}

// openOp opens the store the operator config points at.
func openOp(t *testing.T, redisURL string) *store.Store {
	t.Helper()
	st, err := store.Open(config.Redis{URL: redisURL, Prefix: "op:"}, newLogger(config.Log{Level: "error"}, &bytes.Buffer{}))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { st.Close() })
	return st
}

// runCLI runs one command and returns its exit code, stdout and stderr.
func runCLI(args ...string) (int, string, string) {
	var out, errOut bytes.Buffer
	code := run(context.Background(), args, &out, &errOut)
	return code, out.String(), errOut.String()
}

// `tollgate events`: the table, every filter, -json, and the errors of
// each flag.
func TestEventsCommand(t *testing.T) {
	rd := testrigRedis(t)
	cfg := operatorConfig(t, rd, "", "")
	st := openOp(t, rd)
	log := webhook.NewDeliveryLog(st.Client, st.Keys, 0, 0)
	for _, d := range []webhook.Delivery{
		{Event: "evt_A1", Type: "customer.subscription.created", Customer: "cus_A", Result: "processed", Status: 200, Source: "webhook"},
		{Event: "evt_B1", Type: "invoice.paid", Customer: "cus_B", Result: "failed", Status: 500, Source: "webhook",
			Error: "get customer: stripe is down\nsecond line"},
		{Event: "evt_A2", Type: "customer.subscription.updated", Customer: "cus_A", Result: "processed", Source: "replay"},
	} {
		if err := log.Record(context.Background(), d); err != nil {
			t.Fatal(err)
		}
	}
	for _, c := range []struct {
		name     string
		args     []string
		wantCode int
		wantOut  []string // in stdout, in this order
		wantErr  string   // in stderr
		notOut   string
	}{
		{"all", nil, 0, []string{"TIME", "EVENT", "evt_A2", "replay", "evt_B1", "get customer: stripe is down second line", "evt_A1",
			"3 deliveries, newest first; the log keeps the last 10000 for 168h0m0s."}, "", ""},
		{"customer", []string{"-customer", "cus_A"}, 0, []string{"evt_A2", "evt_A1", "2 deliveries"}, "", "evt_B1"},
		{"failed", []string{"-failed"}, 0, []string{"evt_B1", "failed", "1 deliveries"}, "", "evt_A1"},
		{"type prefix", []string{"-type", "customer.subscription.*"}, 0, []string{"evt_A2", "evt_A1"}, "", "evt_B1"},
		{"since", []string{"-since", "1h"}, 0, []string{"evt_A2", "evt_B1", "evt_A1"}, "", ""},
		{"limit", []string{"-limit", "1"}, 0, []string{"evt_A2", "there may be more: -limit 0 lists all"}, "", "evt_B1"},
		{"nothing matches", []string{"-customer", "cus_Z"}, 0, []string{"no deliveries or grant changes match"}, "", ""},
		{"bad customer", []string{"-customer", "alice@example.com"}, 2, nil, `-customer "alice@example.com" is not a Stripe customer id`, ""},
		{"bad since", []string{"-since", "last tuesday"}, 2, nil, `-since "last tuesday" is neither a duration`, ""},
		{"future since", []string{"-since", "2999-01-01"}, 2, nil, `-since "2999-01-01" is in the future`, ""},
		{"negative limit", []string{"-limit", "-5"}, 2, nil, "-limit -5: must be 0 (all) or more", ""},
		{"unknown flag", []string{"-verbose"}, 2, nil, "flag provided but not defined: -verbose", ""},
	} {
		t.Run(c.name, func(t *testing.T) {
			code, out, errOut := runCLI(append([]string{"events", "-config", cfg}, c.args...)...)
			if code != c.wantCode || !strings.Contains(errOut, c.wantErr) {
				t.Fatalf("events %v = %d, stderr %q; want %d with %q", c.args, code, errOut, c.wantCode, c.wantErr)
			}
			wantInOrder(t, "events "+strings.Join(c.args, " "), out, c.wantOut)
			if c.notOut != "" && strings.Contains(out, c.notOut) {
				t.Errorf("events %v output has %q:\n%s", c.args, c.notOut, out)
			}
		})
	}

	code, out, _ := runCLI("events", "-config", cfg, "-json", "-limit", "0")
	lines := strings.Split(strings.TrimSpace(out), "\n")
	if code != 0 || len(lines) != 3 {
		t.Fatalf("events -json = %d, %d lines:\n%s", code, len(lines), out)
	}
	var d webhook.Delivery
	if err := json.Unmarshal([]byte(lines[1]), &d); err != nil || d.Event != "evt_B1" || d.Status != 500 ||
		d.Customer != "cus_B" || d.Source != "webhook" || d.Replica == "" || d.At.IsZero() || d.ID == "" {
		t.Errorf("events -json line 2 = %s (%v); want evt_B1 with every field", lines[1], err)
	}
}

// -h prints help with examples and exits 0; a missing -config or a log
// that is off is a clear error.
func TestEventsHelpAndErrors(t *testing.T) {
	code, out, _ := runCLI("events", "-h")
	if code != 0 || !strings.Contains(out, "Examples:") || !strings.Contains(out, "-failed") {
		t.Errorf("events -h = %d:\n%s", code, out)
	}
	if code, _, errOut := runCLI("events"); code != 2 || !strings.Contains(errOut, "-config FILE is required") {
		t.Errorf("events without -config = %d %q", code, errOut)
	}
	rd := testrigRedis(t)
	off := operatorConfig(t, rd, "", "webhook: { delivery_log_size: 0 }")
	if code, _, errOut := runCLI("events", "-config", off); code != 1 || !strings.Contains(errOut, "webhook.delivery_log_size is 0") {
		t.Errorf("events with the log off = %d %q", code, errOut)
	}
}

// wantInOrder fails the test unless out holds every one of want, in order.
func wantInOrder(t *testing.T, what, out string, want []string) {
	t.Helper()
	rest := out
	for _, w := range want {
		i := strings.Index(rest, w)
		if i < 0 {
			t.Fatalf("%s: output lacks %q (in order):\n%s", what, w, out)
		}
		rest = rest[i+len(w):]
	}
}

// testrigRedis starts a redis-server for the test and returns its URL.
func testrigRedis(t *testing.T) string {
	t.Helper()
	return testrig.StartRedis(t, testrig.WithoutPersistence()).URL()
}
