package config

import (
	"errors"
	"fmt"
	"strings"
	"testing"
)

// quadraticAnchors is a 33 KB file whose aliases stand for 9 million
// nodes: a list of 3,000 methods, named by each of 3,000 routes.
func quadraticAnchors() string {
	return "upstream: http://127.0.0.1:3000\n" +
		"m: &m [" + strings.TrimSuffix(strings.Repeat("GET,", 3000), ",") + "]\n" +
		"r: &r { path: /x, auth: none, methods: *m }\n" +
		"routes: [" + strings.TrimSuffix(strings.Repeat("*r,", 3000), ",") + "]\n"
}

// Issue 11: the decoder followed aliases without a bound, so a small file
// whose aliases repeat a large anchor took seconds and hundreds of MB.
// Such a file is refused once MaxNodes nodes have been decoded.
func TestAliasExpansionIsBounded(t *testing.T) {
	for _, c := range []struct{ name, yaml string }{
		{"33 KB standing for 9 million nodes", quadraticAnchors()},
		{"one wide anchor, a few aliases", "x: &x [" + strings.TrimSuffix(strings.Repeat("GET,", 20_000), ",") + "]\n" +
			"routes: [ { path: /a, methods: *x }, { path: /b, methods: *x }, { path: /c, methods: *x }, " +
			"{ path: /d, methods: *x }, { path: /e, methods: *x }, { path: /f, methods: *x } ]\n"},
	} {
		t.Run(c.name, func(t *testing.T) {
			if len(c.yaml) > 200_000 {
				t.Fatalf("test file of %d bytes", len(c.yaml))
			}
			cfg, err := ParseEnv(strings.NewReader(c.yaml), env(nil))
			if !errors.Is(err, ErrTooManyNodes) || cfg != nil {
				t.Fatalf("ParseEnv = %v, %.300v; want nil, ErrTooManyNodes", cfg != nil, err)
			}
			if msg := err.Error(); !strings.Contains(msg, fmt.Sprint(MaxNodes)) || !strings.Contains(msg, "line ") {
				t.Errorf("message %q; want the bound and a line", msg)
			}
		})
	}
}

// An alias inside its own anchor cannot recurse: the configuration's types
// are not recursive, so the decoder meets a list where it wants a value.
func TestAliasInsideItsOwnAnchor(t *testing.T) {
	_, err := Load(strings.NewReader("upstream: http://127.0.0.1:3000\nroutes: &r [ { path: /x, methods: *r } ]\n"), env(nil))
	if err == nil || !strings.Contains(err.Error(), "routes[0].methods[0]: want a single value, got a mapping") {
		t.Errorf("Load = %v; want the type error", err)
	}
}

// Anchors and aliases used as intended still work.
func TestModestAliasesAreDecoded(t *testing.T) {
	yaml := `
upstream: http://127.0.0.1:3000
plans:
  starter: { prices: [price_1], features: &basic [reports, exports] }
  pro:     { prices: [price_2], features: *basic }
`
	cfg, err := ParseEnv(strings.NewReader(yaml), env(nil))
	if err != nil {
		t.Fatal(err)
	}
	if got := strings.Join(cfg.Plans["pro"].Features, ","); got != "reports,exports" {
		t.Errorf("pro's features through the alias = %q; want reports,exports", got)
	}
}

// Issue 11: error messages quoted values whole (a 10 MB value made a 10 MB
// message). A value or key from the file is quoted up to maxShown bytes,
// with its length; the message's own text (lists of known keys) is whole.
func TestMessagesCutLongValues(t *testing.T) {
	huge := strings.Repeat("é", 1<<19) // 1 MiB, two bytes a character
	for _, c := range []struct {
		name, yaml string
		want       []string
	}{
		{"parse: a bad duration", "gating: { max_staleness: \"" + huge + "\" }\n",
			[]string{`"` + strings.Repeat("é", maxShown/2) + `"… (1048576 bytes) is not a duration`}},
		{"parse: an unknown key", "server: { " + huge[:1000] + ": 1 }\n",
			[]string{"… (1007 bytes): unknown key (known keys: drain_delay, idle_timeout,"}},
		{"validate: a plan name", "plans: { " + huge[:1000] + ": { prices: [price_1] } }\n",
			[]string{`… (1006 bytes): plan name "` + strings.Repeat("é", maxShown/2) + `"… (1000 bytes) must be letters`}},
		{"validate: a bad listen address", "listen: \"" + huge + "\"\n",
			[]string{`listen: "` + strings.Repeat("é", maxShown/2) + `"… (1048576 bytes) is not host:port`}},
	} {
		t.Run(c.name, func(t *testing.T) {
			_, err := Load(strings.NewReader(c.yaml), env(nil))
			if err == nil {
				t.Fatal("Load succeeded; want an error")
			}
			for _, p := range Problems(err) {
				if n := len(p.Error()); n > 2000 {
					t.Errorf("a problem message of %d bytes: %.200s…", n, p.Error())
				}
			}
			msg := err.Error()
			for _, w := range c.want {
				if !strings.Contains(msg, w) {
					t.Errorf("message lacks %q:\n%.1000s", w, msg)
				}
			}
		})
	}
}

func TestShownCutsAtACharacterBoundary(t *testing.T) {
	for _, c := range []struct{ in, want string }{
		{"short", `"short"`},
		{strings.Repeat("a", maxShown), `"` + strings.Repeat("a", maxShown) + `"`},
		{strings.Repeat("a", maxShown-1) + "é", `"` + strings.Repeat("a", maxShown-1) + `"… (81 bytes)`},
		{strings.Repeat("a", maxShown+20), `"` + strings.Repeat("a", maxShown) + `"… (100 bytes)`},
	} {
		if got := fmt.Sprintf("%q", shown(c.in)); got != c.want {
			t.Errorf("%%q of %d bytes = %s; want %s", len(c.in), got, c.want)
		}
	}
}
