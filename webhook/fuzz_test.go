package webhook

import (
	"bytes"
	"context"
	"net/http"
	"net/http/httptest"
	"sync/atomic"
	"testing"
	"time"

	"github.com/tollgate-dev/tollgate/entitlements"
)

// writeCounter counts every write processing attempts, through the store
// and the ledger.
type writeCounter struct {
	entitlements.Store
	Ledger
	writes atomic.Int64
}

func (w *writeCounter) Update(ctx context.Context, c string, fn func(*entitlements.State) (*entitlements.State, error)) error {
	w.writes.Add(1)
	return w.Store.Update(ctx, c, fn)
}

func (w *writeCounter) LinkUser(ctx context.Context, user, customer string) error {
	w.writes.Add(1)
	return w.Store.LinkUser(ctx, user, customer)
}

func (w *writeCounter) Claim(ctx context.Context, event string, ttl time.Duration) (ClaimState, string, error) {
	w.writes.Add(1)
	return w.Ledger.Claim(ctx, event, ttl)
}

// FuzzWebhook throws arbitrary bodies and Stripe-Signature headers at the
// endpoint (trusted payload mode, so nothing leaves the process). Garbage
// (sign=false) must never get a 5xx nor cause a single write; a body
// signed with the real secret (sign=true) is authentic, may change state,
// and still must never get a 5xx: whatever it holds is either applied or
// refused with a 4xx.
func FuzzWebhook(f *testing.F) {
	now := time.Now()
	for _, typ := range SampleTypes() {
		obj, err := Sample(typ, SampleOptions{Customer: "cus_fuzz", Price: "price_f", User: "user_f", Features: []string{"a"}})
		if err != nil {
			f.Fatal(err)
		}
		body, err := NewEvent("evt_fuzz_"+typ[:3], typ, now, obj)
		if err != nil {
			f.Fatal(err)
		}
		f.Add(body, SignatureHeader(body, secret, now), false)
		f.Add(body, "", true)
		f.Add(body, SignatureHeader(body, oldSecret, now), false)
	}
	for _, seed := range []struct {
		body, header string
	}{
		{"", ""},
		{"{}", "t=1,v1=00"},
		{"null", "t=" + "9999999999999999999999" + ",v1=ab"},
		{`{"id":"evt_1","type":"customer.deleted","created":1,"data":{"object":{"id":"cus_{x}"}}}`, "t=,v1="},
		{`{"id":"evt_1","type":"checkout.session.completed","created":1,"data":{"object":{"id":"cs_1","customer":{"id":7}}}}`, "v1=,,,="},
		{`{"data":{"object":[]}}`, "t=1700000000,v0=abc,v1=zz,v1=00"},
	} {
		f.Add([]byte(seed.body), seed.header, false)
		f.Add([]byte(seed.body), seed.header, true)
	}

	st := openStore(f, true)
	wc := &writeCounter{Store: entitlements.NewRedisStore(st), Ledger: NewRedisLedger(st.Client, st.Keys)}
	h, err := New(Options{Secrets: []string{secret}, Store: wc, Ledger: wc, Logger: quiet, BusyWait: time.Millisecond})
	if err != nil {
		f.Fatal(err)
	}
	f.Fuzz(func(t *testing.T, body []byte, header string, sign bool) {
		if sign {
			header = SignatureHeader(body, secret, time.Now())
		}
		req := httptest.NewRequest(http.MethodPost, "/", bytes.NewReader(body))
		req.Header.Set("Content-Type", "application/json")
		req.Header.Set("Stripe-Signature", header)
		rec := httptest.NewRecorder()
		before := wc.writes.Load()
		h.ServeHTTP(rec, req)
		if rec.Code >= 500 {
			t.Fatalf("answer %d %s for body %q header %q signed %v; want no 5xx", rec.Code, rec.Body, body, header, sign)
		}
		if !sign && rec.Code != http.StatusOK && wc.writes.Load() != before {
			t.Fatalf("refused garbage (%d) caused %d writes; want none", rec.Code, wc.writes.Load()-before)
		}
	})
}
