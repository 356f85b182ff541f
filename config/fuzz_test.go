package config

import (
	"bytes"
	"os"
	"strings"
	"testing"
)

// FuzzLoad feeds the loader (Parse, then Validate) arbitrary files. It
// must not panic; it returns a configuration or problems, never neither;
// and every problem message stays short, whatever the file holds (values
// are quoted cut to size). The seeds are the shipped configs, the test
// configs, and small forms of issue 11's files (a large anchor bomb makes
// every mutation slow to run; TestAliasExpansionIsBounded has those).
func FuzzLoad(f *testing.F) {
	for _, path := range []string{"../deploy/tollgate.example.yaml", "../cmd/tollgate/testdata/good.yaml",
		"../cmd/tollgate/testdata/bad.yaml", "../cmd/tollgate/demo.yaml"} {
		b, err := os.ReadFile(path)
		if err != nil {
			f.Fatal(err)
		}
		f.Add(b)
	}
	for _, s := range []string{
		minimal,
		"m: &m [GET, GET, GET]\nr: &r { path: /x, methods: *m }\nroutes: [*r, *r, *r]\n",
		"routes: &r [ { path: /x, methods: *r } ]\n",
		"plans: { a: &a { prices: [price_1], features: [x] }, b: *a }\n",
		"listen: \"" + strings.Repeat("\\xff", 300) + "\"\n",
		"gating: { max_staleness: " + strings.Repeat("9", 400) + "h }\n",
		"upstream: ${" + strings.Repeat("V", 300) + "}\n",
		"{",
		"",
		"--- []\n",
	} {
		f.Add([]byte(s))
	}
	f.Fuzz(func(t *testing.T, data []byte) {
		cfg, err := Load(bytes.NewReader(data), func(string) (string, bool) { return "from-env", true })
		if cfg == nil && err == nil {
			t.Fatal("Load returned neither a configuration nor an error")
		}
		for _, p := range Problems(err) {
			if n := len(p.Error()); n > 4096 {
				t.Errorf("a problem message of %d bytes: %.300s…", n, p.Error())
			}
		}
	})
}

// Found by FuzzLoad: an empty entry in a map of plans or meters was left
// nil, and validation dereferenced it (a panic in tollgate check). It is
// an empty mapping, which validation describes.
func TestEmptyMapEntryIsAnEmptyMapping(t *testing.T) {
	_, err := Load(strings.NewReader("plans: { pro: }\nmetering: { meters: { calls: } }\n"), env(nil))
	for _, want := range []string{"plans.pro.prices: needs at least one", "metering.meters.calls.event_name: required"} {
		if err == nil || !strings.Contains(err.Error(), want) {
			t.Errorf("Load = %v; want %q", err, want)
		}
	}
}
