package proxy

import (
	"net/http"
	"strconv"
	"sync"
	"testing"

	"github.com/tollgate-dev/tollgate/config"
	"github.com/tollgate-dev/tollgate/proxy/auth"
)

type recordingCounter struct {
	mu    sync.Mutex
	units map[string]int64 // customer/meter
}

func (c *recordingCounter) Count(id auth.Identity, meter string, units int64) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.units[id.Customer+"/"+meter] += units
}

func (c *recordingCounter) get(k string) int64 {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.units[k]
}

// Only requests the upstream answered with a counted status are billed, by
// X-Tollgate-Usage when it is given, and the header never reaches the client.
func TestMeteringOnTheRequestPath(t *testing.T) {
	counter := &recordingCounter{units: map[string]int64{}}
	rig := newProxy(t, func(c *config.Config, o *Options) {
		o.Counter = counter
		c.Routes = []*config.Route{
			{Path: "/public/**", Auth: config.AuthNone},
			{Path: "/api/**", Meter: "calls"},
		}
	}, func(w http.ResponseWriter, r *http.Request) {
		if u := r.URL.Query().Get("usage"); u != "" {
			w.Header().Set(HeaderUsage, u)
		}
		code, _ := strconv.Atoi(r.URL.Query().Get("status"))
		if code == 0 {
			code = 200
		}
		w.WriteHeader(code)
	})
	addr := rig.front.Listener.Addr().String()
	tok := "Authorization: Bearer good:u1:cus_m"
	for _, c := range []struct {
		name, target string
		headers      []string
		wantDelta    int64
	}{
		{"2xx counts one", "/api/x", []string{tok}, 1},
		{"usage header counts N", "/api/x?usage=5", []string{tok}, 5},
		{"usage zero counts nothing", "/api/x?usage=0", []string{tok}, 0},
		{"invalid usage counts one", "/api/x?usage=-3", []string{tok}, 1},
		{"201 counts", "/api/x?status=201", []string{tok}, 1},
		{"upstream 500 not billed", "/api/x?status=500&usage=9", []string{tok}, 0},
		{"upstream 404 not billed", "/api/x?status=404", []string{tok}, 0},
		{"denied not billed", "/api/x?usage=7", nil, 0},
		{"unmetered route", "/public/x?usage=4", nil, 0},
	} {
		t.Run(c.name, func(t *testing.T) {
			before := counter.get("cus_m/calls")
			resp := rawRequest(t, addr, "GET", c.target, c.headers...)
			if v := resp.Header.Get(HeaderUsage); v != "" {
				t.Errorf("client saw %s: %s", HeaderUsage, v)
			}
			if got := counter.get("cus_m/calls") - before; got != c.wantDelta {
				t.Errorf("GET %s: counted %d; want %d", c.target, got, c.wantDelta)
			}
		})
	}
}

// Free use of a metered route: a signed-in user with no Stripe customer
// was forwarded and never billed (nobody to bill). It is refused with 402
// before anything reaches the app.
func TestMeteredRouteRefusesACallerWithoutCustomer(t *testing.T) {
	counter := &recordingCounter{units: map[string]int64{}}
	rig := newProxy(t, func(c *config.Config, o *Options) {
		o.Counter = counter
		c.Routes = []*config.Route{{Path: "/api/**", Meter: "calls"}}
	}, func(w http.ResponseWriter, r *http.Request) { w.Header().Set(HeaderUsage, "5") })
	resp := rawRequest(t, rig.front.Listener.Addr().String(), "GET", "/api/x", "Authorization: Bearer good:u1:")
	if resp.StatusCode != http.StatusPaymentRequired {
		t.Errorf("metered route without a customer = %d; want 402 subscription_required", resp.StatusCode)
	}
	if n := len(rig.backend.requests()); n != 0 {
		t.Errorf("the app saw %d requests; want none", n)
	}
}
