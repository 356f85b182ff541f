package meta

import (
	"encoding/json"
	"os/exec"
	"slices"
	"strings"
	"testing"
)

type pkg struct {
	ImportPath string
	Doc        string
	Name       string
	Imports    []string
	Deps       []string
}

func listPackages(t *testing.T, args ...string) []pkg {
	t.Helper()
	cmd := exec.Command("go", append([]string{"list", "-json"}, args...)...)
	cmd.Dir = "../.."
	out, err := cmd.Output()
	if err != nil {
		t.Fatalf("go list: %v", err)
	}
	var pkgs []pkg
	dec := json.NewDecoder(strings.NewReader(string(out)))
	for dec.More() {
		var p pkg
		if err := dec.Decode(&p); err != nil {
			t.Fatal(err)
		}
		pkgs = append(pkgs, p)
	}
	return pkgs
}

func TestEveryPackageHasADocComment(t *testing.T) {
	for _, p := range listPackages(t, "./...") {
		if p.Doc == "" {
			t.Errorf("package %s has no doc comment", p.ImportPath)
		}
	}
}

// Import rules: the request path never talks to Redis directly (it goes
// through the domain packages' interfaces), and nothing test-only ends up in
// the binary.
func TestDependencyRules(t *testing.T) {
	const mod = "github.com/tollgate-dev/tollgate/"
	rules := []struct {
		pkg       string
		forbidden []string
		direct    bool
	}{
		{"./proxy", []string{"github.com/redis/go-redis/v9", "github.com/stripe/stripe-go/v76"}, true},
		{"./proxy/auth", []string{"github.com/redis/go-redis/v9", "github.com/stripe/stripe-go/v76"}, true},
		{"./config", []string{"github.com/redis/go-redis/v9", "github.com/stripe/stripe-go/v76", "net/http"}, false},
		{"./cmd/tollgate", []string{"testing", mod + "internal/testrig", "net/http/httptest", "go.uber.org/goleak"}, false},
	}
	for _, r := range rules {
		for _, p := range listPackages(t, r.pkg) {
			got := p.Deps
			if r.direct {
				got = p.Imports
			}
			for _, f := range r.forbidden {
				if slices.Contains(got, f) {
					t.Errorf("%s imports %s (direct=%v); that is not allowed", p.ImportPath, f, r.direct)
				}
			}
		}
	}
}
