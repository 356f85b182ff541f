package main

import (
	"bufio"
	"encoding/json"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/tollgate-dev/tollgate/internal/testrig"
)

// publicProxyConfig is a serve config on loopback ports of its own that
// forwards every path to upstream without auth, with the given server
// settings.
func publicProxyConfig(upstream, server string) string {
	return fmt.Sprintf(`
listen: 127.0.0.1:0
admin_listen: 127.0.0.1:0
upstream: %s
server: %s
auth: { jwt: { algorithms: [HS256], audience: [api], hmac_secret: %q } }
routes: [ { path: /**, auth: none } ]
stripe: { trusted_payloads: true }
`, upstream, server, strings.Repeat("k", 32))
}

func runCmd(name string, args ...string) ([]byte, error) {
	return exec.Command(name, args...).CombinedOutput()
}

// A real SIGTERM to the real binary: readiness drops, the in-flight request
// completes, new connections are refused, the process exits 0.
func TestSIGTERMDrainsInFlight(t *testing.T) {
	bin := buildBinary(t)
	arrived, release := make(chan struct{}), make(chan struct{})
	app := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.URL.Path == "/slow" {
			close(arrived)
			<-release
		}
		io.WriteString(w, "done")
	}))
	defer app.Close()
	cfgPath := filepath.Join(t.TempDir(), "tollgate.yaml")
	os.WriteFile(cfgPath, []byte(publicProxyConfig(app.URL, "{ drain_delay: 300ms, shutdown_timeout: 20s }")), 0o600)

	cmd := exec.Command(bin, "serve", "-config", cfgPath)
	stderr, _ := cmd.StderrPipe()
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	exited := make(chan error, 1)
	logs := make(chan map[string]any, 100)
	go func() {
		sc := bufio.NewScanner(stderr)
		for sc.Scan() {
			var m map[string]any
			if json.Unmarshal(sc.Bytes(), &m) == nil {
				logs <- m
			}
		}
		close(logs)
		exited <- cmd.Wait()
	}()
	t.Cleanup(func() { cmd.Process.Kill() })

	var proxyAddr, adminAddr string
	for m := range logs {
		if m["msg"] == "tollgate serving" {
			proxyAddr, adminAddr = m["listen"].(string), m["admin_listen"].(string)
			break
		}
	}
	if proxyAddr == "" {
		t.Fatal("binary never logged that it is serving")
	}
	slow := make(chan string, 1)
	go func() {
		resp, err := http.Get("http://" + proxyAddr + "/slow")
		if err != nil {
			slow <- err.Error()
			return
		}
		b, _ := io.ReadAll(resp.Body)
		resp.Body.Close()
		slow <- fmt.Sprint(resp.StatusCode, " ", string(b))
	}()
	<-arrived
	if err := cmd.Process.Signal(syscall.SIGTERM); err != nil {
		t.Fatal(err)
	}
	testrig.Eventually(t, "/readyz 503", func() bool {
		resp, err := http.Get("http://" + adminAddr + "/readyz")
		if err != nil {
			return false
		}
		resp.Body.Close()
		return resp.StatusCode == 503
	})
	testrig.Eventually(t, "new connections refused", func() bool {
		c, err := net.DialTimeout("tcp", proxyAddr, time.Second)
		if err != nil {
			return true
		}
		c.Close()
		return false
	})
	close(release)
	if got := <-slow; got != "200 done" {
		t.Errorf("in-flight request = %q; want 200 done", got)
	}
	for range logs {
	}
	if err := <-exited; err != nil {
		t.Errorf("exit = %v; want 0", err)
	}
}
