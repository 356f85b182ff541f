package main

import (
	"bytes"
	"context"
	"errors"
	"io"
	"net"
	"net/url"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	"gopkg.in/yaml.v3"

	"github.com/tollgate-dev/tollgate/config"
)

// deployEnv sets the variables the shipped configs refer to.
func deployEnv(t *testing.T) {
	t.Setenv("STRIPE_SECRET_KEY", "sk_test_x")
	t.Setenv("STRIPE_WEBHOOK_SECRET", "whsec_x")
	t.Setenv("REDIS_PASSWORD", "pw")
	t.Setenv("JWT_HMAC_SECRET", strings.Repeat("s", 64))
}

// k8sDocs decodes every YAML document of a file under deploy/kubernetes into
// a fresh T. The strict, typed decoding of every document is done by the
// deploy/validate module; these tests only read what relates to the config.
func k8sDocs[T any](t *testing.T, file string) []T {
	t.Helper()
	b, err := os.ReadFile(filepath.Join("../../deploy/kubernetes", file))
	if err != nil {
		t.Fatal(err)
	}
	var out []T
	dec := yaml.NewDecoder(bytes.NewReader(b))
	for {
		var doc T
		err := dec.Decode(&doc)
		if errors.Is(err, io.EOF) {
			return out
		}
		if err != nil {
			t.Fatalf("%s: %v", file, err)
		}
		out = append(out, doc)
	}
}

// k8sConfig writes the tollgate.yaml of the Kubernetes ConfigMap to a file.
func k8sConfig(t *testing.T) string {
	t.Helper()
	var embedded string
	for _, d := range k8sDocs[struct {
		Kind string
		Data map[string]string
	}](t, "configmap.yaml") {
		if d.Kind == "ConfigMap" {
			embedded = d.Data["tollgate.yaml"]
		}
	}
	if embedded == "" {
		t.Fatal("no tollgate.yaml in deploy/kubernetes/configmap.yaml")
	}
	path := filepath.Join(t.TempDir(), "k8s.yaml")
	if err := os.WriteFile(path, []byte(embedded), 0o600); err != nil {
		t.Fatal(err)
	}
	return path
}

// The configs shipped under deploy/ are documentation users copy; each must
// pass `tollgate check`.
func TestDeployConfigsAreValid(t *testing.T) {
	deployEnv(t)
	for _, path := range []string{"../../deploy/tollgate.example.yaml", "../../deploy/tollgate.compose.yaml", k8sConfig(t)} {
		var out bytes.Buffer
		if code := run(context.Background(), []string{"check", "-config", path}, &out, &out); code != 0 {
			t.Errorf("tollgate check %s = %d:\n%s", path, code, out.String())
		}
	}
}

// k8sPod is the part of deployment.yaml that must agree with the config.
type k8sPod struct {
	Kind string
	Spec struct {
		Template struct {
			Spec struct {
				TerminationGracePeriodSeconds int64 `yaml:"terminationGracePeriodSeconds"`
				Containers                    []struct {
					Name  string
					Ports []struct {
						Name          string
						ContainerPort string `yaml:"containerPort"`
					}
					Lifecycle struct {
						PreStop struct {
							Sleep struct{ Seconds int64 }
						} `yaml:"preStop"`
					}
				}
			}
		}
	}
}

// Issue 12: a grace period shorter than tollgate's shutdown lets the kubelet
// SIGKILL it during the final flush, losing the usage counted since the
// last one. The shutdown is drain_delay, then in-flight requests for at most
// shutdown_timeout, then the flush with a bound of its own of the same
// length (internal/sidecar Sidecar.shutdown).
func TestKubernetesGracePeriodCoversShutdown(t *testing.T) {
	deployEnv(t)
	cfg, err := loadConfig(k8sConfig(t))
	if err != nil {
		t.Fatal(err)
	}
	const margin = 10 * time.Second // closing Redis and the JWKS client
	sc := cfg.Server
	need := cfg.ShutdownBound() + margin
	pods := k8sDocs[k8sPod](t, "deployment.yaml")
	if len(pods) != 1 || pods[0].Kind != "Deployment" {
		t.Fatalf("deployment.yaml: want one Deployment, got %d documents", len(pods))
	}
	spec := pods[0].Spec.Template.Spec
	if got := time.Duration(spec.TerminationGracePeriodSeconds) * time.Second; got < need {
		t.Errorf("terminationGracePeriodSeconds = %v; want at least the shutdown bound %v (drain_delay %v + shutdown_timeout %v + quota return %v + final flush %v) + %v = %v",
			got, cfg.ShutdownBound(), sc.DrainDelay, sc.ShutdownTimeout, cfg.QuotaReturnBound(), sc.ShutdownTimeout, margin, need)
	}
	// The app must keep serving until tollgate's in-flight requests are done.
	for _, c := range spec.Containers {
		if c.Name != "app" {
			continue
		}
		if got, want := time.Duration(c.Lifecycle.PreStop.Sleep.Seconds)*time.Second, sc.DrainDelay+sc.ShutdownTimeout; got < want {
			t.Errorf("app preStop sleep = %v; want at least drain_delay + shutdown_timeout = %v", got, want)
		}
	}
}

// The container ports the probes, the Service and the PodMonitor name must
// be the ones the config listens on, and the app must be on loopback.
func TestKubernetesPortsMatchConfig(t *testing.T) {
	deployEnv(t)
	cfg, err := loadConfig(k8sConfig(t))
	if err != nil {
		t.Fatal(err)
	}
	ports := map[string]string{}
	for _, c := range k8sDocs[k8sPod](t, "deployment.yaml")[0].Spec.Template.Spec.Containers {
		if c.Name == "tollgate" {
			for _, p := range c.Ports {
				ports[p.Name] = p.ContainerPort
			}
		}
	}
	for _, c := range []struct{ port, addr, key string }{
		{"http", cfg.Listen, "listen"},
		{"admin", cfg.AdminListen, "admin_listen"},
	} {
		_, port, err := net.SplitHostPort(c.addr)
		if err != nil {
			t.Fatalf("%s %q: %v", c.key, c.addr, err)
		}
		if ports[c.port] != port {
			t.Errorf("container port %q = %q; want %s's port %s", c.port, ports[c.port], c.key, port)
		}
	}
	if !isLoopbackUpstream(cfg) {
		t.Errorf("upstream %q is not on loopback: the app would be reachable past the gate", cfg.Upstream)
	}
}

func isLoopbackUpstream(cfg *config.Config) bool {
	u, err := url.Parse(cfg.Upstream)
	if err != nil {
		return false
	}
	ip := net.ParseIP(u.Hostname())
	_, err = strconv.Atoi(u.Port())
	return ip != nil && ip.IsLoopback() && err == nil
}
