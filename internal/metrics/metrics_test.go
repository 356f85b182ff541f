package metrics

import (
	"flag"
	"fmt"
	"os"
	"strings"
	"testing"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/testutil"
)

var update = flag.Bool("update", false, "rewrite testdata/metrics.golden")

// touch gives every vector one series so that Gather lists it.
func touch(m *Metrics) {
	m.Requests.WithLabelValues("api", "allowed").Inc()
	m.RequestDuration.WithLabelValues("api").Observe(0.01)
	m.UpstreamDuration.Observe(0.01)
	m.JWTValidations.WithLabelValues("ok").Inc()
	m.JWKSFetches.WithLabelValues("ok").Inc()
	m.JWKSLastSuccess.WithLabelValues().SetToCurrentTime()
	m.EntitlementCache.WithLabelValues("hit").Inc()
	m.EntitlementAge.Observe(1)
	m.WebhookEvents.WithLabelValues("invoice.paid", "processed").Inc()
	m.WebhookReplayed.WithLabelValues("processed").Inc()
	m.UsageDriftUnits.WithLabelValues("api_calls").Set(0)
	m.UserLinks.WithLabelValues("linked").Inc()
	m.UsageUnits.WithLabelValues("api_calls").Inc()
	m.UsageReportedUnits.WithLabelValues("api_calls").Inc()
	m.UsagePendingUnits.WithLabelValues("api_calls").Set(1)
	m.UsageReportErrors.WithLabelValues("api_calls", "timeout").Inc()
	m.UsageInvalid.WithLabelValues("api_calls").Inc()
	m.QuotaLeaseRequests.WithLabelValues("granted").Inc()
	m.StripeRequests.WithLabelValues("POST /v1/billing/meter_events", "200").Inc()
	m.StripeRequestDuration.WithLabelValues("POST /v1/billing/meter_events").Observe(0.1)
	m.Subscriptions.WithLabelValues("pro", "active").Set(1)
	m.SeatsInUse.WithLabelValues("team").Set(1)
	m.TrialConversions.WithLabelValues("pro", "converted").Inc()
}

// The metric names, types, labels and help are a contract (the SPEC's
// "Metrics" section); a rename must show up as a golden-file diff.
func TestMetricsGolden(t *testing.T) {
	m := New()
	touch(m)
	fams, err := m.Registry.Gather()
	if err != nil {
		t.Fatal(err)
	}
	var b strings.Builder
	for _, f := range fams {
		name := f.GetName()
		if !strings.HasPrefix(name, "tollgate_") {
			continue
		}
		var labels []string
		for _, l := range f.GetMetric()[0].GetLabel() {
			labels = append(labels, l.GetName())
		}
		fmt.Fprintf(&b, "%s %s {%s} %s\n", name, f.GetType(), strings.Join(labels, ","), f.GetHelp())
	}
	got := b.String()
	const path = "testdata/metrics.golden"
	if *update {
		os.WriteFile(path, []byte(got), 0o644)
	}
	want, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	if got != string(want) {
		t.Errorf("metrics differ from %s:\n--- got\n%s--- want\n%s", path, got, want)
	}
}

func TestInstancesDoNotCollide(t *testing.T) {
	a, b := New(), New()
	a.Requests.WithLabelValues("x", "allowed").Inc()
	if n := testCount(b.Requests); n != 0 {
		t.Errorf("second instance sees %d series of the first", n)
	}
}

func testCount(c prometheus.Collector) int {
	ch := make(chan prometheus.Metric, 100)
	c.Collect(ch)
	close(ch)
	return len(ch)
}

// Per-customer series are a cardinality choice: absent by default,
// registered (with their contract names) by EnablePerCustomer.
func TestPerCustomerSeries(t *testing.T) {
	m := New()
	if m.CustomerRequests != nil || m.CustomerUsageUnits != nil {
		t.Fatal("per-customer series exist without EnablePerCustomer")
	}
	m.EnablePerCustomer()
	m.EnablePerCustomer() // twice is harmless
	m.CustomerRequests.WithLabelValues("cus_A", "allowed").Inc()
	m.CustomerUsageUnits.WithLabelValues("cus_A", "api_calls").Add(3)
	fams, err := m.Registry.Gather()
	if err != nil {
		t.Fatal(err)
	}
	want := map[string]string{"tollgate_customer_requests_total": "customer,decision", "tollgate_customer_usage_units_total": "customer,meter"}
	for _, f := range fams {
		labels, ok := want[f.GetName()]
		if !ok {
			continue
		}
		var got []string
		for _, l := range f.GetMetric()[0].GetLabel() {
			got = append(got, l.GetName())
		}
		if strings.Join(got, ",") != labels {
			t.Errorf("%s labels = %v; want %s", f.GetName(), got, labels)
		}
		delete(want, f.GetName())
	}
	if len(want) > 0 {
		t.Errorf("not registered: %v", want)
	}
}

// Series whose labels are known without any config exist at 0 from start,
// so that an alert on "never happened" can fire.
func TestKnownSeriesAtZeroFromStart(t *testing.T) {
	m := New()
	if n := testutil.CollectAndCount(m.QuotaLeaseRequests, "tollgate_quota_lease_requests_total"); n != len(QuotaLeaseResults) {
		t.Fatalf("quota_lease_requests_total has %d series at start; want %d", n, len(QuotaLeaseResults))
	}
	for _, r := range QuotaLeaseResults {
		if v := testutil.ToFloat64(m.QuotaLeaseRequests.WithLabelValues(r)); v != 0 {
			t.Errorf("quota_lease_requests_total{result=%q} = %v at start; want 0", r, v)
		}
	}
}
