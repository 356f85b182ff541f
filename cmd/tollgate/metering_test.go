package main

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/golang-jwt/jwt/v5"

	"github.com/tollgate-dev/tollgate/config"
	"github.com/tollgate-dev/tollgate/internal/metrics"
	"github.com/tollgate-dev/tollgate/internal/store"
	"github.com/tollgate-dev/tollgate/internal/testrig"
	"github.com/tollgate-dev/tollgate/meter"
	"github.com/tollgate-dev/tollgate/proxy/auth"
)

const meterTestSecret = "metering-test-secret-0123456789abcdef"

// writeMeteringConfig writes a config for a metered /api/** route.
func writeMeteringConfig(t *testing.T, upstream, redisURL, stripeURL string, flush time.Duration) string {
	t.Helper()
	path := filepath.Join(t.TempDir(), "tollgate.yaml")
	yaml := fmt.Sprintf(`
listen: 127.0.0.1:0
admin_listen: 127.0.0.1:0
upstream: %s
server: { drain_delay: 0s, shutdown_timeout: 10s }
redis: { url: %q, prefix: "tgk:" }
stripe: { secret_key: %s, api_base: %q, timeout: 2s, max_network_retries: 0 }
auth: { jwt: { algorithms: [HS256], audience: [api], hmac_secret: %q } }
routes: [ { path: /api/**, meter: calls } ]
billing: { prefix: "" }
metering:
  flush_interval: %s
  window: 1s
  lease_ttl: 1s
  rate_limit: 1000
  meters: { calls: { event_name: api_calls } }
`, upstream, redisURL, testrig.StripeTestKey, stripeURL, meterTestSecret, flush)
	if err := os.WriteFile(path, []byte(yaml), 0o600); err != nil {
		t.Fatal(err)
	}
	return path
}

// binary is a running tollgate process.
type binary struct {
	cmd       *exec.Cmd
	proxyAddr string
	adminAddr string
	exited    chan struct{}
	logs      testrig.LogBuffer // its log, printed if the test fails
}

// startTollgate runs `tollgate serve` and waits until it serves. Its log is
// read to the end by a goroutine, so that the process never blocks on a
// full pipe.
func startTollgate(t *testing.T, bin, cfgPath string) *binary {
	t.Helper()
	cmd := exec.Command(bin, "serve", "-config", cfgPath)
	stderr, err := cmd.StderrPipe()
	if err != nil {
		t.Fatal(err)
	}
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	b := &binary{cmd: cmd, exited: make(chan struct{})}
	serving := make(chan map[string]any, 1)
	go func() {
		sc := bufio.NewScanner(stderr)
		sc.Buffer(make([]byte, 64<<10), 1<<20)
		for sc.Scan() {
			b.logs.Write(append(sc.Bytes(), '\n'))
			var m map[string]any
			if json.Unmarshal(sc.Bytes(), &m) == nil && m["msg"] == "tollgate serving" {
				serving <- m
			}
		}
		cmd.Wait()
		close(b.exited)
	}()
	t.Cleanup(func() {
		cmd.Process.Kill()
		<-b.exited
		if t.Failed() {
			t.Logf("--- end of the log of tollgate pid %d ---\n%s", cmd.Process.Pid, lastLines(b.logs.String(), 60))
		}
	})
	select {
	case m := <-serving:
		b.proxyAddr, b.adminAddr = m["listen"].(string), m["admin_listen"].(string)
	case <-b.exited:
		t.Fatal("tollgate exited before serving")
	case <-time.After(15 * time.Second):
		t.Fatal("tollgate did not start serving within 15s")
	}
	return b
}

// lastLines is the last n lines of s.
func lastLines(s string, n int) string {
	lines := strings.Split(strings.TrimRight(s, "\n"), "\n")
	return strings.Join(lines[max(0, len(lines)-n):], "\n")
}

// servedEvent is one answer the upstream billed.
type servedEvent struct {
	customer string
	units    int64
	at       time.Time
}

type timedLedger struct {
	mu     sync.Mutex
	events []servedEvent
}

func (l *timedLedger) handler() http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		u, _ := strconv.ParseInt(r.URL.Query().Get("u"), 10, 64)
		l.mu.Lock()
		l.events = append(l.events, servedEvent{r.Header.Get("X-Tollgate-Customer"), u, time.Now()})
		l.mu.Unlock()
		w.Header().Set("X-Tollgate-Usage", strconv.FormatInt(u, 10))
		io.WriteString(w, "ok")
	})
}

// sum adds up the units served for customers with prefix, at or after from.
func (l *timedLedger) sum(prefix string, from time.Time) int64 {
	l.mu.Lock()
	defer l.mu.Unlock()
	var n int64
	for _, e := range l.events {
		if strings.HasPrefix(e.customer, prefix) && !e.at.Before(from) {
			n += e.units
		}
	}
	return n
}

func bearer(t *testing.T, customer string) string {
	t.Helper()
	tok, err := auth.SignHS256([]byte(meterTestSecret), jwt.MapClaims{
		"sub": "u_" + customer, "aud": "api", "exp": time.Now().Add(time.Hour).Unix(), "stripe_customer_id": customer})
	if err != nil {
		t.Fatal(err)
	}
	return "Bearer " + tok
}

// hammer sends metered requests for customers prefix0..prefix4 to addr
// until stop is closed or a request fails (the process is gone).
func hammer(t *testing.T, addr, prefix string, stop <-chan struct{}, wg *sync.WaitGroup) {
	tokens := make([]string, 5)
	for i := range tokens {
		tokens[i] = bearer(t, prefix+strconv.Itoa(i))
	}
	for w := range 2 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			c := &http.Client{Timeout: 5 * time.Second, Transport: &http.Transport{}}
			defer c.CloseIdleConnections()
			for i := 0; ; i++ {
				select {
				case <-stop:
					return
				default:
				}
				req, _ := http.NewRequest("GET", fmt.Sprintf("http://%s/api/x?u=%d", addr, 1+(i+w)%4), nil)
				req.Header.Set("Authorization", tokens[(i+w)%len(tokens)])
				resp, err := c.Do(req)
				if err != nil {
					return
				}
				io.Copy(io.Discard, resp.Body)
				resp.Body.Close()
			}
		}()
	}
}

// A replica killed with SIGKILL loses at most the counts of its last flush
// interval (SPEC "Metering"); the survivor takes the report lease within
// lease_ttl and reports everything that reached Redis, exactly once.
func TestSIGKILLLosesAtMostOneFlushInterval(t *testing.T) {
	bin := buildBinary(t)
	rd := testrig.StartRedis(t)
	double := testrig.NewStripeDouble(t)
	ledger := &timedLedger{}
	app := httptest.NewServer(ledger.handler())
	defer app.Close()
	const flush = 200 * time.Millisecond
	cfgPath := writeMeteringConfig(t, app.URL, rd.URL(), double.URL(), flush)
	rdb := rd.Client()
	keys := store.Keys{Prefix: "tgk:"}
	leaseHolder := func() string { return rdb.Get(context.Background(), keys.Global("usage", "lease")).Val() }

	victim := startTollgate(t, bin, cfgPath)
	waitLease(t, leaseHolder, victim)
	survivor := startTollgate(t, bin, cfgPath)

	stop := make(chan struct{})
	var wg sync.WaitGroup
	hammer(t, victim.proxyAddr, "cus_V", stop, &wg)
	hammer(t, survivor.proxyAddr, "cus_S", stop, &wg)
	time.Sleep(1200 * time.Millisecond) // load runs: a timeline, not a wait for a condition
	killed := time.Now()
	if err := victim.cmd.Process.Kill(); err != nil {
		t.Fatal(err)
	}
	<-victim.exited
	time.Sleep(300 * time.Millisecond)
	close(stop)
	wg.Wait()

	waitLease(t, leaseHolder, survivor)
	takeover := time.Since(killed)
	servedS := ledger.sum("cus_S", time.Time{})
	testrig.WaitFor(t, 20*time.Second, func() error {
		u, err := meter.ReadUsage(context.Background(), rdb, keys)
		if err != nil {
			return err
		}
		for _, r := range u.Rows {
			if r.Pending != 0 {
				return fmt.Errorf("%s still has %d units pending", r.Customer, r.Pending)
			}
		}
		if got := reportedUnits(double, "cus_S"); got != servedS {
			return fmt.Errorf("survivor's customers: reported %d, served %d", got, servedS)
		}
		return nil
	})
	servedV, reportedV := ledger.sum("cus_V", time.Time{}), reportedUnits(double, "cus_V")
	loss := servedV - reportedV
	bound := ledger.sum("cus_V", killed.Add(-flush-100*time.Millisecond)) // one flush interval (+100ms scheduling slack) before the kill, and in flight
	t.Logf("SIGKILL: victim served %d units, %d reported: %d lost; the last flush interval before the kill (and requests in flight) served %d; survivor took the lease after %v",
		servedV, reportedV, loss, bound, takeover.Round(time.Millisecond))
	if loss < 0 {
		t.Errorf("reported %d units more than the upstream served for the killed replica", -loss)
	}
	if loss > bound {
		t.Errorf("lost %d units; want at most the %d served in the last flush interval before the kill", loss, bound)
	}
	if takeover > 3*time.Second {
		t.Errorf("the survivor took the lease %v after the kill; want within lease_ttl (1s) plus a retry period", takeover)
	}
	checkUnique(t, double)
}

// waitLease waits until the report lease names b's process.
func waitLease(t *testing.T, holder func() string, b *binary) {
	t.Helper()
	pid := ":" + strconv.Itoa(b.cmd.Process.Pid) + ":"
	testrig.WaitFor(t, 10*time.Second, func() error {
		if h := holder(); !strings.Contains(h, pid) {
			return fmt.Errorf("lease held by %q, not by pid %d", h, b.cmd.Process.Pid)
		}
		return nil
	})
}

// reportedUnits adds up the accepted meter events of customers with prefix.
func reportedUnits(d *testrig.StripeDouble, prefix string) int64 {
	var n int64
	for _, e := range d.MeterEvents() {
		if strings.HasPrefix(e.CustomerID, prefix) {
			n += e.Value
		}
	}
	return n
}

func checkUnique(t *testing.T, d *testrig.StripeDouble) {
	t.Helper()
	if twice := d.AcceptedTwice(); len(twice) > 0 {
		t.Errorf("identifiers accepted twice: %v", twice)
	}
}

// `tollgate usage` prints a row per customer and meter and every parked
// report with its reason.
func TestUsageCommand(t *testing.T) {
	rd := testrig.StartRedis(t)
	double := testrig.NewStripeDouble(t)
	cfgPath := writeMeteringConfig(t, "http://127.0.0.1:1", rd.URL(), double.URL(), 20*time.Millisecond)
	cfg, err := loadConfig(cfgPath)
	if err != nil {
		t.Fatal(err)
	}
	var now atomic.Int64
	now.Store(time.Now().Add(-time.Minute).UnixMilli())
	clock := func() time.Time { return time.UnixMilli(now.Load()) }
	m, err := meter.New(meter.Options{Config: cfg.Metering, Redis: rd.Client(), Keys: store.Keys{Prefix: cfg.Redis.Prefix},
		Sender: meter.NewStripeSender(testrig.StripeClient(t, double.URL()), 2*time.Second), Metrics: metrics.New(), Now: clock,
		Logger: newLogger(config.Log{Level: "error"}, io.Discard)})
	if err != nil {
		t.Fatal(err)
	}
	double.FailNextWith(1, testrig.Fault{Status: 400, Type: "invalid_request_error", Code: "resource_missing",
		Message: "No such customer: 'cus_Gone'", ShouldRetry: "false"})
	m.Count("cus_Gone", "calls", 5)
	now.Add(5000)
	out := func() string {
		var b bytes.Buffer
		if code := run(context.Background(), []string{"usage", "-config", cfgPath}, &b, &b); code != 0 {
			t.Fatalf("tollgate usage exit %d:\n%s", code, b.String())
		}
		return b.String()
	}
	testrig.WaitFor(t, 10*time.Second, func() error {
		if s := out(); !strings.Contains(s, "unknown_customer") {
			return fmt.Errorf("no parked report yet:\n%s", s)
		}
		return nil
	})
	m.Count("cus_Ok", "calls", 7)
	now.Add(5000)
	okReported := regexp.MustCompile(`cus_Ok\s+calls\s+7\s+7\s+0\s+0`)
	testrig.WaitFor(t, 10*time.Second, func() error {
		if s := out(); !okReported.MatchString(s) {
			return fmt.Errorf("cus_Ok not reported yet:\n%s", s)
		}
		return nil
	})
	if got := double.SumMeterEvents("api_calls", "cus_Ok"); got != 7 {
		t.Fatalf("Stripe double holds %d units for cus_Ok, want 7", got)
	}
	m.Count("cus_Ok", "calls", 3) // the current window: pending
	if err := m.Close(context.Background()); err != nil {
		t.Fatal(err)
	}
	got := out()
	for _, re := range []string{
		`CUSTOMER\s+METER\s+COUNTED\s+REPORTED\s+PENDING\s+PARKED`,
		`cus_Gone\s+calls\s+5\s+0\s+0\s+5`,
		`cus_Ok\s+calls\s+10\s+7\s+3\s+0`,
		`TOTAL\s+15\s+7\s+3\s+5`,
		`Parked reports:`,
		`cus_Gone\s+calls\s+\S+Z\s+5\s+unknown_customer\s+tg-cus_Gone-calls-`,
	} {
		if !regexp.MustCompile(re).MatchString(got) {
			t.Errorf("tollgate usage output lacks %q:\n%s", re, got)
		}
	}
}
