package testrig

import (
	"fmt"
	"net/http"
	"strconv"
	"sync"
)

// UsageRecord is a legacy usage record (POST
// /v1/subscription_items/{id}/usage_records) the double accepted.
type UsageRecord struct {
	ID               string
	SubscriptionItem string
	Quantity         int64
	Timestamp        int64 // seconds since the epoch, as sent
	Action           string
	IdempotencyKey   string
}

// UsageRecords serves the usage-record endpoint of a StripeDouble and keeps
// what it accepted. The double's idempotency layer applies to it: a POST
// repeating an Idempotency-Key with the same parameters is replayed, not
// recorded twice. Safe for concurrent use.
type UsageRecords struct {
	mu      sync.Mutex
	records []UsageRecord
}

// ServeUsageRecords installs the usage-record endpoint on the double (it is
// not there by default: Stripe removed it for new prices from API
// 2025-03-31) and returns its log.
func (d *StripeDouble) ServeUsageRecords() *UsageRecords {
	u := &UsageRecords{}
	d.Handle("POST /v1/subscription_items/{id}/usage_records", func(c *Call) *Response {
		return u.create(d, c)
	})
	return u
}

func (u *UsageRecords) create(d *StripeDouble, c *Call) *Response {
	qty, err := strconv.ParseInt(c.Form.Get("quantity"), 10, 64)
	if err != nil || qty < 0 {
		return ErrorResponse(http.StatusBadRequest, "invalid_request_error", "parameter_invalid_integer",
			fmt.Sprintf("Invalid integer: %q", c.Form.Get("quantity")), "quantity")
	}
	action := c.Form.Get("action")
	if action == "" {
		action = "increment"
	}
	if action != "increment" && action != "set" {
		return ErrorResponse(http.StatusBadRequest, "invalid_request_error", "",
			"Invalid action: must be one of increment or set", "action")
	}
	ts := d.clock().Unix()
	if s := c.Form.Get("timestamp"); s != "" && s != "now" {
		if ts, err = strconv.ParseInt(s, 10, 64); err != nil {
			return ErrorResponse(http.StatusBadRequest, "invalid_request_error", "parameter_invalid_integer", "Invalid integer: "+s, "timestamp")
		}
	}
	d.mu.Lock()
	id := d.nextIDLocked("mbur")
	d.mu.Unlock()
	rec := UsageRecord{ID: id, SubscriptionItem: c.Param("id"), Quantity: qty, Timestamp: ts, Action: action,
		IdempotencyKey: c.Request.Header.Get("Idempotency-Key")}
	u.mu.Lock()
	u.records = append(u.records, rec)
	u.mu.Unlock()
	return JSONResponse(http.StatusOK, map[string]any{
		"id":                id,
		"object":            "usage_record",
		"livemode":          false,
		"quantity":          qty,
		"subscription_item": rec.SubscriptionItem,
		"timestamp":         ts,
	})
}

// Records returns the accepted usage records in acceptance order.
func (u *UsageRecords) Records() []UsageRecord {
	u.mu.Lock()
	defer u.mu.Unlock()
	return append([]UsageRecord(nil), u.records...)
}

// Sum adds up the quantities recorded for a subscription item.
func (u *UsageRecords) Sum(item string) int64 {
	u.mu.Lock()
	defer u.mu.Unlock()
	var n int64
	for _, r := range u.records {
		if r.SubscriptionItem == item {
			n += r.Quantity
		}
	}
	return n
}
