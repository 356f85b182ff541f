package validate

import (
	"context"
	"maps"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"

	"github.com/compose-spec/compose-go/v2/loader"
	"github.com/compose-spec/compose-go/v2/types"
)

const composeFile = "../compose.yaml"

// loadCompose loads deploy/compose.yaml with the Compose Specification's
// loader (schema validation, interpolation, path resolution), as `docker
// compose config` would, with env as the environment.
func loadCompose(t *testing.T, env map[string]string) (*types.Project, error) {
	t.Helper()
	abs, err := filepath.Abs(composeFile)
	if err != nil {
		t.Fatal(err)
	}
	b, err := os.ReadFile(abs)
	if err != nil {
		t.Fatal(err)
	}
	details := types.ConfigDetails{
		WorkingDir:  filepath.Dir(abs),
		ConfigFiles: []types.ConfigFile{{Filename: abs, Content: b}},
		Environment: maps.Clone(env), // the loader adds to it
	}
	return loader.LoadWithContext(context.Background(), details, func(o *loader.Options) {
		o.SetProjectName("tollgate", true)
		o.ResolvePaths = true
	})
}

var composeEnv = map[string]string{
	"STRIPE_SECRET_KEY":     "sk_test_x",
	"STRIPE_WEBHOOK_SECRET": "whsec_x",
	"JWT_HMAC_SECRET":       strings.Repeat("s", 64),
}

func service(t *testing.T, p *types.Project, name string) types.ServiceConfig {
	t.Helper()
	s, err := p.GetService(name)
	if err != nil {
		t.Fatalf("compose: %v", err)
	}
	return s
}

// Issue 12: the compose stack must work on Linux as shipped and keep the
// durability the README requires: host.docker.internal mapped to the host
// gateway (it resolves by itself only on Docker Desktop), Redis with AOF
// fsynced on every write, Prometheus and Grafana in the stack, and every
// file it mounts present in the repository.
func TestComposeStack(t *testing.T) {
	p, err := loadCompose(t, composeEnv)
	if err != nil {
		t.Fatalf("compose.yaml does not load: %v", err)
	}
	tg := service(t, p, "tollgate")
	if got := tg.ExtraHosts["host.docker.internal"]; !slices.Contains(got, "host-gateway") {
		t.Errorf("tollgate extra_hosts[host.docker.internal] = %v; want host-gateway", got)
	}
	if !tg.ReadOnly || !slices.Contains(tg.CapDrop, "ALL") {
		t.Errorf("tollgate read_only = %v, cap_drop = %v; want true and [ALL]", tg.ReadOnly, tg.CapDrop)
	}
	for _, v := range []string{"STRIPE_SECRET_KEY", "STRIPE_WEBHOOK_SECRET", "JWT_HMAC_SECRET"} {
		if got := tg.Environment[v]; got == nil || *got != composeEnv[v] {
			t.Errorf("tollgate environment %s = %v; want it passed from the environment", v, got)
		}
	}
	redis := strings.Join(service(t, p, "redis").Command, " ")
	for _, want := range []string{"--appendonly yes", "--appendfsync always", "--maxmemory-policy noeviction"} {
		if !strings.Contains(redis, want) {
			t.Errorf("redis command %q lacks %q", redis, want)
		}
	}
	for _, name := range []string{"prometheus", "grafana"} {
		service(t, p, name)
	}
	for _, s := range p.Services {
		for _, v := range s.Volumes {
			if v.Type != types.VolumeTypeBind {
				continue
			}
			if _, err := os.Stat(v.Source); err != nil {
				t.Errorf("%s mounts %s, which is not in the repository: %v", s.Name, v.Source, err)
			}
		}
		for _, port := range s.Ports {
			if port.HostIP != "127.0.0.1" {
				t.Errorf("%s publishes port %d on %q; want loopback only", s.Name, port.Target, port.HostIP)
			}
		}
	}
	for _, want := range []string{"/etc/tollgate/tollgate.yaml", "/etc/prometheus/prometheus.yml", "/etc/prometheus/alerts.yaml",
		"/etc/grafana/provisioning", "/var/lib/grafana/dashboards/tollgate.json"} {
		if !mounted(p, want) {
			t.Errorf("nothing is mounted at %s", want)
		}
	}
}

func mounted(p *types.Project, target string) bool {
	for _, s := range p.Services {
		for _, v := range s.Volumes {
			if v.Target == target {
				return true
			}
		}
	}
	return false
}

// Issue 12: compose passed ” for an unset STRIPE_SECRET_KEY, which ran
// tollgate without Stripe. The stack now refuses to start instead.
func TestComposeRefusesUnsetSecrets(t *testing.T) {
	for v := range composeEnv {
		env := map[string]string{}
		for k, val := range composeEnv {
			if k != v {
				env[k] = val
			}
		}
		if _, err := loadCompose(t, env); err == nil || !strings.Contains(err.Error(), v) {
			t.Errorf("compose without %s: err = %v; want an error naming it", v, err)
		}
	}
}
