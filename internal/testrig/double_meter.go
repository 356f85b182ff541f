package testrig

import (
	"fmt"
	"net/http"
	"strconv"
	"strings"
	"time"
)

// Stripe's rules for meter events.
const (
	meterIdentifierMax    = 100
	meterDedupWindow      = 24 * time.Hour // identifiers are unique within at least this
	meterTimestampMaxAge  = 35 * 24 * time.Hour
	meterTimestampMaxSkew = 5 * time.Minute // how far in the future a timestamp may be
)

// MeterEvent is a Billing Meter Event the double accepted.
type MeterEvent struct {
	EventName      string
	CustomerID     string // payload[stripe_customer_id]
	Value          int64  // payload[value]
	Identifier     string
	Timestamp      int64             // seconds since the epoch, as sent (or defaulted to now)
	Payload        map[string]string // the whole payload
	IdempotencyKey string
	Created        time.Time // the double's clock at acceptance
}

// meterState is guarded by StripeDouble.mu.
type meterState struct {
	events   []MeterEvent
	accepted map[string]time.Time // identifier -> acceptance time
	meters   map[string]storedObject
}

func newMeterState() meterState {
	return meterState{accepted: make(map[string]time.Time), meters: make(map[string]storedObject)}
}

func (d *StripeDouble) registerMeterRoutes() {
	d.Handle("POST /v1/billing/meter_events", d.createMeterEvent)
	d.Handle("GET /v1/billing/meters", d.listMeters)
	d.Handle("GET /v1/billing/meters/{id}/event_summaries", d.listMeterEventSummaries)
}

// MeterEvents returns the accepted meter events in acceptance order.
func (d *StripeDouble) MeterEvents() []MeterEvent {
	d.mu.Lock()
	defer d.mu.Unlock()
	out := make([]MeterEvent, len(d.meter.events))
	copy(out, d.meter.events)
	return out
}

// AcceptedTwice lists identifiers of which more than one event was
// accepted: the "billed twice" end-to-end tests look for.
func (d *StripeDouble) AcceptedTwice() []string {
	seen := map[string]int{}
	var twice []string
	for _, e := range d.MeterEvents() {
		if seen[e.Identifier]++; seen[e.Identifier] == 2 {
			twice = append(twice, e.Identifier)
		}
	}
	return twice
}

// SumMeterEvents adds up the values of the accepted events with this event
// name for this customer.
func (d *StripeDouble) SumMeterEvents(eventName, customer string) int64 {
	d.mu.Lock()
	defer d.mu.Unlock()
	var sum int64
	for _, e := range d.meter.events {
		if e.EventName == eventName && e.CustomerID == customer {
			sum += e.Value
		}
	}
	return sum
}

// createMeterEvent implements POST /v1/billing/meter_events for meters with
// the default payload keys (stripe_customer_id, value). A repeated identifier
// is rejected as Stripe does: 400 "An event already exists with identifier
// ..." with Stripe-Should-Retry: false.
func (d *StripeDouble) createMeterEvent(c *Call) *Response {
	ev, errResp := d.parseMeterEvent(c)
	if errResp != nil {
		return errResp
	}
	d.mu.Lock()
	defer d.mu.Unlock()
	now := d.now()
	if ev.Identifier == "" {
		ev.Identifier = d.nextIDLocked("mev_auto")
	}
	if at, ok := d.meter.accepted[ev.Identifier]; ok && now.Sub(at) < meterDedupWindow {
		resp := ErrorResponse(http.StatusBadRequest, "invalid_request_error", "",
			fmt.Sprintf("An event already exists with identifier %s.", ev.Identifier), "identifier")
		resp.Header.Set("Stripe-Should-Retry", "false")
		return resp
	}
	if ev.Timestamp == 0 {
		ev.Timestamp = now.Unix()
	}
	ev.Created = now
	d.meter.accepted[ev.Identifier] = now
	d.meter.events = append(d.meter.events, ev)
	return JSONResponse(http.StatusOK, map[string]any{
		"object":     "billing.meter_event",
		"created":    now.Unix(),
		"event_name": ev.EventName,
		"identifier": ev.Identifier,
		"livemode":   false,
		"payload":    ev.Payload,
		"timestamp":  ev.Timestamp,
	})
}

// parseMeterEvent validates the form as Stripe would for a meter with
// default payload keys.
func (d *StripeDouble) parseMeterEvent(c *Call) (MeterEvent, *Response) {
	f := c.Form
	ev := MeterEvent{
		EventName:      f.Get("event_name"),
		Identifier:     f.Get("identifier"),
		Payload:        make(map[string]string),
		IdempotencyKey: c.Request.Header.Get("Idempotency-Key"),
	}
	for k, vs := range f {
		if inner, ok := strings.CutPrefix(k, "payload["); ok && strings.HasSuffix(inner, "]") && len(vs) > 0 {
			ev.Payload[strings.TrimSuffix(inner, "]")] = vs[0]
		}
	}
	ev.CustomerID = ev.Payload["stripe_customer_id"]
	for _, req := range [...]struct{ param, value string }{
		{"event_name", ev.EventName},
		{"payload[stripe_customer_id]", ev.CustomerID},
		{"payload[value]", ev.Payload["value"]},
	} {
		if req.value == "" {
			return ev, missingParam(req.param)
		}
	}
	value, err := strconv.ParseInt(ev.Payload["value"], 10, 64)
	if err != nil {
		return ev, ErrorResponse(http.StatusBadRequest, "invalid_request_error", "",
			fmt.Sprintf("The value %q for payload[value] must be a whole number.", ev.Payload["value"]), "payload[value]")
	}
	ev.Value = value
	if len(ev.Identifier) > meterIdentifierMax {
		return ev, ErrorResponse(http.StatusBadRequest, "invalid_request_error", "",
			fmt.Sprintf("Invalid identifier: must be at most %d characters.", meterIdentifierMax), "identifier")
	}
	if s := f.Get("timestamp"); s != "" {
		ts, err := strconv.ParseInt(s, 10, 64)
		if err != nil {
			return ev, ErrorResponse(http.StatusBadRequest, "invalid_request_error", "parameter_invalid_integer", "Invalid integer: "+s, "timestamp")
		}
		now := d.clock()
		if t := time.Unix(ts, 0); t.Before(now.Add(-meterTimestampMaxAge)) || t.After(now.Add(meterTimestampMaxSkew)) {
			return ev, ErrorResponse(http.StatusBadRequest, "invalid_request_error", "",
				"The timestamp must be within the past 35 calendar days and not more than 5 minutes in the future.", "timestamp")
		}
		ev.Timestamp = ts
	}
	return ev, nil
}

func missingParam(param string) *Response {
	return ErrorResponse(http.StatusBadRequest, "invalid_request_error", "parameter_missing",
		"Missing required param: "+param+".", param)
}
