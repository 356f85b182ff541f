package sidecar

import (
	"context"
	"io"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/stripe/stripe-go/v76"

	"github.com/tollgate-dev/tollgate/config"
	"github.com/tollgate-dev/tollgate/internal/store"
	"github.com/tollgate-dev/tollgate/internal/testrig"
	"github.com/tollgate-dev/tollgate/meter"
)

// The operator tools' series exist at 0 from start: every replay result
// and the drift of every configured meter, so an alert on "replayed
// events healed something" or "drift" can be written before either
// happened.
func TestOperatorSeriesExistFromStart(t *testing.T) {
	app := httptest.NewServer(http.HandlerFunc(func(http.ResponseWriter, *http.Request) {}))
	defer app.Close()
	cfg := testConfig(t, app.URL)
	cfg.Metering.Meters = map[string]*config.Meter{"api_calls": {EventName: "api_calls"}, "exports": {EventName: "exports"}}
	r := start(t, cfg)
	_, body := get(t, "http://"+r.sc.AdminAddr()+"/metrics")
	for _, want := range []string{
		`tollgate_webhook_replayed_total{result="processed"} 0`,
		`tollgate_webhook_replayed_total{result="duplicate"} 0`,
		`tollgate_webhook_replayed_total{result="failed"} 0`,
		`tollgate_usage_drift_units{meter="api_calls"} 0`,
		`tollgate_usage_drift_units{meter="exports"} 0`,
	} {
		if !strings.Contains(body, want) {
			t.Errorf("/metrics at start lacks %s", want)
		}
	}
}

// The periodic reconciliation (metering.reconcile_interval) of a running
// replica finds an event in Stripe that tollgate never sent and shows it
// in tollgate_usage_drift_units.
func TestPeriodicReconcileSetsTheDriftGauge(t *testing.T) {
	rd := testrig.StartRedis(t, testrig.WithoutPersistence())
	d := testrig.NewStripeDouble(t)
	d.PutMeter(&stripe.BillingMeter{ID: "mtr_calls", EventName: "api_calls"})
	app := httptest.NewServer(http.HandlerFunc(func(http.ResponseWriter, *http.Request) {}))
	defer app.Close()
	cfg := meteringConfig(t, app.URL, rd.URL(), d.URL())
	cfg.Metering.ReconcileInterval = 100 * time.Millisecond // below the 5m config minimum, for the test

	// Usage at 10:30 on the 1st is in the range reconciled at noon.
	noon := testrig.MonthNoon()
	var clock atomic.Int64
	clock.Store(noon.Add(-90 * time.Minute).UnixNano())
	m, err := meter.New(meter.Options{Config: cfg.Metering, Redis: rd.Client(), Keys: store.Keys{Prefix: cfg.Redis.Prefix},
		Sender: meter.NewStripeSender(testrig.StripeClient(t, d.URL()), time.Second), Logger: slog.New(slog.NewTextHandler(io.Discard, nil)),
		Now: func() time.Time { return time.Unix(0, clock.Load()) }})
	if err != nil {
		t.Fatal(err)
	}
	m.Count("cus_D", "calls", 5)
	clock.Add(int64(5 * time.Second))
	testrig.Eventually(t, "the usage reported", func() bool { return d.SumMeterEvents("api_calls", "cus_D") == 5 })
	if err := m.Close(t.Context()); err != nil {
		t.Fatal(err)
	}
	d.InjectMeterEvent("api_calls", "cus_D", 3, noon.Add(-80*time.Minute))

	ctx, cancel := context.WithCancel(context.Background())
	sc, err := New(ctx, cfg, Options{Logger: slog.New(slog.NewTextHandler(io.Discard, nil)), Now: func() time.Time { return noon }})
	if err != nil {
		t.Fatal(err)
	}
	if err := sc.Listen(); err != nil {
		t.Fatal(err)
	}
	done := make(chan error, 1)
	go func() { done <- sc.Serve(ctx) }()
	defer func() { cancel(); <-done }()
	testrig.Eventually(t, "the drift gauge", func() bool {
		_, body := get(t, "http://"+sc.AdminAddr()+"/metrics")
		return strings.Contains(body, `tollgate_usage_drift_units{meter="calls"} 3`)
	})
}
