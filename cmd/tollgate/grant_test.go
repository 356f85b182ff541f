package main

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
	"time"

	"github.com/tollgate-dev/tollgate/config"
	"github.com/tollgate-dev/tollgate/entitlements"
	"github.com/tollgate-dev/tollgate/internal/store"
	"github.com/tollgate-dev/tollgate/internal/testrig"
)

// grantRig is a config file on a real redis-server and the store the
// command writes to.
func grantRig(t *testing.T) (cfgPath string, s *entitlements.RedisStore) {
	t.Helper()
	rd := testrig.StartRedis(t, testrig.WithoutPersistence())
	cfgPath = filepath.Join(t.TempDir(), "c.yaml")
	if err := os.WriteFile(cfgPath, []byte(fmt.Sprintf(`
upstream: http://127.0.0.1:3000
redis: { url: %q, prefix: "g:" }
auth: { jwt: { algorithms: [HS256], audience: [api], hmac_secret: %q } }
routes: [ { path: /**, auth: none } ]
stripe: { trusted_payloads: true }
plans:
  free: { prices: [price_free], features: [reports], limits: { calls: 100 } }
  pro:  { prices: [price_pro], features: [reports, exports] }
metering: { meters: { calls: { event_name: api_calls }, bytes: { event_name: bytes } } }
`, rd.URL(), strings.Repeat("k", 32))), 0o600); err != nil {
		t.Fatal(err)
	}
	st, err := store.Open(config.Redis{URL: rd.URL(), Prefix: "g:"}, newLogger(config.Log{Level: "error"}, &bytes.Buffer{}))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { st.Close() })
	return cfgPath, entitlements.NewRedisStore(st)
}

func grantRun(cfgPath string, args ...string) (code int, stdout, stderr string) {
	var out, errOut bytes.Buffer
	code = run(context.Background(), append([]string{"grant", "-config", cfgPath}, args...), &out, &errOut)
	return code, out.String(), errOut.String()
}

var grantIDInOutput = regexp.MustCompile(`gr_[a-z0-9]+`)

// An operator grants, lists, revokes and audits; every change is in Redis
// (where the replicas read it) and in the audit with who and why.
func TestGrantCommand(t *testing.T) {
	cfgPath, s := grantRig(t)
	ctx := context.Background()
	t.Setenv("USER", "alice")
	before := time.Now()

	code, out, errOut := grantRun(cfgPath, "-customer", "cus_A", "-features", "exports,sso,exports", "-limits", "calls=5000,bytes=7",
		"-plan", "pro", "-until", "720h", "-reason", "pilot, ticket 4411")
	if code != 0 || !strings.Contains(out, "granted gr_") || !strings.Contains(out, "by alice: pilot, ticket 4411") {
		t.Fatalf("grant = %d %q %q; want exit 0 naming the grant, who and why", code, out, errOut)
	}
	id := grantIDInOutput.FindString(out)
	gs, err := s.Grants(ctx, "cus_A")
	if err != nil || len(gs) != 1 {
		t.Fatalf("stored grants %+v, %v; want one", gs, err)
	}
	g := gs[0]
	if g.ID != id || g.Plan != "pro" || strings.Join(g.Features, ",") != "exports,sso" || g.Limits["calls"] != 5000 ||
		g.Limits["bytes"] != 7 || g.By != "alice" || g.Reason != "pilot, ticket 4411" {
		t.Errorf("stored %+v; want what the command line said (features once each)", g)
	}
	if want := before.Add(720 * time.Hour); g.Until.Before(want) || g.Until.After(time.Now().Add(720*time.Hour)) {
		t.Errorf("until %v; want 720h from the command's start (%v)", g.Until, want)
	}

	// -json, an RFC 3339 -until and -by.
	code, out, errOut = grantRun(cfgPath, "-customer", "cus_B", "-features", "beta", "-until", "2099-01-02T03:04:05Z",
		"-reason", "beta", "-by", "bob", "-json")
	var j struct {
		ID, Customer, By, Reason string
		Until                    time.Time
		Active                   bool
	}
	if code != 0 || json.Unmarshal([]byte(out), &j) != nil || j.Customer != "cus_B" || j.By != "bob" || !j.Active ||
		!j.Until.Equal(time.Date(2099, 1, 2, 3, 4, 5, 0, time.UTC)) {
		t.Fatalf("grant -json = %d %q %q; want the grant as JSON", code, out, errOut)
	}

	code, out, _ = grantRun(cfgPath, "-list")
	if code != 0 || !strings.Contains(out, id) || !strings.Contains(out, j.ID) || !strings.Contains(out, "2 grants, 2 active") {
		t.Errorf("-list = %d %q; want both grants", code, out)
	}
	code, out, _ = grantRun(cfgPath, "-list", "-customer", "cus_B", "-json")
	var list []map[string]any
	if code != 0 || json.Unmarshal([]byte(out), &list) != nil || len(list) != 1 || list[0]["id"] != j.ID {
		t.Errorf("-list -customer cus_B -json = %d %q; want cus_B's grant only", code, out)
	}
	if code, out, _ = grantRun(cfgPath, "-list", "-customer", "cus_none"); code != 0 || !strings.Contains(out, "no grants") {
		t.Errorf("-list of a customer without grants = %d %q", code, out)
	}

	code, out, errOut = grantRun(cfgPath, "-revoke", id, "-reason", "pilot over", "-by", "carol")
	if code != 0 || !strings.Contains(out, "revoked "+id+" of cus_A") {
		t.Fatalf("-revoke = %d %q %q", code, out, errOut)
	}
	if gs, _ := s.Grants(ctx, "cus_A"); len(gs) != 0 {
		t.Errorf("cus_A still holds %+v after the revoke", gs)
	}
	if code, _, errOut = grantRun(cfgPath, "-revoke", id); code != 1 || !strings.Contains(errOut, "no such grant") {
		t.Errorf("second -revoke = %d %q; want exit 1, no such grant", code, errOut)
	}

	code, out, _ = grantRun(cfgPath, "-audit")
	for _, want := range []string{"grant.revoked", "carol", "pilot over", "grant.created", "alice", "pilot, ticket 4411", "bob", "3 entries"} {
		if !strings.Contains(out, want) {
			t.Errorf("-audit = %d %q; want it to contain %q", code, out, want)
		}
	}
	code, out, _ = grantRun(cfgPath, "-audit", "-customer", "cus_A", "-json")
	var audit []entitlements.GrantEvent
	if code != 0 || json.Unmarshal([]byte(out), &audit) != nil || len(audit) != 2 || audit[0].Type != entitlements.GrantRevoked ||
		audit[0].By != "carol" || audit[1].Grant.Plan != "pro" {
		t.Errorf("-audit -customer cus_A -json = %d %q; want the revoke then the creation", code, out)
	}
}

// Bad input is refused with exit 2, naming the flag and the value, and
// nothing is written.
func TestGrantCommandRefusesBadInput(t *testing.T) {
	cfgPath, s := grantRig(t)
	t.Setenv("USER", "alice")
	ok := []string{"-customer", "cus_A", "-reason", "r"}
	for _, c := range []struct {
		name string
		args []string
		want string
	}{
		{"unknown plan", append(ok, "-plan", "gold"), `-plan "gold" is not a configured plan (plans: free, pro)`},
		{"unknown meter", append(ok, "-limits", "tokens=5"), `-limits: "tokens" is not a configured meter (meters: bytes, calls)`},
		{"negative limit", append(ok, "-limits", "calls=-5"), `-limits: calls="-5" must be a whole number from 1`},
		{"fractional limit", append(ok, "-limits", "calls=1.5"), `calls="1.5" must be a whole number`},
		{"exponent limit", append(ok, "-limits", "calls=1e3"), `calls="1e3" must be a whole number`},
		{"zero limit", append(ok, "-limits", "calls=0"), `calls="0" must be a whole number from 1`},
		{"huge limit", append(ok, "-limits", "calls=99999999999999999999"), `calls="99999999999999999999" must be a whole number`},
		{"limit without value", append(ok, "-limits", "calls"), `-limits: "calls" is not meter=N`},
		{"limit twice", append(ok, "-limits", "calls=5,calls=6"), `meter "calls" given twice`},
		{"past until", append(ok, "-features", "x", "-until", "2020-01-01T00:00:00Z"), `-until "2020-01-01T00:00:00Z" is in the past`},
		{"negative duration", append(ok, "-features", "x", "-until", "-5h"), `-until "-5h": a duration must be positive`},
		{"garbage until", append(ok, "-features", "x", "-until", "next week"), `-until "next week" is neither an RFC 3339 time`},
		{"bad feature", append(ok, "-features", "x,bad feature"), `-features: "bad feature" is not a valid feature name`},
		{"missing reason", []string{"-customer", "cus_A", "-features", "x"}, "-reason is required"},
		{"blank reason", []string{"-customer", "cus_A", "-features", "x", "-reason", "  "}, "-reason is required"},
		{"reason with a newline", []string{"-customer", "cus_A", "-features", "x", "-reason", "a\nb"}, "-reason \"a\\nb\" holds a control character"},
		{"missing customer", []string{"-features", "x", "-reason", "r"}, "-customer cus_... is required"},
		{"bad customer", []string{"-customer", "acme", "-features", "x", "-reason", "r"}, `-customer "acme" is not a Stripe customer id`},
		{"nothing to add", ok, "a grant needs -features, -limits or -plan"},
		{"list with a plan", []string{"-list", "-plan", "pro"}, "-plan only applies when granting"},
		{"list and revoke", []string{"-list", "-revoke", "gr_abc"}, "-list, -audit and -revoke exclude each other"},
		{"bad grant id", []string{"-revoke", "cus_A"}, `-revoke "cus_A" is not a grant id (gr_...)`},
		{"revoke with a customer", []string{"-revoke", "gr_abc", "-customer", "cus_A"}, "-revoke takes only the grant id"},
		{"extra argument", append(ok, "-features", "x", "oops"), `unexpected argument "oops"`},
	} {
		t.Run(c.name, func(t *testing.T) {
			code, _, errOut := grantRun(cfgPath, c.args...)
			if code != 2 || !strings.Contains(errOut, c.want) || !strings.Contains(errOut, "usage: tollgate grant") {
				t.Errorf("grant %q = exit %d, stderr %q; want exit 2 with %q and the help", c.args, code, errOut, c.want)
			}
		})
	}
	t.Run("no USER and no -by", func(t *testing.T) {
		t.Setenv("USER", "")
		code, _, errOut := grantRun(cfgPath, "-customer", "cus_A", "-features", "x", "-reason", "r")
		if code != 2 || !strings.Contains(errOut, "-by NAME is required: $USER is not set") {
			t.Errorf("grant without USER or -by = %d %q", code, errOut)
		}
	})
	if gs, err := s.ListGrants(context.Background(), ""); err != nil || len(gs) != 0 {
		t.Errorf("refused command lines stored %+v (%v); want nothing", gs, err)
	}
}
