package main

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/tollgate-dev/tollgate/config"
	"github.com/tollgate-dev/tollgate/entitlements"
	"github.com/tollgate-dev/tollgate/internal/store"
	"github.com/tollgate-dev/tollgate/internal/testrig"
)

// An operator can see and repair a user's customer link, which checkout
// webhooks set once and never move.
func TestLinkCommand(t *testing.T) {
	rd := testrig.StartRedis(t)
	cfgPath := filepath.Join(t.TempDir(), "c.yaml")
	if err := os.WriteFile(cfgPath, []byte(fmt.Sprintf(`
upstream: http://127.0.0.1:3000
redis: { url: %q, prefix: "l:" }
auth: { jwt: { algorithms: [HS256], audience: [api], hmac_secret: %q } }
routes: [ { path: /**, auth: none } ]
stripe: { trusted_payloads: true }
`, rd.URL(), strings.Repeat("k", 32))), 0o600); err != nil {
		t.Fatal(err)
	}
	st, err := store.Open(config.Redis{URL: rd.URL(), Prefix: "l:"}, newLogger(config.Log{Level: "error"}, &bytes.Buffer{}))
	if err != nil {
		t.Fatal(err)
	}
	defer st.Close()
	links := entitlements.NewRedisStore(st)
	ctx := context.Background()

	link := func(args ...string) (int, string) {
		var out bytes.Buffer
		code := run(ctx, append([]string{"link", "-config", cfgPath}, args...), &out, &out)
		return code, out.String()
	}
	for _, c := range []struct {
		args     []string
		wantCode int
		wantOut  string
		wantLink string // "" = not linked
	}{
		{[]string{"-user", "u1"}, 0, "user u1: not linked to a customer", ""},
		{[]string{"-user", "u1", "-customer", "cus_A"}, 0, "user u1: no customer -> cus_A", "cus_A"},
		{[]string{"-user", "u1"}, 0, "user u1: cus_A", "cus_A"},
		{[]string{"-user", "u1", "-customer", "cus_B"}, 0, "user u1: cus_A -> cus_B", "cus_B"},
		{[]string{"-user", "u1", "-customer", "not-a-customer"}, 2, `"not-a-customer" is not a Stripe customer id`, "cus_B"},
		{[]string{"-user", "u1", "-customer", "cus_C", "-unlink"}, 2, "usage: tollgate link", "cus_B"},
		{[]string{"-customer", "cus_C"}, 2, "usage: tollgate link", "cus_B"},
		{[]string{"-user", "u1", "-unlink"}, 0, "user u1: cus_B -> no customer", ""},
	} {
		code, out := link(c.args...)
		if code != c.wantCode || !strings.Contains(out, c.wantOut) {
			t.Errorf("link %v = %d %q; want %d with %q", c.args, code, out, c.wantCode, c.wantOut)
		}
		got, ok, err := links.CustomerForUser(ctx, "u1")
		if err != nil || (ok && got != c.wantLink) || (!ok && c.wantLink != "") {
			t.Errorf("after link %v the store links u1 to %q (%v, %v); want %q", c.args, got, ok, err, c.wantLink)
		}
	}
	// Unlinked, the next checkout's link takes hold again; a linked user still never moves.
	if err := links.LinkUser(ctx, "u1", "cus_D"); err != nil {
		t.Errorf("LinkUser after unlink: %v", err)
	}
	if err := links.LinkUser(ctx, "u1", "cus_E"); !errors.Is(err, entitlements.ErrLinkConflict) {
		t.Errorf("LinkUser over a link = %v; want ErrLinkConflict", err)
	}
}

// Operator commands refuse the embedded store (it lives inside a running
// process) instead of reading an empty one of their own.
func TestOperatorCommandsRefuseTheEmbeddedStore(t *testing.T) {
	cfgPath := filepath.Join(t.TempDir(), "c.yaml")
	if err := os.WriteFile(cfgPath, []byte(fmt.Sprintf(`
upstream: http://127.0.0.1:3000
auth: { jwt: { algorithms: [HS256], audience: [api], hmac_secret: %q } }
routes: [ { path: /**, auth: none } ]
stripe: { trusted_payloads: true }
`, strings.Repeat("k", 32))), 0o600); err != nil {
		t.Fatal(err)
	}
	for _, args := range [][]string{
		{"link", "-config", cfgPath, "-user", "u1"},
		{"usage", "-config", cfgPath},
		{"events", "-config", cfgPath},
		{"grant", "-config", cfgPath, "-list"},
	} {
		var out bytes.Buffer
		if code := run(context.Background(), args, &out, &out); code != 1 || !strings.Contains(out.String(), "no redis configured") {
			t.Errorf("tollgate %v = %d %q; want exit 1, no redis configured", args, code, out.String())
		}
	}
}
