package testrig

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"net/url"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"
)

// Bounds of the Prometheus lifecycle; a local Prometheus is ready in well
// under a second on an idle machine.
const (
	prometheusReadyTimeout = 30 * time.Second
	prometheusStopTimeout  = 10 * time.Second
	prometheusAttempts     = 5 // fresh ports tried
)

// Prometheus is a real Prometheus server owned by one test, scraping the
// given targets every second, with its HTTP API on a loopback port.
type Prometheus struct {
	tb   testing.TB
	addr string
	proc *process
	log  *LogBuffer
}

// StartPrometheus starts Debian's prometheus (the package "prometheus") with
// one job, "tollgate", scraping targets (host:port) at /metrics every
// second, and stops it at cleanup. Without the binary the test is skipped,
// unless TOLLGATE_TEST_REQUIRE_PROMETHEUS=1, which makes it a failure.
func StartPrometheus(tb testing.TB, targets ...string) *Prometheus {
	tb.Helper()
	bin, err := exec.LookPath("prometheus")
	if err != nil {
		if required(EnvRequirePrometheus) {
			tb.Fatalf("testrig: prometheus not found (%v) and %s=1; %s", err, EnvRequirePrometheus, prometheusInstallHint)
		}
		tb.Skipf("testrig: prometheus not found (%v); %s", err, prometheusInstallHint)
	}
	dir := tb.TempDir()
	conf := filepath.Join(dir, "prometheus.yml")
	if err := os.WriteFile(conf, prometheusConfig(targets), 0o600); err != nil {
		tb.Fatal(err)
	}
	for range prometheusAttempts {
		p, err := launchPrometheus(tb, bin, conf, dir)
		if err == nil {
			return p
		}
		if !errors.Is(err, errAddrInUse) {
			tb.Fatalf("testrig: %v", err)
		}
	}
	tb.Fatalf("testrig: prometheus: no free port after %d attempts", prometheusAttempts)
	return nil
}

func prometheusConfig(targets []string) []byte {
	quoted := make([]string, len(targets))
	for i, t := range targets {
		quoted[i] = strconv.Quote(t)
	}
	return fmt.Appendf(nil, `global:
  scrape_interval: 1s
  scrape_timeout: 1s
  evaluation_interval: 1s
scrape_configs:
  - job_name: tollgate
    metrics_path: /metrics
    static_configs:
      - targets: [%s]
`, strings.Join(quoted, ", "))
}

func launchPrometheus(tb testing.TB, bin, conf, dir string) (*Prometheus, error) {
	port, err := freePort()
	if err != nil {
		return nil, err
	}
	p := &Prometheus{tb: tb, addr: loopbackAddr(port), log: &LogBuffer{}}
	p.proc, err = startProcess(bin, []string{
		"--config.file=" + conf,
		"--storage.tsdb.path=" + filepath.Join(dir, "data"),
		"--web.listen-address=" + p.addr,
		"--log.level=warn",
	}, p.log)
	if err != nil {
		return nil, err
	}
	c := &http.Client{Timeout: 2 * time.Second}
	err = poll(prometheusReadyTimeout, func() error {
		if p.proc.exited() {
			return permanent(fmt.Errorf("prometheus exited: %v", p.proc.err))
		}
		resp, err := c.Get("http://" + p.addr + "/-/ready")
		if err != nil {
			return err
		}
		resp.Body.Close()
		if resp.StatusCode != http.StatusOK {
			return fmt.Errorf("/-/ready = %d", resp.StatusCode)
		}
		return nil
	})
	if err != nil {
		p.proc.kill()
		if strings.Contains(p.log.String(), "address already in use") {
			return nil, fmt.Errorf("prometheus on %s: %w", p.addr, errAddrInUse)
		}
		return nil, fmt.Errorf("prometheus on %s not ready: %v\n--- prometheus log ---\n%s", p.addr, err, p.log.String())
	}
	tb.Cleanup(func() {
		if !p.proc.signalAndWait(syscall.SIGTERM, prometheusStopTimeout) {
			tb.Logf("testrig: prometheus ignored SIGTERM for %v; killed it", prometheusStopTimeout)
		}
	})
	return p, nil
}

// URL is the server's base URL.
func (p *Prometheus) URL() string { return "http://" + p.addr }

// Sample is one series of an instant query's answer.
type Sample struct {
	Metric map[string]string
	Value  float64
}

// Query runs an instant PromQL query through the HTTP API (/api/v1/query)
// and returns its vector.
func (p *Prometheus) Query(promql string) ([]Sample, error) {
	c := &http.Client{Timeout: 10 * time.Second}
	resp, err := c.Get(p.URL() + "/api/v1/query?" + url.Values{"query": {promql}}.Encode())
	if err != nil {
		return nil, err
	}
	defer resp.Body.Close()
	var body struct {
		Status string
		Error  string
		Data   struct {
			ResultType string
			Result     []struct {
				Metric map[string]string
				Value  [2]json.RawMessage
			}
		}
	}
	if err := json.NewDecoder(resp.Body).Decode(&body); err != nil {
		return nil, fmt.Errorf("query %q: %d: %w", promql, resp.StatusCode, err)
	}
	if body.Status != "success" || body.Data.ResultType != "vector" {
		return nil, fmt.Errorf("query %q: status %q (%s), result type %q", promql, body.Status, body.Error, body.Data.ResultType)
	}
	out := make([]Sample, 0, len(body.Data.Result))
	for _, r := range body.Data.Result {
		var s string
		if err := json.Unmarshal(bytes.TrimSpace(r.Value[1]), &s); err != nil {
			return nil, fmt.Errorf("query %q: value %s: %w", promql, r.Value[1], err)
		}
		v, err := strconv.ParseFloat(s, 64)
		if err != nil {
			return nil, fmt.Errorf("query %q: value %q: %w", promql, s, err)
		}
		out = append(out, Sample{Metric: r.Metric, Value: v})
	}
	return out, nil
}

// QueryValue runs a query that must answer one series and returns its value.
func (p *Prometheus) QueryValue(promql string) (float64, error) {
	s, err := p.Query(promql)
	if err != nil {
		return 0, err
	}
	if len(s) != 1 {
		return 0, fmt.Errorf("query %q: %d series; want 1", promql, len(s))
	}
	return s[0].Value, nil
}

// WaitValue polls a one-series query until it answers want, failing the
// test with the last answer after timeout: the way to wait for a scrape.
func (p *Prometheus) WaitValue(tb testing.TB, timeout time.Duration, promql string, want float64) {
	tb.Helper()
	WaitFor(tb, timeout, func() error {
		got, err := p.QueryValue(promql)
		if err != nil {
			return err
		}
		if got != want {
			return fmt.Errorf("%s = %v; want %v", promql, got, want)
		}
		return nil
	})
}
