package testrig

import (
	"fmt"
	"net/http"
	"sort"
	"strconv"
	"time"

	"github.com/stripe/stripe-go/v76"
)

// PutMeter adds or replaces a Billing Meter, served by GET
// /v1/billing/meters; its event summaries are computed from the meter
// events the double accepted. Left empty: status active, formula sum, the
// default payload keys (stripe_customer_id, value), created now.
func (d *StripeDouble) PutMeter(m *stripe.BillingMeter) {
	d.tb.Helper()
	c := *m
	if c.Status == "" {
		c.Status = stripe.BillingMeterStatusActive
	}
	if c.DefaultAggregation == nil {
		c.DefaultAggregation = &stripe.BillingMeterDefaultAggregation{Formula: stripe.BillingMeterDefaultAggregationFormulaSum}
	}
	if c.CustomerMapping == nil {
		c.CustomerMapping = &stripe.BillingMeterCustomerMapping{EventPayloadKey: "stripe_customer_id", Type: "by_id"}
	}
	if c.ValueSettings == nil {
		c.ValueSettings = &stripe.BillingMeterValueSettings{EventPayloadKey: "value"}
	}
	if c.Created == 0 {
		c.Created = d.clock().Unix()
	}
	raw := d.mustEncode(c.ID, &c, "billing.meter")
	d.mu.Lock()
	defer d.mu.Unlock()
	d.seq++
	d.meter.meters[c.ID] = storedObject{id: c.ID, status: string(c.Status), created: c.Created, seq: d.seq, raw: raw}
}

// InjectMeterEvent records a meter event as if someone other than tollgate
// had sent it (another system, or a bug): the way a test makes Stripe's
// summaries disagree with tollgate's counts.
func (d *StripeDouble) InjectMeterEvent(eventName, customer string, value int64, at time.Time) {
	d.mu.Lock()
	defer d.mu.Unlock()
	id := d.nextIDLocked("mev_injected")
	d.meter.events = append(d.meter.events, MeterEvent{EventName: eventName, CustomerID: customer, Value: value,
		Identifier: id, Timestamp: at.Unix(), Created: d.now(),
		Payload: map[string]string{"stripe_customer_id": customer, "value": strconv.FormatInt(value, 10)}})
	d.meter.accepted[id] = d.now()
}

// listMeters answers GET /v1/billing/meters, newest first, filtered by
// status.
func (d *StripeDouble) listMeters(c *Call) *Response {
	status := c.Form.Get("status")
	return d.listStored(c, d.meter.meters, func(o storedObject) bool { return status == "" || o.status == status },
		"/v1/billing/meters", "billing meter")
}

// summaryWindows are Stripe's value_grouping_window values.
var summaryWindows = map[string]int64{"hour": 3600, "day": 86400}

// listMeterEventSummaries answers GET
// /v1/billing/meters/{id}/event_summaries as Stripe does: customer,
// start_time and end_time are required, both times on minute boundaries
// (on the grouping window's with value_grouping_window), start before
// end; without value_grouping_window one summary covers the whole range.
// Values are aggregated by the meter's formula over the accepted events
// with its event_name for that customer whose timestamp is in [start,
// end).
func (d *StripeDouble) listMeterEventSummaries(c *Call) *Response {
	d.mu.Lock()
	mo, ok := d.meter.meters[c.Param("id")]
	d.mu.Unlock()
	if !ok {
		return notFound("billing meter", c.Param("id"), "id")
	}
	customer := c.Form.Get("customer")
	if customer == "" {
		return missingParam("customer")
	}
	times := map[string]int64{}
	for _, p := range []string{"start_time", "end_time"} {
		s := c.Form.Get(p)
		if s == "" {
			return missingParam(p)
		}
		v, err := strconv.ParseInt(s, 10, 64)
		if err != nil {
			return ErrorResponse(http.StatusBadRequest, "invalid_request_error", "parameter_invalid_integer", "Invalid integer: "+s, p)
		}
		times[p] = v
	}
	start, end := times["start_time"], times["end_time"]
	step, grouping := int64(0), c.Form.Get("value_grouping_window")
	align := int64(60)
	if grouping != "" {
		if step, ok = summaryWindows[grouping]; !ok {
			return ErrorResponse(http.StatusBadRequest, "invalid_request_error", "",
				fmt.Sprintf("Invalid value_grouping_window: must be one of day or hour, got %s.", grouping), "value_grouping_window")
		}
		align = step
	}
	for _, p := range []string{"start_time", "end_time"} {
		if times[p]%align != 0 {
			return ErrorResponse(http.StatusBadRequest, "invalid_request_error", "",
				fmt.Sprintf("%s must be aligned with %s boundaries.", p, map[int64]string{60: "minute", 3600: "hour", 86400: "day"}[align]), p)
		}
	}
	if start >= end {
		return ErrorResponse(http.StatusBadRequest, "invalid_request_error", "", "start_time must be before end_time.", "start_time")
	}
	if step == 0 {
		step = end - start
	}
	m := mo.decode()
	eventName, _ := m["event_name"].(string)
	formula := "sum"
	if agg, ok := m["default_aggregation"].(map[string]any); ok {
		formula, _ = agg["formula"].(string)
	}
	var items []map[string]any
	for lo := start; lo < end; lo += step {
		hi := min(lo+step, end)
		items = append(items, map[string]any{
			"id": fmt.Sprintf("mtrusg_testrig_%s_%d", mo.id, lo), "object": "billing.meter_event_summary",
			"aggregated_value": d.aggregate(eventName, customer, formula, lo, hi),
			"start_time":       lo, "end_time": hi, "livemode": false, "meter": mo.id,
		})
	}
	return listPage(items, c.Form, "/v1/billing/meters/"+mo.id+"/event_summaries", "billing meter event summary")
}

// aggregate applies a meter formula to the accepted events in [lo, hi).
func (d *StripeDouble) aggregate(eventName, customer, formula string, lo, hi int64) float64 {
	d.mu.Lock()
	defer d.mu.Unlock()
	var in []MeterEvent
	for _, e := range d.meter.events {
		if e.EventName == eventName && e.CustomerID == customer && e.Timestamp >= lo && e.Timestamp < hi {
			in = append(in, e)
		}
	}
	switch formula {
	case "count":
		return float64(len(in))
	case "last":
		if len(in) == 0 {
			return 0
		}
		sort.SliceStable(in, func(i, j int) bool { return in[i].Timestamp < in[j].Timestamp })
		return float64(in[len(in)-1].Value)
	}
	var sum int64
	for _, e := range in {
		sum += e.Value
	}
	return float64(sum)
}
