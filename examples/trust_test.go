package examples_test

import (
	"fmt"
	"net/http"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/tollgate-dev/tollgate/examples/internal/stack"
	"github.com/tollgate-dev/tollgate/internal/testrig"
)

// A request that did not pass tollgate carries no verified identity: the
// apps refuse to serve it as anyone (Next.js renders its error page).
func TestAppsRefuseRequestsWithoutIdentity(t *testing.T) {
	for _, app := range stack.Apps() {
		t.Run(app.Name, func(t *testing.T) {
			port := testrig.FreePort(t)
			c := app.Run(t, port)
			base := fmt.Sprintf("http://127.0.0.1:%d", port)
			waitUp(t, c, base+"/healthz")
			for _, path := range []string{"/reports", "/api/generate?rows=2", "/billing"} {
				resp, err := http.Get(base + path)
				if err != nil {
					t.Fatal(err)
				}
				resp.Body.Close()
				if resp.StatusCode != http.StatusUnauthorized && resp.StatusCode != http.StatusInternalServerError {
					t.Errorf("GET %s without tollgate = %d; want 401 (500 for a Next.js page)", path, resp.StatusCode)
				}
			}
		})
	}
}

// The Express app will not listen on a public address, where a client
// could reach it around tollgate and send its own X-Tollgate-* headers.
func TestExpressRefusesPublicAddress(t *testing.T) {
	c := stack.Express().Run(t, testrig.FreePort(t), "HOST=0.0.0.0")
	err := c.Wait(30 * time.Second)
	if err == nil || !strings.Contains(c.Output(), "refusing to listen on 0.0.0.0") {
		t.Errorf("HOST=0.0.0.0: exit %v, output:\n%s\nwant a refusal", err, c.Output())
	}
}

// The Django middleware refuses a request whose peer is not on loopback
// (the app was served on a public address after all), whatever headers it
// carries; a loopback peer gets through.
func TestDjangoRefusesNonLoopbackPeer(t *testing.T) {
	app := stack.Django()
	python := stack.Python()
	if python == "" {
		stack.Missing(t, "no python3 with Django and the Stripe library")
	}
	script := `
import django, os
os.environ.setdefault("DJANGO_SETTINGS_MODULE", "exampleapp.settings")
django.setup()
from django.test import Client
for addr in ["203.0.113.7", "::ffff:10.0.0.1", "", "127.0.0.1"]:
    r = Client(REMOTE_ADDR=addr, HTTP_X_TOLLGATE_USER="u_1", HTTP_X_TOLLGATE_FEATURES="reports").get("/reports")
    print(addr or "-", r.status_code)
`
	cmd := exec.Command(python, "-c", script)
	cmd.Dir = app.Dir
	cmd.Env = append(cmd.Environ(), "DJANGO_SECRET_KEY=x", "TOLLGATE_FORWARD_SECRET=whsec_x", "DJANGO_ALLOWED_HOSTS=testserver",
		"DATA_DIR="+filepath.Join(t.TempDir(), "data"))
	out, err := cmd.CombinedOutput()
	if err != nil {
		t.Fatalf("%v\n%s", err, out)
	}
	want := "203.0.113.7 403\n::ffff:10.0.0.1 403\n- 403\n127.0.0.1 200\n"
	if string(out) != want {
		t.Errorf("Django /reports by peer:\n%s\nwant:\n%s", out, want)
	}
}

func waitUp(t *testing.T, c *testrig.Command, url string) {
	t.Helper()
	testrig.WaitFor(t, 60*time.Second, func() error {
		if done, err := c.Exited(); done {
			t.Fatalf("app exited (%v):\n%s", err, c.Output())
		}
		resp, err := http.Get(url)
		if err != nil {
			return err
		}
		resp.Body.Close()
		return nil
	})
}
