package meter

import (
	"context"
	"fmt"
	"time"

	"github.com/stripe/stripe-go/v76"
	"github.com/stripe/stripe-go/v76/client"
)

// StripeMeter is a Billing Meter as reconciliation needs it.
type StripeMeter struct {
	ID        string
	EventName string
	Status    string // active or inactive
	Formula   string // sum or count: how Stripe aggregates the events' values
}

// Summaries reads what Stripe itself aggregated from the meter events it
// received; *StripeSummaries is one.
type Summaries interface {
	// Meters returns the account's Billing Meters by event name (an
	// active one wins over an inactive one).
	Meters(ctx context.Context) (map[string]StripeMeter, error)
	// Sum returns the aggregated value of a customer's events of a meter
	// with timestamps in [from, to).
	Sum(ctx context.Context, meterID, customer string, from, to time.Time) (float64, error)
}

// StripeSummaries implements Summaries with stripe-go: billing/meter List
// and billing/metereventsummary List.
type StripeSummaries struct{ api *client.API }

var _ Summaries = (*StripeSummaries)(nil)

// NewStripeSummaries returns Summaries on a stripe-go client.
func NewStripeSummaries(api *client.API) *StripeSummaries { return &StripeSummaries{api: api} }

// Meters implements Summaries.
func (s *StripeSummaries) Meters(ctx context.Context) (map[string]StripeMeter, error) {
	p := &stripe.BillingMeterListParams{}
	p.Context = ctx
	p.Limit = stripe.Int64(100)
	it := s.api.BillingMeters.List(p)
	out := map[string]StripeMeter{}
	for it.Next() {
		m := it.BillingMeter()
		sm := StripeMeter{ID: m.ID, EventName: m.EventName, Status: string(m.Status)}
		if m.DefaultAggregation != nil {
			sm.Formula = string(m.DefaultAggregation.Formula)
		}
		if old, ok := out[m.EventName]; !ok || old.Status != string(stripe.BillingMeterStatusActive) {
			out[m.EventName] = sm
		}
	}
	if err := it.Err(); err != nil {
		return nil, fmt.Errorf("meter: list billing meters: %w", err)
	}
	return out, nil
}

// Sum implements Summaries: one summary over the whole range (no
// value_grouping_window), summed over every summary returned in case
// Stripe splits it.
func (s *StripeSummaries) Sum(ctx context.Context, meterID, customer string, from, to time.Time) (float64, error) {
	p := &stripe.BillingMeterEventSummaryListParams{ID: stripe.String(meterID), Customer: stripe.String(customer),
		StartTime: stripe.Int64(from.Unix()), EndTime: stripe.Int64(to.Unix())}
	p.Context = ctx
	p.Limit = stripe.Int64(100)
	it := s.api.BillingMeterEventSummaries.List(p)
	var sum float64
	for it.Next() {
		sum += it.BillingMeterEventSummary().AggregatedValue
	}
	if err := it.Err(); err != nil {
		return 0, fmt.Errorf("meter: event summaries of %s for %s: %w", meterID, customer, err)
	}
	return sum, nil
}
