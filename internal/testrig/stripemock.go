package testrig

import (
	"bytes"
	"errors"
	"fmt"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"
	"sync"
	"testing"
	"time"
)

// stripeMockReadyTimeout bounds stripe-mock's start-up (about 1 s normally:
// it loads Stripe's OpenAPI spec and fixtures).
const stripeMockReadyTimeout = 30 * time.Second

var stripeMockListenRE = regexp.MustCompile(`Listening for HTTP at address: (127\.0\.0\.1:[0-9]+)`)

// StripeMock is a stripe-mock process owned by one test. stripe-mock checks
// request shapes against Stripe's OpenAPI spec and answers with fixtures; it
// keeps no state (use NewStripeDouble for behaviour).
type StripeMock struct {
	url string
}

// URL is stripe-mock's plain-HTTP base URL, for StripeClient.
func (s *StripeMock) URL() string { return s.url }

// StartStripeMock starts stripe-mock on loopback ports chosen by the kernel
// and kills it at cleanup. It looks for the binary on PATH, then in
// $(go env GOBIN) and $(go env GOPATH)/bin. If it is absent the test is
// skipped, or fails when TOLLGATE_TEST_REQUIRE_STRIPE_MOCK=1.
func StartStripeMock(tb testing.TB) *StripeMock {
	tb.Helper()
	bin, err := findStripeMock()
	if err != nil {
		missingStripeMock(tb, err)
		return nil // reached only if tb's Skipf returns (a fake TB)
	}
	out := &capturedOutput{}
	p, err := startProcess(bin, []string{"-http-addr", "127.0.0.1:0", "-https-addr", "127.0.0.1:0"}, out)
	if err != nil {
		tb.Fatalf("testrig: %v", err)
	}
	tb.Cleanup(p.kill)
	var url string
	err = poll(stripeMockReadyTimeout, func() error {
		if p.exited() {
			return permanent(fmt.Errorf("stripe-mock exited: %v", p.err))
		}
		m := stripeMockListenRE.FindStringSubmatch(out.String())
		if m == nil {
			return errors.New("no \"Listening for HTTP\" line yet")
		}
		url = "http://" + m[1]
		return probeHTTP(url)
	})
	if err != nil {
		tb.Fatalf("testrig: stripe-mock not ready: %v\n--- stripe-mock output ---\n%s", err, out.String())
	}
	return &StripeMock{url: url}
}

// probeHTTP succeeds once url answers any HTTP response.
func probeHTTP(url string) error {
	c := &http.Client{
		Timeout:   time.Second,
		Transport: &http.Transport{DisableKeepAlives: true},
	}
	resp, err := c.Get(url + "/v1/customers/cus_testrig_probe")
	if err != nil {
		return err
	}
	return resp.Body.Close()
}

// findStripeMock returns the stripe-mock binary to run.
func findStripeMock() (string, error) {
	if p, err := exec.LookPath("stripe-mock"); err == nil {
		return p, nil
	}
	tried := []string{"$PATH"}
	for _, dir := range goBinDirs() {
		p := filepath.Join(dir, "stripe-mock")
		if fi, err := os.Stat(p); err == nil && fi.Mode().IsRegular() && fi.Mode()&0o111 != 0 {
			return p, nil
		}
		tried = append(tried, p)
	}
	return "", fmt.Errorf("looked in %s", strings.Join(tried, ", "))
}

// goBinDirs lists where `go install` puts binaries: GOBIN, else each GOPATH
// entry's bin. It asks the go command (which honours `go env -w`) and falls
// back to the environment and the default GOPATH.
func goBinDirs() []string {
	gobin, gopath := os.Getenv("GOBIN"), os.Getenv("GOPATH")
	if out, err := exec.Command("go", "env", "GOBIN", "GOPATH").Output(); err == nil {
		if lines := strings.Split(strings.TrimSpace(string(out)), "\n"); len(lines) == 2 {
			gobin, gopath = strings.TrimSpace(lines[0]), strings.TrimSpace(lines[1])
		}
	}
	if gopath == "" {
		if home, err := os.UserHomeDir(); err == nil {
			gopath = filepath.Join(home, "go")
		}
	}
	var dirs []string
	if gobin != "" {
		dirs = append(dirs, gobin)
	}
	for _, p := range filepath.SplitList(gopath) {
		if p != "" {
			dirs = append(dirs, filepath.Join(p, "bin"))
		}
	}
	return dirs
}

// capturedOutput collects a child's output for start-up parsing and failure
// messages, keeping at most its first maxCapturedOutput bytes.
type capturedOutput struct {
	mu  sync.Mutex
	buf bytes.Buffer
}

const maxCapturedOutput = 1 << 20

func (c *capturedOutput) Write(p []byte) (int, error) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if room := maxCapturedOutput - c.buf.Len(); room > 0 {
		c.buf.Write(p[:min(len(p), room)])
	}
	return len(p), nil
}

func (c *capturedOutput) String() string {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.buf.String()
}
