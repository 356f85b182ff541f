package sidecar

import (
	"context"
	"fmt"
	"net/http"
	"net/http/httptest"
	"testing"
	"time"

	"github.com/tollgate-dev/tollgate/config"
	"github.com/tollgate-dev/tollgate/entitlements"
	"github.com/tollgate-dev/tollgate/internal/testrig"
)

// tollgate_subscriptions and tollgate_seats_in_use are counted from the
// store by one replica: summed over two replicas they are the store's
// count (and so is their max), and they follow a change of the store.
func TestSubscriptionsCountedFromTheStore(t *testing.T) {
	rd := testrig.StartRedis(t, testrig.WithoutPersistence())
	app := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {}))
	defer app.Close()
	newCfg := func() *config.Config {
		cfg := testConfig(t, app.URL)
		cfg.Redis.URL = rd.URL()
		cfg.Metrics.SubscriptionsInterval = time.Second
		cfg.Plans = map[string]*config.Plan{"pro": {Prices: []string{"price_pro"}}, "team": {Prices: []string{"price_team"}, Seats: "5"}}
		cfg.Routes = []*config.Route{{Path: "/api/**", Require: config.Require{Subscription: true}}}
		return cfg
	}
	a, b := start(t, newCfg()), start(t, newCfg())
	end := time.Now().Add(240 * time.Hour)
	put := func(customer string, st *entitlements.State) {
		t.Helper()
		if err := a.sc.Customers.Update(context.Background(), customer, func(*entitlements.State) (*entitlements.State, error) { return st, nil }); err != nil {
			t.Fatal(err)
		}
	}
	subs := func(status string, prices ...string) []entitlements.Subscription {
		return []entitlements.Subscription{{ID: "sub_" + status, Status: status, Prices: prices, CurrentPeriodEnd: end}}
	}
	put("cus_1", &entitlements.State{Subscriptions: subs("active", "price_pro")})
	put("cus_2", &entitlements.State{Subscriptions: subs("active", "price_pro")})
	put("cus_3", &entitlements.State{Subscriptions: subs("trialing", "price_team")})
	put("cus_4", &entitlements.State{Subscriptions: subs("past_due", "price_pro", "price_team")})
	put("cus_5", &entitlements.State{Deleted: true, Subscriptions: subs("active", "price_pro")})
	put("cus_6", &entitlements.State{Subscriptions: subs("active", "price_other")})
	for _, u := range []string{"ann", "bob"} {
		if code := callAPI(t, b, userToken(t, u, "cus_3")); code != http.StatusOK {
			t.Fatalf("%s of cus_3 = %d", u, code)
		}
	}
	want := map[string]float64{
		"plan=pro,status=active": 2, "plan=pro,status=past_due": 1, "plan=team,status=trialing": 1,
		"plan=team,status=past_due": 1, "plan=pro,status=trialing": 0, "plan=team,status=active": 0,
	}
	census := func() (sum, most map[string]float64) {
		sum, most = map[string]float64{}, map[string]float64{}
		for _, r := range []*running{a, b} {
			fams := scrape(t, r.sc.AdminAddr())
			for labels := range want {
				v, _ := seriesValue(fams, "tollgate_subscriptions", labels)
				sum[labels] += v
				most[labels] = max(most[labels], v)
			}
			v, _ := seriesValue(fams, "tollgate_seats_in_use", "plan=team")
			sum["seats"] += v
			most["seats"] = max(most["seats"], v)
		}
		return sum, most
	}
	want["seats"] = 2
	var sum, most map[string]float64
	testrig.Eventually(t, "the count of the store", func() bool {
		sum, most = census()
		return fmt.Sprint(sum) == fmt.Sprint(want) && fmt.Sprint(most) == fmt.Sprint(want)
	})
	put("cus_2", &entitlements.State{Subscriptions: subs("trialing", "price_pro")})
	want["plan=pro,status=active"], want["plan=pro,status=trialing"] = 1, 1
	testrig.Eventually(t, "the count to follow the store", func() bool {
		sum, most = census()
		return fmt.Sprint(sum) == fmt.Sprint(want)
	})
}
