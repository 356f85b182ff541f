package webhook

import (
	"bytes"
	"context"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"testing"
	"time"

	stripewebhook "github.com/stripe/stripe-go/v76/webhook"

	"github.com/tollgate-dev/tollgate/internal/testrig"
)

const appSecret = "whsec_the_app_verifies_with_this"

// app is the application behind tollgate: it verifies every forwarded
// event with stripe-go's own webhook package, as a user's app would.
type app struct {
	srv *httptest.Server

	mu       sync.Mutex
	events   map[string][]byte // event id -> body received
	attempts int
	answer   int           // status to answer; 0 = 200
	block    chan struct{} // when set, requests wait for it
}

func newApp(t *testing.T) *app {
	a := &app{events: map[string][]byte{}}
	a.srv = httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		body, _ := io.ReadAll(r.Body)
		a.mu.Lock()
		a.attempts++
		block, answer := a.block, a.answer
		a.mu.Unlock()
		if block != nil {
			select {
			case <-block:
			case <-r.Context().Done():
				return
			}
		}
		ev, err := stripewebhook.ConstructEvent(body, r.Header.Get("Stripe-Signature"), appSecret)
		if err != nil || r.Header.Get("Content-Type") != "application/json; charset=utf-8" {
			http.Error(w, fmt.Sprint("does not verify: ", err), http.StatusBadRequest)
			return
		}
		if answer != 0 {
			w.WriteHeader(answer)
			return
		}
		a.mu.Lock()
		a.events[ev.ID] = body
		a.mu.Unlock()
	}))
	t.Cleanup(a.srv.Close)
	return a
}

func (a *app) received(id string) ([]byte, int) {
	a.mu.Lock()
	defer a.mu.Unlock()
	return a.events[id], a.attempts
}

// runForwarder runs a forwarder until the test ends (or stop is called).
func runForwarder(t *testing.T, o ForwarderOptions) (stop func()) {
	t.Helper()
	if o.Poll == 0 {
		o.Poll = 10 * time.Millisecond
	}
	if o.Secret == "" {
		o.Secret = appSecret
	}
	if o.Logger == nil {
		o.Logger = quiet
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() { NewForwarder(o).Run(ctx); close(done) }()
	var once sync.Once
	stop = func() { once.Do(func() { cancel(); <-done }) }
	t.Cleanup(stop)
	return stop
}

// Every verified event, handled or not, reaches the app once, byte for
// byte, re-signed so that stripe-go's webhook.ConstructEvent accepts it
// with the app's own secret.
func TestForwardedEventsVerify(t *testing.T) {
	a := newApp(t)
	r := newRig(t, rigOptions{embedded: true, trusted: true, forward: true})
	q := r.queue
	runForwarder(t, ForwarderOptions{Queue: q, URL: a.srv.URL})

	handled := subEvent(t, "evt_fwd_1", "customer.subscription.created", "cus_fwd", "active", time.Now())
	other := event(t, "evt_fwd_2", "charge.refunded", time.Now(), map[string]any{"id": "ch_1", "object": "charge"})
	for _, body := range [][]byte{handled, other, handled} {
		r.deliver(body)
	}
	for id, sent := range map[string][]byte{"evt_fwd_1": handled, "evt_fwd_2": other} {
		testrig.WaitFor(t, 5*time.Second, func() error {
			if got, _ := a.received(id); !bytes.Equal(got, sent) {
				return fmt.Errorf("app received %q for %s; want the body Stripe sent", got, id)
			}
			return nil
		})
	}
	testrig.WaitFor(t, 5*time.Second, func() error {
		if n, err := q.Pending(context.Background()); err != nil || n != 0 {
			return fmt.Errorf("pending = %d, %v", n, err)
		}
		return nil
	})
	if _, attempts := a.received(""); attempts != 2 {
		t.Errorf("app got %d requests; want 2 (the duplicate delivery is not forwarded again)", attempts)
	}
}

// Forwarding never holds up the answer to Stripe: with the app hanging,
// the webhook is still answered at once.
func TestForwardingNeverHoldsUpStripe(t *testing.T) {
	a := newApp(t)
	a.block = make(chan struct{})
	defer close(a.block)
	r := newRig(t, rigOptions{embedded: true, trusted: true, forward: true})
	q := r.queue
	runForwarder(t, ForwarderOptions{Queue: q, URL: a.srv.URL, Timeout: 5 * time.Second})
	for i := range 3 {
		start := time.Now()
		r.mustDeliver(subEvent(t, fmt.Sprintf("evt_slowapp_%d", i), "customer.subscription.updated", "cus_slow", "active", time.Now()), resultProcessed)
		if d := time.Since(start); d > time.Second {
			t.Errorf("delivery %d took %v while the app hangs; want an answer at once", i, d)
		}
	}
}

// The app keeps failing: each event is tried MaxAttempts times with
// backoff, then moved to the dead-letter list with a log line.
func TestForwardRetriesThenDeadLetters(t *testing.T) {
	a := newApp(t)
	a.answer = http.StatusInternalServerError
	st := openStore(t, true)
	q := NewQueue(st.Client, st.Keys)
	var logs testrig.LogBuffer
	body := subEvent(t, "evt_dead_letter", "customer.subscription.updated", "cus_dl", "active", time.Now())
	if err := q.Enqueue(context.Background(), "evt_dead_letter", "customer.subscription.updated", body); err != nil {
		t.Fatal(err)
	}
	start := time.Now()
	runForwarder(t, ForwarderOptions{Queue: q, URL: a.srv.URL, MaxAttempts: 4, MinBackoff: 20 * time.Millisecond,
		MaxBackoff: 50 * time.Millisecond, Logger: slog.New(slog.NewTextHandler(&logs, nil))})
	var dead []DeadLetter
	testrig.WaitFor(t, 5*time.Second, func() error {
		var err error
		if dead, err = q.DeadLetters(context.Background()); err != nil || len(dead) != 1 {
			return fmt.Errorf("dead letters = %v, %v", dead, err)
		}
		return nil
	})
	took := time.Since(start)
	if _, attempts := a.received(""); attempts != 4 {
		t.Errorf("app got %d attempts; want 4", attempts)
	}
	if took < 20*time.Millisecond+40*time.Millisecond+50*time.Millisecond {
		t.Errorf("4 attempts took %v; want at least the backoffs 20ms+40ms+50ms", took)
	}
	d := dead[0]
	if d.ID != "evt_dead_letter" || d.Attempts != 4 || !bytes.Equal(d.Body, body) || !strings.Contains(d.LastError, "500") {
		t.Errorf("dead letter = %+v; want the event, 4 attempts, its body and the 500", d)
	}
	if n, _ := q.Pending(context.Background()); n != 0 {
		t.Errorf("pending after dead-lettering = %d; want 0", n)
	}
	if !strings.Contains(logs.String(), "dead-letter") || !strings.Contains(logs.String(), "evt_dead_letter") {
		t.Errorf("no dead-letter log line naming the event:\n%s", logs.String())
	}
}

// At least once across a replica crash: a worker that claimed an event
// and died (no answer, no bookkeeping) leaves it leased; once the lease
// runs out another replica's worker (its own connection) delivers it.
func TestForwardSurvivesAReplicaCrash(t *testing.T) {
	url := testrig.StartRedis(t).URL()
	a := newApp(t)
	dead := openStoreURL(t, url)
	q := NewQueue(dead.Client, dead.Keys)
	body := subEvent(t, "evt_crash", "customer.subscription.updated", "cus_crash", "active", time.Now())
	if err := q.Enqueue(context.Background(), "evt_crash", "customer.subscription.updated", body); err != nil {
		t.Fatal(err)
	}
	// The dying worker's claim, exactly as a worker makes it.
	if it, err := q.claim(context.Background(), time.Now(), 300*time.Millisecond); err != nil || it == nil {
		t.Fatalf("claim = %v, %v", it, err)
	}
	second := openStoreURL(t, url)
	start := time.Now()
	runForwarder(t, ForwarderOptions{Queue: NewQueue(second.Client, second.Keys), URL: a.srv.URL})
	testrig.WaitFor(t, 5*time.Second, func() error {
		if got, _ := a.received("evt_crash"); !bytes.Equal(got, body) {
			return fmt.Errorf("not delivered after the crash")
		}
		return nil
	})
	if took := time.Since(start); took < 250*time.Millisecond {
		t.Errorf("delivered after %v, inside the dead worker's 300ms lease", took)
	}
}

// A worker stopped (graceful shutdown) in the middle of a delivery hands
// the event back at once, so another replica need not wait for the lease.
func TestForwardStoppedMidDeliveryHandsBack(t *testing.T) {
	a := newApp(t)
	a.block = make(chan struct{})
	st := openStore(t, true)
	q := NewQueue(st.Client, st.Keys)
	body := subEvent(t, "evt_stop", "customer.subscription.updated", "cus_stop", "active", time.Now())
	if err := q.Enqueue(context.Background(), "evt_stop", "customer.subscription.updated", body); err != nil {
		t.Fatal(err)
	}
	stopA := runForwarder(t, ForwarderOptions{Queue: q, URL: a.srv.URL, Lease: time.Hour})
	testrig.WaitFor(t, 5*time.Second, func() error {
		if _, n := a.received(""); n != 1 {
			return fmt.Errorf("app saw %d attempts", n)
		}
		return nil
	})
	stopA()
	a.mu.Lock()
	close(a.block)
	a.block = nil
	a.mu.Unlock()
	if got, ok, err := q.Lookup(context.Background(), "evt_stop"); err != nil || !ok || got.Attempts != 0 || time.Until(got.Due) > time.Second {
		t.Fatalf("after the stop: %+v, %v, %v; want queued, due now, no attempt counted", got, ok, err)
	}
	runForwarder(t, ForwarderOptions{Queue: NewQueue(st.Client, st.Keys), URL: a.srv.URL})
	testrig.WaitFor(t, 5*time.Second, func() error {
		if got, _ := a.received("evt_stop"); !bytes.Equal(got, body) {
			return fmt.Errorf("not delivered after the stop")
		}
		return nil
	})
}
