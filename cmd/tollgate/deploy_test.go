package main

import (
	"bytes"
	"context"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"gopkg.in/yaml.v3"
)

// The configs shipped under deploy/ are documentation users copy; each must
// pass `tollgate check`.
func TestDeployConfigsAreValid(t *testing.T) {
	t.Setenv("STRIPE_SECRET_KEY", "sk_test_x")
	t.Setenv("STRIPE_WEBHOOK_SECRET", "whsec_x")
	t.Setenv("REDIS_PASSWORD", "pw")
	t.Setenv("JWT_HMAC_SECRET", strings.Repeat("s", 64))
	dir := t.TempDir()
	k8s, err := os.ReadFile("../../deploy/kubernetes/sidecar.yaml")
	if err != nil {
		t.Fatal(err)
	}
	var embedded string
	dec := yaml.NewDecoder(bytes.NewReader(k8s))
	for {
		var doc struct {
			Kind string
			Data map[string]string
		}
		if dec.Decode(&doc) != nil {
			break
		}
		if doc.Kind == "ConfigMap" {
			embedded = doc.Data["tollgate.yaml"]
		}
	}
	if embedded == "" {
		t.Fatal("no tollgate.yaml in the Kubernetes ConfigMap")
	}
	k8sPath := filepath.Join(dir, "k8s.yaml")
	os.WriteFile(k8sPath, []byte(embedded), 0o600)
	for _, path := range []string{"../../deploy/tollgate.example.yaml", "../../deploy/tollgate.compose.yaml", k8sPath} {
		var out bytes.Buffer
		if code := run(context.Background(), []string{"check", "-config", path}, &out, &out); code != 0 {
			t.Errorf("tollgate check %s = %d:\n%s", path, code, out.String())
		}
	}
}
