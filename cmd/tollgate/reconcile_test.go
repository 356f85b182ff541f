package main

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"log/slog"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/stripe/stripe-go/v76"

	"github.com/tollgate-dev/tollgate/internal/store"
	"github.com/tollgate-dev/tollgate/internal/testrig"
	"github.com/tollgate-dev/tollgate/meter"
)

const reconcileYAML = `metering: { window: 1s, flush_interval: 20ms, meters: { calls: { event_name: api_calls } } }`

// countAndReport counts units per customer at the given time with a real
// meter on the operator config's Redis, and waits until the double has
// them and Redis records them reported.
func countAndReport(t *testing.T, cfgPath, redisURL string, d *testrig.StripeDouble, at time.Time, units map[string]int64) {
	t.Helper()
	cfg, err := loadConfig(cfgPath)
	if err != nil {
		t.Fatal(err)
	}
	var clock atomic.Int64
	clock.Store(at.UnixNano())
	st := openOp(t, redisURL)
	m, err := meter.New(meter.Options{Config: cfg.Metering, Redis: st.Client, Keys: st.Keys,
		Sender: meter.NewStripeSender(testrig.StripeClient(t, d.URL()), time.Second), Logger: slog.New(slog.NewTextHandler(io.Discard, nil)),
		Now: func() time.Time { return time.Unix(0, clock.Load()) }})
	if err != nil {
		t.Fatal(err)
	}
	defer m.Close(context.Background())
	for c, u := range units {
		m.Count(c, "calls", u)
	}
	clock.Add(int64(5 * time.Second))
	testrig.WaitFor(t, 20*time.Second, func() error {
		u, err := meter.ReadUsage(context.Background(), st.Client, store.Keys{Prefix: "op:"})
		if err != nil {
			return err
		}
		for _, r := range u.Rows {
			if r.Pending != 0 {
				return fmt.Errorf("%s: %d pending", r.Customer, r.Pending)
			}
		}
		if len(u.Rows) < len(units) {
			return fmt.Errorf("%d of %d customers counted", len(u.Rows), len(units))
		}
		return nil
	})
}

// setClock moves the clock `-reconcile` places its period by.
func setClock(t *testing.T, now time.Time) {
	t.Helper()
	reconcileNow = func() time.Time { return now }
	t.Cleanup(func() { reconcileNow = time.Now })
}

// `tollgate usage -reconcile`: agreement exits 0; an event in Stripe that
// tollgate never sent is drift: printed with its sign, exit 1, and in
// -json; the previous month is checked a month later.
func TestUsageReconcileCommand(t *testing.T) {
	rd := testrigRedis(t)
	d := testrig.NewStripeDouble(t)
	d.PutMeter(&stripe.BillingMeter{ID: "mtr_calls", EventName: "api_calls"})
	cfg := operatorConfig(t, rd, d.URL(), reconcileYAML)
	noon := testrig.MonthNoon()
	countAndReport(t, cfg, rd, d, noon.Add(-90*time.Minute), map[string]int64{"cus_R1": 5, "cus_R2": 7})
	setClock(t, noon)

	code, out, errOut := runCLI("usage", "-config", cfg, "-reconcile")
	if code != 0 || !strings.Contains(out, "usage reconciliation, current month: windows from "+noon.Format("2006-01")+"-01T00:00:00Z to "+
		noon.Format("2006-01-02")+"T11:00:00Z") || !strings.Contains(out, "2 customer-meter pairs, 2 compared with Stripe: no drift") {
		t.Fatalf("agreeing reconcile = %d:\n%s%s", code, out, errOut)
	}
	if !strings.Contains(errOut, "reconcile: 2/2 customer-meter pairs compared") {
		t.Errorf("progress on stderr = %q", errOut)
	}

	d.InjectMeterEvent("api_calls", "cus_R1", 3, noon.Add(-80*time.Minute))
	code, out, errOut = runCLI("usage", "-config", cfg, "-reconcile")
	if code != 1 || !strings.Contains(out, "+3") || !strings.Contains(out, "1 drifting (calls 3 units)") ||
		!strings.Contains(errOut, "1 customer-meter pair(s) drift from Stripe") {
		t.Errorf("drifting reconcile = %d:\n%s%s", code, out, errOut)
	}
	code, out, _ = runCLI("usage", "-config", cfg, "-reconcile", "-json")
	var rep struct {
		OK   bool `json:"ok"`
		Rows []struct {
			Customer string `json:"customer"`
			Counted  int64  `json:"counted"`
			Stripe   *int64 `json:"stripe"`
			Drift    int64  `json:"drift"`
		} `json:"rows"`
		DriftUnits map[string]int64 `json:"drift_units"`
	}
	if err := json.Unmarshal([]byte(out), &rep); err != nil || code != 1 || rep.OK || len(rep.Rows) != 2 ||
		rep.Rows[0].Customer != "cus_R1" || rep.Rows[0].Drift != 3 || *rep.Rows[0].Stripe != 8 || rep.DriftUnits["calls"] != 3 {
		t.Errorf("reconcile -json = %d %s (%v); want cus_R1 drifting by 3", code, out, err)
	}

	setClock(t, noon.AddDate(0, 1, 0))
	code, out, _ = runCLI("usage", "-config", cfg, "-reconcile", "-period", "previous")
	if code != 1 || !strings.Contains(out, "previous month") || !strings.Contains(out, "+3") {
		t.Errorf("previous month, a month later = %d:\n%s", code, out)
	}
}

// The flags' errors, -h, and what -reconcile needs.
func TestUsageCommandFlags(t *testing.T) {
	rd := testrigRedis(t)
	noStripe := operatorConfig(t, rd, "", reconcileYAML)
	st := openOp(t, rd)
	for _, c := range []struct {
		args     []string
		wantCode int
		want     string
	}{
		{[]string{"usage", "-h"}, 0, "Examples:"},
		{[]string{"usage"}, 2, "-config FILE is required"},
		{[]string{"usage", "-config", noStripe, "-period", "previous"}, 2, `-period "previous" needs -reconcile`},
		{[]string{"usage", "-config", noStripe, "-reconcile", "-period", "weekly"}, 2, `-period "weekly": must be current or previous`},
		{[]string{"usage", "-config", noStripe, "-reconcile"}, 1, "stripe.secret_key is required"},
		{[]string{"usage", "-config", noStripe, "-json"}, 0, `"rows": []`},
	} {
		code, out, errOut := runCLI(c.args...)
		if code != c.wantCode || !strings.Contains(out+errOut, c.want) {
			t.Errorf("tollgate %v = %d %q; want %d with %q", c.args, code, out+errOut, c.wantCode, c.want)
		}
	}
	// Plain usage as JSON, with a customer counted.
	if err := st.Client.HSet(context.Background(), "op:{cus_J}:usage:totals", "calls:counted", 9, "calls:reported", 4).Err(); err != nil {
		t.Fatal(err)
	}
	st.Client.SAdd(context.Background(), "op:usage:customers", "cus_J")
	code, out, _ := runCLI("usage", "-config", noStripe, "-json")
	var u struct {
		Rows []struct {
			Customer string `json:"customer"`
			Counted  int64  `json:"counted"`
			Pending  int64  `json:"pending"`
		} `json:"rows"`
	}
	if err := json.Unmarshal([]byte(out), &u); err != nil || code != 0 || len(u.Rows) != 1 || u.Rows[0].Pending != 5 {
		t.Errorf("usage -json = %d %s (%v); want cus_J with 5 pending", code, out, err)
	}
}
