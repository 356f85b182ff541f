package webhook

import (
	"bytes"
	"context"
	"fmt"
	"io"
	"log/slog"
	"math/rand/v2"
	"net/http"
	"time"

	stripewebhook "github.com/stripe/stripe-go/v76/webhook"
)

// SignatureHeader returns a Stripe-Signature header for payload signed
// with secret at t: "t=<unix>,v1=<hex HMAC-SHA256 of "<unix>.<payload>">",
// the format Stripe signs with, so any Stripe library verifies it.
func SignatureHeader(payload []byte, secret string, t time.Time) string {
	return stripewebhook.GenerateTestSignedPayload(&stripewebhook.UnsignedPayload{
		Payload: payload, Secret: secret, Timestamp: t,
	}).Header
}

// ForwarderOptions configure a Forwarder.
type ForwarderOptions struct {
	Queue  *Queue
	URL    string // the application's endpoint
	Secret string // whsec_... the application verifies with
	// Timeout bounds one delivery (default 10s); a claim is leased for 10s
	// longer.
	Timeout time.Duration
	// MaxAttempts is how often an event is tried before it is moved to the
	// dead-letter list (default 15).
	MaxAttempts int
	// MinBackoff and MaxBackoff bound the wait before a retry: MinBackoff
	// doubling per failed attempt, up to MaxBackoff, plus up to 25% jitter
	// (defaults 1s and 1h).
	MinBackoff, MaxBackoff time.Duration
	// Poll is how often an idle worker looks for due events (default 1s).
	Poll time.Duration
	// Lease is how long a claimed event stays invisible to other workers
	// (default Timeout+10s): a worker that dies mid-delivery delays the
	// event by this much.
	Lease time.Duration
	// Transport carries the deliveries (nil: a clone of
	// http.DefaultTransport).
	Transport *http.Transport
	Logger    *slog.Logger
}

// Forwarder re-posts queued events to the application, one at a time per
// replica; every replica may run one.
type Forwarder struct {
	o      ForwarderOptions
	client *http.Client
	log    *slog.Logger
}

// NewForwarder returns a Forwarder; Run starts it.
func NewForwarder(o ForwarderOptions) *Forwarder {
	if o.Timeout <= 0 {
		o.Timeout = 10 * time.Second
	}
	if o.MaxAttempts <= 0 {
		o.MaxAttempts = 15
	}
	if o.MinBackoff <= 0 {
		o.MinBackoff = time.Second
	}
	if o.MaxBackoff <= 0 {
		o.MaxBackoff = time.Hour
	}
	if o.Poll <= 0 {
		o.Poll = time.Second
	}
	if o.Lease <= 0 {
		o.Lease = o.Timeout + lockMargin
	}
	if o.Transport == nil {
		o.Transport = http.DefaultTransport.(*http.Transport).Clone()
	}
	f := &Forwarder{o: o, log: o.Logger, client: &http.Client{Timeout: o.Timeout, Transport: o.Transport}}
	if f.log == nil {
		f.log = slog.Default()
	}
	return f
}

// Run delivers due events until ctx ends. A delivery cut short by ctx stays
// leased and is retried, by any replica, once the lease runs out.
func (f *Forwarder) Run(ctx context.Context) {
	defer f.o.Transport.CloseIdleConnections()
	t := time.NewTicker(f.o.Poll)
	defer t.Stop()
	for {
		for ctx.Err() == nil {
			more, err := f.deliverOne(ctx)
			if err != nil && ctx.Err() == nil {
				f.log.Warn("webhook: forwarding queue", "err", err)
			}
			if !more || err != nil {
				break
			}
		}
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
	}
}

// deliverOne claims and delivers one due event; false when none was due.
func (f *Forwarder) deliverOne(ctx context.Context) (bool, error) {
	it, err := f.o.Queue.claim(ctx, time.Now(), f.o.Lease)
	if it == nil || err != nil {
		return false, err
	}
	err = f.post(ctx, it)
	// The outcome is recorded even when shutdown began meanwhile: an
	// answered delivery must not be sent again, an interrupted one should
	// not wait for its lease. If this fails too, the lease runs out.
	bctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), 2*time.Second)
	defer cancel()
	switch {
	case err == nil:
		f.log.Info("webhook: forwarded", "event", it.ID, "type", it.Type, "attempt", it.Attempts+1)
		return ctx.Err() == nil, f.o.Queue.done(bctx, it.ID)
	case ctx.Err() != nil:
		// Cut short by shutdown: hand it back, due now, attempt not counted.
		return false, f.o.Queue.retry(bctx, it, time.Now())
	}
	it.Attempts++
	it.LastError = err.Error()
	if it.Attempts >= f.o.MaxAttempts {
		f.log.Error("webhook: forwarding given up; event moved to the dead-letter list",
			"event", it.ID, "type", it.Type, "attempts", it.Attempts, "err", err)
		return true, f.o.Queue.bury(bctx, it, time.Now())
	}
	wait := f.backoff(it.Attempts)
	f.log.Warn("webhook: forwarding failed; will retry", "event", it.ID, "type", it.Type,
		"attempt", it.Attempts, "retry_in", wait.String(), "err", err)
	return true, f.o.Queue.retry(bctx, it, time.Now().Add(wait))
}

func (f *Forwarder) backoff(attempts int) time.Duration {
	d := f.o.MaxBackoff
	if attempts < 40 {
		d = min(f.o.MinBackoff<<(attempts-1), f.o.MaxBackoff)
	}
	return d + time.Duration(rand.Int64N(int64(d)/4+1))
}

// post sends one event, signed now (so the application's own timestamp
// tolerance holds for a retry hours later). Any 2xx is a delivery.
func (f *Forwarder) post(ctx context.Context, it *item) error {
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, f.o.URL, bytes.NewReader(it.Body))
	if err != nil {
		return err
	}
	req.Header.Set("Content-Type", "application/json; charset=utf-8")
	req.Header.Set("Stripe-Signature", SignatureHeader(it.Body, f.o.Secret, time.Now()))
	req.Header.Set("User-Agent", "tollgate-webhook-forwarder")
	resp, err := f.client.Do(req)
	if err != nil {
		return err
	}
	_, _ = io.Copy(io.Discard, io.LimitReader(resp.Body, 64<<10))
	resp.Body.Close()
	if resp.StatusCode/100 != 2 {
		return fmt.Errorf("application answered %s", resp.Status)
	}
	return nil
}
