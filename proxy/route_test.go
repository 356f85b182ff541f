package proxy

import (
	"errors"
	"strings"
	"testing"
)

func TestCompilePattern(t *testing.T) {
	tests := []struct {
		name    string
		in      string
		wantErr bool
	}{
		{name: "root", in: "/"},
		{name: "literal", in: "/healthz"},
		{name: "nested literal", in: "/api/v1/users"},
		{name: "single star", in: "/api/*/items"},
		{name: "double star last", in: "/api/**"},
		{name: "double star only", in: "/**"},
		{name: "star then double star", in: "/api/*/**"},
		{name: "canonical escape", in: "/caf%C3%A9"},
		{name: "sub-delims", in: "/a/b:c@d"},

		{name: "empty", in: "", wantErr: true},
		{name: "relative", in: "api/**", wantErr: true},
		{name: "double star not last", in: "/api/**/x", wantErr: true},
		{name: "double star twice", in: "/**/**", wantErr: true},
		{name: "star prefix", in: "/api/*.json", wantErr: true},
		{name: "star suffix", in: "/api/v*", wantErr: true},
		{name: "triple star", in: "/api/***", wantErr: true},
		{name: "dot segment", in: "/api/./x", wantErr: true},
		{name: "dotdot segment", in: "/api/../admin", wantErr: true},
		{name: "empty segment", in: "/api//x", wantErr: true},
		{name: "leading double slash", in: "//admin", wantErr: true},
		// "/admin/" would suggest "/admin" escapes the route; matching ignores
		// a trailing slash, so the pattern must not carry one.
		{name: "trailing slash", in: "/admin/", wantErr: true},
		{name: "lowercase hex", in: "/caf%c3%a9", wantErr: true},
		{name: "needless escape", in: "/%41pi", wantErr: true},
		{name: "encoded dotdot", in: "/api/%2e%2e", wantErr: true},
		{name: "encoded slash", in: "/api/a%2Fb", wantErr: true},
		{name: "raw semicolon", in: "/api;x", wantErr: true},
		{name: "raw backslash", in: `/api\x`, wantErr: true},
		{name: "query", in: "/api?x", wantErr: true},
		{name: "raw space", in: "/a b", wantErr: true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			p, err := CompilePattern(tt.in)
			switch {
			case tt.wantErr && err == nil:
				t.Fatalf("CompilePattern(%q) = %v; want error", tt.in, p)
			case tt.wantErr && !errors.Is(err, ErrBadPattern):
				t.Fatalf("CompilePattern(%q) error = %v; want ErrBadPattern", tt.in, err)
			case !tt.wantErr && err != nil:
				t.Fatalf("CompilePattern(%q) error = %v; want nil", tt.in, err)
			case !tt.wantErr && p.String() != tt.in:
				t.Fatalf("CompilePattern(%q).String() = %q; want %q", tt.in, p.String(), tt.in)
			}
		})
	}
}

func TestPatternMatch(t *testing.T) {
	tests := []struct {
		pattern, path string
		want          bool
	}{
		{"/", "/", true},
		{"/", "/a", false},
		{"/healthz", "/healthz", true},
		{"/healthz", "/healthz/", true},
		// Literal segments ignore ASCII case (CWE-178): a case variant must
		// not reach a looser route behind a case-insensitive app router.
		{"/healthz", "/Healthz", true},
		{"/api/exports/**", "/api/EXPORTS/all", true},
		{"/api/exports/**", "/API/Exports", true},
		{"/api/exports/**", "/api/exportsx", false},
		{"/healthz", "/healthzx", false},
		{"/healthz", "/health", false},
		{"/healthz", "/healthz/x", false},
		{"/healthz", "/", false},
		// A trailing slash must not route past a stricter route.
		{"/admin", "/admin/", true},
		{"/api/v1", "/api/v1/", true},
		{"/api/*", "/api/x", true},
		{"/api/*", "/api/x/", true},
		{"/api/*", "/api", false},
		{"/api/*", "/api/", false},
		{"/api/*", "/api/x/y", false},
		{"/api/*/items", "/api/42/items", true},
		{"/api/*/items", "/api/42/other", false},
		{"/api/**", "/api", true},
		{"/api/**", "/api/", true},
		{"/api/**", "/api/a", true},
		{"/api/**", "/api/a/b/c/", true},
		{"/api/**", "/apix", false},
		{"/api/**", "/apix/a", false},
		{"/api/**", "/", false},
		{"/api/*/**", "/api", false},
		{"/api/*/**", "/api/a", true},
		{"/api/*/**", "/api/a/b", true},
		{"/**", "/", true},
		{"/**", "/anything/at/all", true},
		{"/caf%C3%A9", "/caf%C3%A9", true},
		{"/caf%C3%A9", "/caf%C3%89", false}, // only ASCII case is folded
		{"/a", "", false},
		{"/a", "a", false},
		// Non-canonical input never matches a "*" with an empty segment.
		{"/api/*/x", "/api//x", false},
	}
	for _, tt := range tests {
		p, err := CompilePattern(tt.pattern)
		if err != nil {
			t.Fatalf("CompilePattern(%q) error = %v", tt.pattern, err)
		}
		if got := p.Match(tt.path); got != tt.want {
			t.Errorf("CompilePattern(%q).Match(%q) = %v; want %v", tt.pattern, tt.path, got, tt.want)
		}
	}
}

func TestZeroPatternMatchesNothing(t *testing.T) {
	var p Pattern
	for _, path := range []string{"/", "/a", ""} {
		if p.Match(path) {
			t.Errorf("Pattern{}.Match(%q) = true; want false", path)
		}
	}
}

// TestPatternMatchHostilePaths runs every normalised hostile path through
// routes the way the proxy will: an attack that normalises onto /admin must
// match "/admin/**", and none may match a route it does not belong to.
func TestPatternMatchHostilePaths(t *testing.T) {
	admin, err := CompilePattern("/admin/**")
	if err != nil {
		t.Fatal(err)
	}
	for _, tt := range hostilePaths {
		if tt.wantErr {
			continue
		}
		got := admin.Match(tt.want)
		want := tt.want == "/admin" || strings.HasPrefix(tt.want, "/admin/")
		if got != want {
			t.Errorf("%s: CompilePattern(%q).Match(%q) = %v; want %v", tt.name, "/admin/**", tt.want, got, want)
		}
	}
}

func TestPatternMatchAllocs(t *testing.T) {
	p, err := CompilePattern("/api/*/items/**")
	if err != nil {
		t.Fatal(err)
	}
	allocs := testing.AllocsPerRun(100, func() {
		p.Match("/api/42/items/a/b/c/")
	})
	if allocs != 0 {
		t.Errorf("Match allocs = %v; want 0", allocs)
	}
}

func BenchmarkPatternMatch(b *testing.B) {
	p, err := CompilePattern("/api/*/items/**")
	if err != nil {
		b.Fatal(err)
	}
	paths := []string{"/api/42/items", "/api/42/items/a/b/c/", "/api/42/other", "/healthz"}
	b.ReportAllocs()
	for i := 0; b.Loop(); i++ {
		p.Match(paths[i%len(paths)])
	}
}
