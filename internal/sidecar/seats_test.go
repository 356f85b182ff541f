package sidecar

import (
	"context"
	"encoding/json"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"time"

	"github.com/golang-jwt/jwt/v5"

	"github.com/tollgate-dev/tollgate/config"
	"github.com/tollgate-dev/tollgate/entitlements"
	"github.com/tollgate-dev/tollgate/internal/testrig"
	"github.com/tollgate-dev/tollgate/proxy/auth"
)

// seatConfig is a replica whose plan team has one seat and a quota of
// three calls on /api/**; /team/** requires the plan and meters nothing.
func seatConfig(t *testing.T, upstream, redisURL string) *config.Config {
	cfg := quotaConfig(t, upstream, redisURL, 3)
	cfg.Plans["starter"].Seats = "1"
	cfg.Gating.UpgradeURL = "https://app.test/upgrade"
	cfg.Routes = append([]*config.Route{{Path: "/team/**", Require: config.Require{Subscription: true}}}, cfg.Routes...)
	return cfg
}

func userToken(t *testing.T, user, customer string) string {
	t.Helper()
	tok, err := auth.SignHS256([]byte(strings.Repeat("k", 32)), jwt.MapClaims{
		"sub": user, "stripe_customer_id": customer, "aud": "api", "exp": time.Now().Add(time.Hour).Unix()})
	if err != nil {
		t.Fatal(err)
	}
	return tok
}

type denialBody struct {
	Error       struct{ Code, Message string }
	Limit, Used int64
	UpgradeURL  string `json:"upgrade_url"`
}

func decodeDenial(t *testing.T, resp *http.Response) denialBody {
	t.Helper()
	var b denialBody
	if err := json.NewDecoder(resp.Body).Decode(&b); err != nil {
		t.Fatalf("denial body: %v", err)
	}
	return b
}

// A one-seat plan on two replicas: the first user takes the seat, a second
// user of the same customer is refused on the other replica with 403
// seat_limit (limit, used, upgrade_url), before any quota is reserved (a
// spent quota does not turn the refusal into a 429), and the holder keeps
// working on both replicas.
func TestSeatLimitOnEveryReplica(t *testing.T) {
	rd := testrig.StartRedis(t, testrig.WithoutPersistence())
	app := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {}))
	defer app.Close()
	a, b := start(t, seatConfig(t, app.URL, rd.URL())), start(t, seatConfig(t, app.URL, rd.URL()))
	subscribe(t, a, "cus_seat", time.Now().Add(10*24*time.Hour))
	ann, bob := userToken(t, "ann", "cus_seat"), userToken(t, "bob", "cus_seat")
	for i := range 3 {
		if resp := call(t, a.sc.ProxyAddr(), ann, "/api/x"); resp.StatusCode != http.StatusOK {
			t.Fatalf("ann's call %d = %d; want 200", i+1, resp.StatusCode)
		}
	}
	var denied *http.Response
	testrig.Eventually(t, "replica b to know the subscription", func() bool {
		denied = call(t, b.sc.ProxyAddr(), bob, "/api/x")
		return denied.StatusCode != http.StatusPaymentRequired
	})
	if denied.StatusCode != http.StatusForbidden {
		t.Fatalf("bob on b = %d; want 403 seat_limit (before the spent quota's 429)", denied.StatusCode)
	}
	body := decodeDenial(t, denied)
	if body.Error.Code != "seat_limit" || body.Limit != 1 || body.Used != 1 || body.UpgradeURL != "https://app.test/upgrade" {
		t.Errorf("bob's denial = %+v; want seat_limit, limit 1, used 1, upgrade_url", body)
	}
	for _, r := range []*running{a, b} {
		if resp := call(t, r.sc.ProxyAddr(), ann, "/team/x"); resp.StatusCode != http.StatusOK {
			t.Errorf("ann, the holder, = %d; want 200", resp.StatusCode)
		}
	}
	if resp := call(t, a.sc.ProxyAddr(), ann, "/api/x"); resp.StatusCode != http.StatusTooManyRequests {
		t.Errorf("ann past the quota = %d; want 429", resp.StatusCode)
	}
	if resp := call(t, a.sc.ProxyAddr(), bob, "/team/x"); resp.StatusCode != http.StatusForbidden {
		t.Errorf("bob on a = %d; want 403", resp.StatusCode)
	}
}

// Redis away: the holder this replica knows is served from memory, a
// newcomer gets 503 entitlements_unavailable, never a 403 it cannot know
// to be true.
func TestSeatsWhenRedisIsAway(t *testing.T) {
	rd := testrig.StartRedis(t, testrig.WithoutPersistence())
	app := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {}))
	defer app.Close()
	cfg := seatConfig(t, app.URL, rd.URL())
	cfg.Plans["starter"].Seats = "5"
	r := start(t, cfg)
	subscribe(t, r, "cus_away", time.Now().Add(10*24*time.Hour))
	ann, bob := userToken(t, "ann", "cus_away"), userToken(t, "bob", "cus_away")
	if resp := call(t, r.sc.ProxyAddr(), ann, "/team/x"); resp.StatusCode != http.StatusOK {
		t.Fatalf("ann = %d; want 200", resp.StatusCode)
	}
	rd.Kill()
	if resp := call(t, r.sc.ProxyAddr(), ann, "/team/x"); resp.StatusCode != http.StatusOK {
		t.Errorf("ann, a known holder, with Redis away = %d; want 200", resp.StatusCode)
	}
	resp := call(t, r.sc.ProxyAddr(), bob, "/team/x")
	if resp.StatusCode != http.StatusServiceUnavailable {
		t.Fatalf("bob, a newcomer, with Redis away = %d; want 503", resp.StatusCode)
	}
	if b := decodeDenial(t, resp); b.Error.Code != "entitlements_unavailable" {
		t.Errorf("bob's denial = %+v; want entitlements_unavailable", b)
	}
}

// A seat plan read from Stripe's quantity: the item's quantity is the
// limit, and a larger quantity (bought in the portal) lets the next user in.
func TestSeatsFromQuantity(t *testing.T) {
	rd := testrig.StartRedis(t, testrig.WithoutPersistence())
	app := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {}))
	defer app.Close()
	cfg := seatConfig(t, app.URL, rd.URL())
	cfg.Plans["starter"].Seats = config.SeatsQuantity
	r := start(t, cfg)
	setQuantity := func(n int64) {
		err := r.sc.Customers.Update(context.Background(), "cus_qty", func(*entitlements.State) (*entitlements.State, error) {
			return &entitlements.State{Subscriptions: []entitlements.Subscription{{ID: "sub_qty", Status: "active",
				Prices: []string{"price_s"}, Items: []entitlements.Item{{ID: "si_qty", Price: "price_s", Quantity: n}},
				CurrentPeriodStart: time.Now().Add(-time.Hour), CurrentPeriodEnd: time.Now().Add(240 * time.Hour)}}}, nil
		})
		if err != nil {
			t.Fatal(err)
		}
	}
	setQuantity(1)
	if resp := call(t, r.sc.ProxyAddr(), userToken(t, "ann", "cus_qty"), "/team/x"); resp.StatusCode != http.StatusOK {
		t.Fatalf("ann = %d; want 200", resp.StatusCode)
	}
	bob := userToken(t, "bob", "cus_qty")
	if resp := call(t, r.sc.ProxyAddr(), bob, "/team/x"); resp.StatusCode != http.StatusForbidden {
		t.Fatalf("bob with quantity 1 = %d; want 403", resp.StatusCode)
	}
	setQuantity(2)
	testrig.Eventually(t, "bob to get the second seat", func() bool {
		return call(t, r.sc.ProxyAddr(), bob, "/team/x").StatusCode == http.StatusOK
	})
}
