package store

import (
	"context"
	"strings"
	"testing"
	"time"

	"github.com/tollgate-dev/tollgate/config"
	"github.com/tollgate-dev/tollgate/internal/testrig"
)

// Sentinels protected by a password of their own (Bitnami's chart does
// this by default) answer nothing until tollgate authenticates to them:
// redis.sentinel_password is sent to the sentinels, redis.password to the
// data nodes.
func TestOpenSentinelWithPasswords(t *testing.T) {
	const pw = "sentinel-test-password"
	s := testrig.StartRedisSentinel(t, testrig.WithPassword(pw))
	for _, c := range []struct {
		name     string
		sentinel string
		wantErr  string // "" for success
	}{
		{"both passwords", pw, ""},
		{"no sentinel_password", "", "NOAUTH"},
	} {
		t.Run(c.name, func(t *testing.T) {
			st, err := Open(config.Redis{Addrs: s.Addrs(), MasterName: s.MasterName(), Password: pw,
				SentinelPassword: c.sentinel, Prefix: "t:"}, quiet)
			if err != nil {
				t.Fatal(err)
			}
			defer st.Close()
			ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
			defer cancel()
			err = st.Client.Set(ctx, "t:k", c.name, 0).Err()
			switch {
			case c.wantErr == "" && err != nil:
				t.Fatalf("SET through password-protected sentinels: %v", err)
			case c.wantErr != "" && (err == nil || !strings.Contains(err.Error(), c.wantErr)):
				t.Fatalf("SET without the sentinels' password = %v; want an error with %s", err, c.wantErr)
			case c.wantErr == "":
				if got, err := s.Primary().Client().Get(ctx, "t:k").Result(); err != nil || got != c.name {
					t.Errorf("the primary holds %q, %v; want %q", got, err, c.name)
				}
			}
		})
	}
}
