package main

import (
	"bufio"
	"bytes"
	"context"
	"flag"
	"io"
	"net/http"
	"os"
	"path/filepath"
	"regexp"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/tollgate-dev/tollgate/internal/testrig"
)

var update = flag.Bool("update", false, "rewrite golden files")

func golden(t *testing.T, name string, got []byte) {
	t.Helper()
	path := filepath.Join("testdata", name+".golden")
	if *update {
		if err := os.WriteFile(path, got, 0o644); err != nil {
			t.Fatal(err)
		}
	}
	want, err := os.ReadFile(path)
	if err != nil {
		t.Fatalf("%v (run go test -update to create it)", err)
	}
	if !bytes.Equal(got, want) {
		t.Errorf("output differs from %s:\n--- got\n%s\n--- want\n%s", path, got, want)
	}
}

func TestCheckGolden(t *testing.T) {
	t.Setenv("TOLLGATE_TEST_HMAC", strings.Repeat("h", 32))
	t.Setenv("STRIPE_SECRET_KEY", "sk_test_example")
	t.Setenv("STRIPE_WEBHOOK_SECRET", "whsec_example")
	for _, c := range []struct {
		name     string
		args     []string
		wantCode int
	}{
		{"check_good", []string{"check", "-config", "testdata/good.yaml"}, 0},
		{"check_bad", []string{"check", "-config", "testdata/bad.yaml"}, 1},
		{"check_example", []string{"check", "-config", "../../deploy/tollgate.example.yaml"}, 0},
		{"check_missing_file", []string{"check", "-config", "testdata/nope.yaml"}, 1},
		{"check_no_flag", []string{"check"}, 2},
	} {
		t.Run(c.name, func(t *testing.T) {
			var out bytes.Buffer
			code := run(context.Background(), c.args, &out, &out)
			if code != c.wantCode {
				t.Errorf("tollgate %v exit = %d; want %d\n%s", c.args, code, c.wantCode, out.String())
			}
			golden(t, c.name, out.Bytes())
		})
	}
}

func TestVersion(t *testing.T) {
	var out bytes.Buffer
	if code := run(context.Background(), []string{"version"}, &out, &out); code != 0 {
		t.Fatalf("exit %d", code)
	}
	if !regexp.MustCompile(`^tollgate \S+ \(commit \S+, go1\.\d+`).Match(out.Bytes()) {
		t.Errorf("version = %q", out.String())
	}
}

func TestUnknownCommand(t *testing.T) {
	var out bytes.Buffer
	if code := run(context.Background(), []string{"frobnicate"}, &out, &out); code != 2 || !strings.Contains(out.String(), `unknown command "frobnicate"`) {
		t.Errorf("exit %d, %q", code, out.String())
	}
}

// lineWriter hands the demo's output to the test line by line while it runs.
type lineWriter struct{ lines chan string }

func (w lineWriter) Write(p []byte) (int, error) {
	sc := bufio.NewScanner(bytes.NewReader(p))
	for sc.Scan() {
		w.lines <- sc.Text()
	}
	return len(p), nil
}

// The README's first command: the demo starts with no flags beyond a free
// port, no Redis and no network, and what it prints works, including the
// subscription story: 402, then a `tollgate trigger` line (a signed Stripe
// event) makes it 200, and the cancellation line makes it 402 again.
func TestDemoPrintsWorkingCommands(t *testing.T) {
	ctx, cancel := context.WithCancel(context.Background())
	out := lineWriter{make(chan string, 1000)}
	done := make(chan int, 1)
	go func() { done <- run(ctx, []string{"demo", "-listen", "127.0.0.1:0"}, out, io.Discard) }()
	var base, token, token2, admin string
	// event type (and -status, if any) -> the printed command's args from "trigger" on
	triggers := map[string][]string{}
	deadline := time.After(30 * time.Second)
	for helped := false; !helped; {
		select {
		case l := <-out.lines:
			l = strings.TrimSpace(l)
			if v, ok := strings.CutPrefix(l, "proxy:"); ok {
				base = strings.TrimSpace(v)
			}
			if v, ok := strings.CutPrefix(l, "export TOKEN="); ok {
				token = v
			}
			if v, ok := strings.CutPrefix(l, "export TOKEN2="); ok {
				token2 = v
			}
			if v, ok := strings.CutPrefix(l, "admin:"); ok {
				admin = strings.Fields(v)[0]
			}
			cmd, _, _ := strings.Cut(l, "#")
			if f := strings.Fields(cmd); slices.Contains(f, "trigger") {
				args := f[slices.Index(f, "trigger"):]
				key := args[1]
				if i := slices.Index(args, "-status"); i > 0 && i+1 < len(args) {
					key += " " + args[i+1]
				}
				if i := slices.Index(args, "-price"); i > 0 && i+1 < len(args) && args[i+1] != demoPrice {
					key += " " + args[i+1]
				}
				triggers[key] = args
			}
			helped = strings.HasPrefix(l, "trigger signs a realistic Stripe event") // the text after the commands
		case code := <-done:
			t.Fatalf("demo exited early with %d", code)
		case <-deadline:
			t.Fatalf("demo printed no proxy address, token and trigger commands (got %q, %v)", base, triggers)
		}
	}
	call := func(path, token string) (int, string) {
		req, _ := http.NewRequest("GET", base+path, nil)
		if token != "" {
			req.Header.Set("Authorization", "Bearer "+token)
		}
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		b, _ := io.ReadAll(resp.Body)
		resp.Body.Close()
		return resp.StatusCode, string(b)
	}
	trigger := func(event string) {
		args, ok := triggers[event]
		if !ok {
			t.Fatalf("demo printed no trigger line for %s (have %v)", event, triggers)
		}
		var tout bytes.Buffer
		if code := run(ctx, args, &tout, &tout); code != 0 || !strings.Contains(tout.String(), `"result":"processed"`) {
			t.Fatalf("tollgate %s: exit %d\n%s", strings.Join(args, " "), code, tout.String())
		}
	}
	steps := []struct {
		name, path, token string
		trigger           string // run this printed trigger line first
		want              int
		body              string
	}{
		{"public", "/healthz", "", "", 200, ""},
		{"no token", "/api/hello", "", "", 401, "unauthenticated"},
		{"not subscribed", "/api/hello", token, "", 402, "subscription_required"},
		{"subscribed", "/api/hello", token, "customer.subscription.created", 200, `"X-Tollgate-Customer":"cus_demo","X-Tollgate-Features":"reports","X-Tollgate-Plan":"starter"`},
		{"no route", "/nowhere", "", "", 403, "no_route"},
		// Dunning: the failed invoice is recorded; the subscription goes
		// past_due with its period over for longer than the grace period.
		{"payment failed, still in the period", "/api/hello", token, "invoice.payment_failed", 200, ""},
		{"past_due beyond grace", "/api/hello", token, "customer.subscription.updated past_due", 402,
			`"payment_url":"https://invoice.stripe.com/i/acct_tollgate/test_in_tollgate_demo"`},
		{"invoice paid", "/api/hello", token, "invoice.paid", 402, "subscription_required"},
		{"active again", "/api/hello", token, "customer.subscription.updated active", 200, `"X-Tollgate-Status":"active"`},
		// Seats: the team plan's one seat goes to the first user.
		{"team plan: the first user takes the seat", "/api/hello", token, "customer.subscription.updated active price_demo_team", 200, `"X-Tollgate-Plan":"team"`},
		{"team plan: the second user finds it taken", "/api/hello", token2, "", 403,
			`{"error":{"code":"seat_limit","message":"The one seat of your plan is taken; ask an admin to release it, or upgrade."},"limit":1,"used":1}`},
		{"team plan: the seat's holder", "/api/hello", token, "", 200, `"X-Tollgate-User":"user_demo"`},
		{"canceled", "/api/hello", token, "customer.subscription.deleted", 402, "subscription_required"},
	}
	for _, c := range steps {
		if c.trigger != "" {
			trigger(c.trigger)
		}
		// The webhook's write reaches the gate through the change feed:
		// poll briefly.
		var code int
		var body string
		testrig.Eventually(t, c.name, func() bool {
			code, body = call(c.path, c.token)
			return code == c.want && strings.Contains(body, c.body)
		})
		if code != c.want || !strings.Contains(body, c.body) {
			t.Errorf("%s: GET %s = %d %s; want %d containing %q", c.name, c.path, code, body, c.want, c.body)
		}
	}
	// The subscribed request was counted for billing (the counter moves at
	// each flush).
	counted := regexp.MustCompile(`tollgate_usage_units_total\{meter="api_calls"\} [1-9]`)
	testrig.Eventually(t, "usage counted in /metrics", func() bool {
		code, text := call2(t, admin+"/metrics")
		return code == 200 && counted.MatchString(text)
	})
	cancel()
	if code := <-done; code != 0 {
		t.Errorf("demo exit = %d after shutdown; want 0", code)
	}
}

func call2(t *testing.T, url string) (int, string) {
	t.Helper()
	resp, err := http.Get(url)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	return resp.StatusCode, string(b)
}

func TestMain(m *testing.M) {
	flag.Parse()
	code := m.Run()
	if binDir != "" {
		os.RemoveAll(binDir)
	}
	os.Exit(code)
}

var binDir string

// buildBinary builds the real tollgate binary once, for signal tests.
func buildBinary(t *testing.T) string {
	t.Helper()
	if binDir == "" {
		dir, err := os.MkdirTemp("", "tollgate-bin")
		if err != nil {
			t.Fatal(err)
		}
		binDir = dir
		out, err := runCmd("go", "build", "-o", filepath.Join(dir, "tollgate"), ".")
		if err != nil {
			t.Fatalf("go build: %v\n%s", err, out)
		}
	}
	return filepath.Join(binDir, "tollgate")
}
