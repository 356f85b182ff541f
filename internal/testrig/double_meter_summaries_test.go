package testrig

import (
	"context"
	"net/http"
	"strconv"
	"testing"
	"time"

	"github.com/stripe/stripe-go/v76"
)

// Meter event summaries through stripe-go, computed from the meter events
// the double received (and one injected), per customer, in [start, end),
// by the meter's formula; one summary without grouping, one per hour with
// value_grouping_window=hour.
func TestDoubleMeterEventSummaries(t *testing.T) {
	d := NewStripeDouble(t)
	d.PutMeter(&stripe.BillingMeter{ID: "mtr_calls", EventName: "api_calls"})
	d.PutMeter(&stripe.BillingMeter{ID: "mtr_count", EventName: "api_calls",
		DefaultAggregation: &stripe.BillingMeterDefaultAggregation{Formula: stripe.BillingMeterDefaultAggregationFormulaCount}})
	d.PutMeter(&stripe.BillingMeter{ID: "mtr_old", EventName: "old", Status: stripe.BillingMeterStatusInactive})
	api := StripeClient(t, d.URL())
	hour := time.Now().Add(-3 * time.Hour).Truncate(time.Hour)
	send := func(id, customer string, value int, at time.Time) {
		t.Helper()
		p := &stripe.BillingMeterEventParams{EventName: stripe.String("api_calls"), Identifier: stripe.String(id),
			Payload:   map[string]string{"stripe_customer_id": customer, "value": strconv.Itoa(value)},
			Timestamp: stripe.Int64(at.Unix())}
		if _, err := api.BillingMeterEvents.New(p); err != nil {
			t.Fatal(err)
		}
	}
	send("e1", "cus_A", 5, hour.Add(10*time.Minute))
	send("e2", "cus_A", 7, hour.Add(70*time.Minute))
	send("e3", "cus_B", 100, hour.Add(10*time.Minute))
	send("e4", "cus_A", 1000, hour.Add(2*time.Hour)) // after the range
	d.InjectMeterEvent("api_calls", "cus_A", 3, hour.Add(20*time.Minute))

	it := api.BillingMeters.List(&stripe.BillingMeterListParams{Status: stripe.String("active")})
	var active []string
	for it.Next() {
		active = append(active, it.BillingMeter().ID+":"+it.BillingMeter().EventName)
	}
	if it.Err() != nil || len(active) != 2 {
		t.Errorf("active meters = %v, %v; want mtr_calls and mtr_count", active, it.Err())
	}

	summaries := func(meter, customer, grouping string, start, end time.Time) ([]float64, error) {
		p := &stripe.BillingMeterEventSummaryListParams{ID: stripe.String(meter), Customer: stripe.String(customer),
			StartTime: stripe.Int64(start.Unix()), EndTime: stripe.Int64(end.Unix())}
		if grouping != "" {
			p.ValueGroupingWindow = stripe.String(grouping)
		}
		p.Context = context.Background()
		it := api.BillingMeterEventSummaries.List(p)
		var out []float64
		for it.Next() {
			out = append(out, it.BillingMeterEventSummary().AggregatedValue)
		}
		return out, it.Err()
	}
	for _, c := range []struct {
		name, meter, customer, grouping string
		want                            []float64
	}{
		{"sum over two hours", "mtr_calls", "cus_A", "", []float64{15}},
		{"per hour", "mtr_calls", "cus_A", "hour", []float64{8, 7}},
		{"another customer", "mtr_calls", "cus_B", "", []float64{100}},
		{"nobody's events", "mtr_calls", "cus_C", "", []float64{0}},
		{"count formula", "mtr_count", "cus_A", "", []float64{3}},
	} {
		got, err := summaries(c.meter, c.customer, c.grouping, hour, hour.Add(2*time.Hour))
		if err != nil || len(got) != len(c.want) {
			t.Errorf("%s: summaries = %v, %v; want %v", c.name, got, err, c.want)
			continue
		}
		for i := range got {
			if got[i] != c.want[i] {
				t.Errorf("%s: summaries = %v; want %v", c.name, got, c.want)
			}
		}
	}
	for _, c := range []struct {
		name, meter string
		start, end  time.Time
		status      int
		param       string
	}{
		{"not on a minute", "mtr_calls", hour.Add(time.Second), hour.Add(time.Hour), 400, "start_time"},
		{"end before start", "mtr_calls", hour.Add(time.Hour), hour, 400, "start_time"},
		{"unknown meter", "mtr_nope", hour, hour.Add(time.Hour), 404, "id"},
	} {
		_, err := summaries(c.meter, "cus_A", "", c.start, c.end)
		if se := stripeErr(t, err); se.HTTPStatusCode != c.status || se.Param != c.param {
			t.Errorf("%s: error %d on %q; want %d on %q", c.name, se.HTTPStatusCode, se.Param, c.status, c.param)
		}
	}
	if _, err := summaries("mtr_calls", "cus_A", "day", hour, hour.Add(time.Hour)); stripeErr(t, err).HTTPStatusCode != http.StatusBadRequest {
		t.Errorf("day grouping on hour boundaries = %v; want 400", err)
	}
}
