package sidecar

import (
	"io"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"time"

	"github.com/golang-jwt/jwt/v5"

	"github.com/tollgate-dev/tollgate/config"
	"github.com/tollgate-dev/tollgate/proxy/auth"
)

// Identity spoofing through an optional route (issue 3): the caller sends a
// valid token for cus_real plus X-Tollgate-Customer: cus_victim. The app
// must see the verified customer only; without a token, no customer at all.
func TestOptionalRouteSpoofedCustomerHeader(t *testing.T) {
	seen := make(chan http.Header, 4)
	app := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		seen <- r.Header.Clone()
	}))
	defer app.Close()
	cfg := testConfig(t, app.URL)
	cfg.Routes = []*config.Route{{Path: "/**", Auth: config.AuthOptional}}
	r := start(t, cfg)
	tok, err := auth.SignHS256([]byte(strings.Repeat("k", 32)), jwt.MapClaims{
		"sub": "user_real", "stripe_customer_id": "cus_real", "aud": "api", "exp": time.Now().Add(time.Hour).Unix(),
	})
	if err != nil {
		t.Fatal(err)
	}
	for _, c := range []struct {
		name, token, wantCustomer string
		wantStatus                int
	}{
		{"valid token", tok, "cus_real", 200},
		{"no token", "", "", 200},
		{"invalid token", tok[:len(tok)-4] + "AAAA", "", 401},
	} {
		t.Run(c.name, func(t *testing.T) {
			req, _ := http.NewRequest("GET", "http://"+r.sc.ProxyAddr()+"/x", nil)
			req.Header.Set("X-Tollgate-Customer", "cus_victim")
			req.Header.Set("X_Tollgate_User", "user_victim")
			if c.token != "" {
				req.Header.Set("Authorization", "Bearer "+c.token)
			}
			resp, err := http.DefaultClient.Do(req)
			if err != nil {
				t.Fatal(err)
			}
			io.Copy(io.Discard, resp.Body)
			resp.Body.Close()
			if resp.StatusCode != c.wantStatus {
				t.Fatalf("status %d; want %d", resp.StatusCode, c.wantStatus)
			}
			if c.wantStatus != 200 {
				return
			}
			h := <-seen
			if got := h.Get("X-Tollgate-Customer"); got != c.wantCustomer {
				t.Errorf("app saw X-Tollgate-Customer %q; want %q", got, c.wantCustomer)
			}
			if got := h.Values("X_Tollgate_User"); len(got) > 0 {
				t.Errorf("app saw spoofed X_Tollgate_User %v", got)
			}
		})
	}
}
