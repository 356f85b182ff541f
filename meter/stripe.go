package meter

import (
	"context"
	"errors"
	"fmt"
	"net"
	"net/http"
	"regexp"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/stripe/stripe-go/v76"
	"github.com/stripe/stripe-go/v76/client"

	"github.com/tollgate-dev/tollgate/config"
)

// ErrAlreadyReported is a Sender's answer when Stripe already holds the
// report (a meter event with this identifier exists): it counts as
// delivered.
var ErrAlreadyReported = errors.New("meter: stripe already has this report")

// Report is one usage report: units of a (customer, meter) in one window.
type Report struct {
	Customer string
	Meter    string
	Config   config.Meter
	Units    int64
	// Timestamp is a Unix second inside the window, the same on every retry.
	Timestamp int64
	// Identifier is the meter event identifier; usage records derive their
	// Idempotency-Key from it.
	Identifier string
}

// Sender delivers reports to Stripe. It answers nil or ErrAlreadyReported
// when Stripe has the report, and otherwise a *SendError.
type Sender interface {
	Send(ctx context.Context, r Report) error
}

// SendError is a failed report. A permanent one is parked (never retried by
// itself); any other is retried with backoff.
type SendError struct {
	Reason    string // metrics label: rate_limited, server_error, timeout, unknown_customer, ...
	Permanent bool
	Err       error
}

func (e *SendError) Error() string {
	kind := "retryable"
	if e.Permanent {
		kind = "permanent"
	}
	return fmt.Sprintf("meter: report failed (%s, %s): %v", e.Reason, kind, e.Err)
}

func (e *SendError) Unwrap() error { return e.Err }

// StripeSender reports through stripe-go: Billing Meter Events, or usage
// records (action increment) for meters with mode usage_records.
type StripeSender struct {
	api     *client.API
	timeout time.Duration

	mu    sync.Mutex
	items map[[2]string]cachedItem // (customer, price) → subscription item
}

type cachedItem struct {
	id      string
	fetched time.Time
}

// itemTTL is how long a resolved subscription item is reused.
const itemTTL = time.Hour

var _ Sender = (*StripeSender)(nil)

// NewStripeSender reports through api; each call is bounded by timeout
// (stripe.timeout), on top of the client's own.
func NewStripeSender(api *client.API, timeout time.Duration) *StripeSender {
	return &StripeSender{api: api, timeout: timeout, items: make(map[[2]string]cachedItem)}
}

// Send implements Sender.
func (s *StripeSender) Send(ctx context.Context, r Report) error {
	if s.timeout > 0 {
		var cancel context.CancelFunc
		ctx, cancel = context.WithTimeout(ctx, s.timeout)
		defer cancel()
	}
	if r.Config.Mode == config.ModeUsageRecords {
		return s.sendUsageRecord(ctx, r)
	}
	p := &stripe.BillingMeterEventParams{
		EventName:  stripe.String(r.Config.EventName),
		Identifier: stripe.String(r.Identifier),
		Payload: map[string]string{
			"stripe_customer_id": r.Customer,
			"value":              strconv.FormatInt(r.Units, 10),
		},
		Timestamp: stripe.Int64(r.Timestamp),
	}
	// Params are non-nil, so stripe-go sends one Idempotency-Key for its own
	// retries of this call; across our retries the identifier deduplicates.
	p.Context = ctx
	_, err := s.api.BillingMeterEvents.New(p)
	return classify(err)
}

// sendUsageRecord increments the customer's subscription item for the
// meter's price. Stripe has no identifier for usage records, so the
// Idempotency-Key, derived from the identifier, deduplicates retries (Stripe
// keeps keys for 24 hours).
func (s *StripeSender) sendUsageRecord(ctx context.Context, r Report) error {
	item, cached, err := s.subscriptionItem(ctx, r.Customer, r.Config.Price)
	if err != nil {
		return err
	}
	p := &stripe.UsageRecordParams{
		SubscriptionItem: stripe.String(item),
		Action:           stripe.String(stripe.UsageRecordActionIncrement),
		Quantity:         stripe.Int64(r.Units),
		Timestamp:        stripe.Int64(r.Timestamp),
	}
	p.Context = ctx
	p.SetIdempotencyKey("tollgate-ur-" + r.Identifier)
	_, err = s.api.UsageRecords.New(p)
	err = classify(err)
	var se *SendError
	if errors.As(err, &se) && se.Permanent {
		s.forget(r.Customer, r.Config.Price) // the item may have changed
		if cached {
			// Refused for an item remembered from earlier: look it up
			// afresh before deciding the report is undeliverable.
			return &SendError{Reason: "stale_item", Err: err}
		}
	}
	return err
}

// subscriptionItem finds (and caches) the item of the customer's current
// subscriptions that bills price.
func (s *StripeSender) subscriptionItem(ctx context.Context, customer, price string) (id string, cached bool, err error) {
	key := [2]string{customer, price}
	s.mu.Lock()
	c, ok := s.items[key]
	s.mu.Unlock()
	if ok && time.Since(c.fetched) < itemTTL {
		return c.id, true, nil
	}
	p := &stripe.SubscriptionListParams{Customer: stripe.String(customer)}
	p.Context = ctx
	it := s.api.Subscriptions.List(p)
	for it.Next() {
		sub := it.Subscription()
		if sub.Items == nil {
			continue
		}
		for _, item := range sub.Items.Data {
			if item.Price != nil && item.Price.ID == price {
				s.mu.Lock()
				s.items[key] = cachedItem{id: item.ID, fetched: time.Now()}
				s.mu.Unlock()
				return item.ID, false, nil
			}
		}
	}
	if err := it.Err(); err != nil {
		return "", false, classify(err)
	}
	return "", false, &SendError{Reason: "no_subscription_item", Permanent: true,
		Err: fmt.Errorf("customer %s has no current subscription with price %s", customer, price)}
}

func (s *StripeSender) forget(customer, price string) {
	s.mu.Lock()
	delete(s.items, [2]string{customer, price})
	s.mu.Unlock()
}

// errorMessage is Stripe's own message for a Stripe error (not stripe-go's
// JSON rendering of it), for operators.
func errorMessage(err error) string {
	var se *stripe.Error
	if errors.As(err, &se) && se.Msg != "" {
		return fmt.Sprintf("HTTP %d: %s", se.HTTPStatusCode, se.Msg)
	}
	return err.Error()
}

// classify maps a stripe-go error to nil, ErrAlreadyReported or a
// *SendError.
func classify(err error) error {
	if err == nil {
		return nil
	}
	var se *stripe.Error
	if errors.As(err, &se) {
		return classifyStripe(se, err)
	}
	var ne net.Error
	switch {
	case errors.Is(err, context.Canceled):
		return &SendError{Reason: "canceled", Err: err}
	case errors.Is(err, context.DeadlineExceeded), errors.As(err, &ne) && ne.Timeout():
		return &SendError{Reason: "timeout", Err: err}
	}
	return &SendError{Reason: "network", Err: err}
}

// meterWord finds Stripe's unknown-meter answers ("No active meter was
// found ..."), and not "meter" inside another word such as "parameters".
var meterWord = regexp.MustCompile(`\bmeters?\b`)

// classifyStripe reads se; the SendError carries err, which logs without
// Stripe's message (stripeapi.Error), never se itself.
func classifyStripe(se *stripe.Error, err error) error {
	msg := strings.ToLower(se.Msg)
	code := se.HTTPStatusCode
	switch {
	case code == http.StatusBadRequest && strings.Contains(msg, "already exists"):
		return ErrAlreadyReported
	case code == http.StatusTooManyRequests:
		return &SendError{Reason: "rate_limited", Err: err}
	case code == http.StatusConflict:
		return &SendError{Reason: "conflict", Err: err}
	case code >= 500:
		return &SendError{Reason: "server_error", Err: err}
	case code == http.StatusUnauthorized || code == http.StatusForbidden:
		// A key problem is the deployment's, not this report's: retry (with
		// backoff, logged) rather than park every report.
		return &SendError{Reason: "auth", Err: err}
	case strings.Contains(msg, "no such customer") || se.Param == "payload[stripe_customer_id]":
		return &SendError{Reason: "unknown_customer", Permanent: true, Err: err}
	case se.Type == stripe.ErrorTypeIdempotency:
		// The key was used with other parameters: a usage record retried
		// on another subscription item after Stripe may have applied the
		// first. Resending could bill twice; an operator must check.
		return &SendError{Reason: "idempotency_conflict", Permanent: true, Err: err}
	case meterWord.MatchString(msg) || se.Param == "event_name":
		return &SendError{Reason: "unknown_meter", Permanent: true, Err: err}
	case code == http.StatusNotFound:
		return &SendError{Reason: "not_found", Permanent: true, Err: err}
	case code >= 400:
		return &SendError{Reason: "invalid_request", Permanent: true, Err: err}
	}
	return &SendError{Reason: "network", Err: err}
}
