package billing

import (
	"context"
	"net/http"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/stripe/stripe-go/v76"

	"github.com/tollgate-dev/tollgate/internal/testrig"
)

// A client that lost the answer of a write and retries it with the same
// Idempotency-Key gets the first answer again, byte for byte, and Stripe
// is not written to twice (issue 14: a retried change answered 409
// same_plan, a retried resume 409 not_canceled).
func TestRetriedWriteReplaysFirstAnswer(t *testing.T) {
	cases := []struct {
		name, path, body string
		setup            func(r *rig)
		write            string // the Stripe write path that must happen once
	}{
		{"change", "/subscription/change", `{"plan":"team"}`, nil, "/v1/subscriptions/sub_A"},
		{"downgrade", "/subscription/change", `{"plan":"starter"}`, func(r *rig) {
			r.subscribe("cus_A", "sub_A", stripe.SubscriptionStatusActive, "price_team_m")
		}, "/v1/subscription_schedules"},
		{"cancel", "/subscription/cancel", "", nil, "/v1/subscriptions/sub_A"},
		{"resume", "/subscription/resume", "", func(r *rig) {
			if a := r.call("POST", "/subscription/cancel", "u1", "cus_A", ""); a.status != http.StatusOK {
				r.t.Fatalf("cancel = %d %s", a.status, a.raw)
			}
		}, "/v1/subscriptions/sub_A"},
		{"pause", "/subscription/pause", `{}`, nil, "/v1/subscriptions/sub_A"},
		{"portal", "/portal", "", nil, "/v1/billing_portal/sessions"},
		{"checkout", "/checkout", `{"plan":"lifetime"}`, nil, "/v1/checkout/sessions"},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			r := newRig(t)
			r.subscribe("cus_A", "sub_A", stripe.SubscriptionStatusActive, "price_starter_m")
			if tc.setup != nil {
				tc.setup(r)
			}
			before := r.double.Count("POST", tc.write)
			first := r.call("POST", tc.path, "u1", "cus_A", tc.body, "Idempotency-Key", "k-"+tc.name)
			if first.status != http.StatusOK {
				t.Fatalf("first %s = %d %s; want 200", tc.path, first.status, first.raw)
			}
			writes := r.double.Count("POST", tc.write)
			if writes == before {
				t.Fatalf("the first %s wrote nothing to %s", tc.path, tc.write)
			}
			for i := range 2 {
				again := r.call("POST", tc.path, "u1", "cus_A", tc.body, "Idempotency-Key", "k-"+tc.name)
				if again.status != first.status || again.raw != first.raw || again.header.Get("Idempotent-Replayed") != "true" {
					t.Errorf("retry %d = %d %s (replayed %q); want the first answer %d %s replayed",
						i+1, again.status, again.raw, again.header.Get("Idempotent-Replayed"), first.status, first.raw)
				}
			}
			if n := r.double.Count("POST", tc.write); n != writes {
				t.Errorf("Stripe writes to %s: %d after the first call, %d after the retries; want no more", tc.write, writes, n)
			}
			// Without the key the call runs again and meets its own effect.
			if tc.name == "change" {
				if a := r.call("POST", tc.path, "u1", "cus_A", tc.body); a.code() != "same_plan" {
					t.Errorf("the change again without a key = %d %s; want 409 same_plan", a.status, a.raw)
				}
			}
		})
	}
}

// The stored answer belongs to one user, one call and one key, and to the
// parameters first sent with it.
func TestReplayScope(t *testing.T) {
	r := newRig(t)
	r.subscribe("cus_A", "sub_A", stripe.SubscriptionStatusActive, "price_starter_m")
	r.subscribe("cus_B", "sub_B", stripe.SubscriptionStatusActive, "price_starter_m")
	first := r.call("POST", "/subscription/change", "u1", "cus_A", `{"plan":"team"}`, "Idempotency-Key", "k1")
	if first.status != http.StatusOK {
		t.Fatalf("change = %d %s", first.status, first.raw)
	}
	cases := []struct {
		name, user, customer, path, body, key string
		status                                int
		code                                  string
	}{
		// Whitespace in the JSON is not another request.
		{"same body, other spacing", "u1", "cus_A", "/subscription/change", "{ \"plan\" : \"team\" }\n", "k1", 200, ""},
		{"other body", "u1", "cus_A", "/subscription/change", `{"plan":"pro"}`, "k1", 409, "idempotency_conflict"},
		{"other call", "u1", "cus_A", "/subscription/cancel", "", "k1", 200, ""},
		{"other user", "u2", "cus_B", "/subscription/change", `{"plan":"team"}`, "k1", 200, ""},
		{"key too long", "u1", "cus_A", "/subscription/change", `{"plan":"team"}`, strings.Repeat("k", 256), 400, "invalid_request"},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			a := r.call("POST", tc.path, tc.user, tc.customer, tc.body, "Idempotency-Key", tc.key)
			if a.status != tc.status || a.code() != tc.code {
				t.Errorf("%s = %d %s; want %d %q", tc.path, a.status, a.raw, tc.status, tc.code)
			}
		})
	}
	if n := r.double.Count("POST", "/v1/subscriptions/sub_B"); n != 1 {
		t.Errorf("u2's change with u1's key updated sub_B %d times; want 1 (its own call)", n)
	}
	key := r.replayKeys()
	if len(key) != 3 {
		t.Fatalf("stored replay keys = %v; want 3 (u1 change, u1 cancel, u2 change)", key)
	}
	ttl, err := r.st.Client.PTTL(t.Context(), key[0]).Result()
	if err != nil || ttl <= 24*time.Hour-time.Minute || ttl > 24*time.Hour {
		t.Errorf("replay key TTL = %v, %v; want 24 h", ttl, err)
	}
}

// replayKeys lists the stored idempotent answers.
func (r *rig) replayKeys() []string {
	r.t.Helper()
	keys, err := r.st.Client.Keys(r.t.Context(), "*billing*idempotency*").Result()
	if err != nil {
		r.t.Fatal(err)
	}
	return keys
}

// An answer worth retrying (Stripe unreachable) is not stored: the retry
// with the same key runs the call, and its answer is the one replayed.
func TestReplayKeepsNoFailure(t *testing.T) {
	r := newRig(t)
	r.subscribe("cus_A", "sub_A", stripe.SubscriptionStatusActive, "price_starter_m")
	r.double.FailNextWith(3, testrig.Fault{Status: http.StatusServiceUnavailable, Type: "api_error",
		Message: "down", Method: "POST", PathPrefix: "/v1/subscriptions/sub_A"})
	a := r.call("POST", "/subscription/change", "u1", "cus_A", `{"plan":"team"}`, "Idempotency-Key", "k1")
	if a.status != http.StatusServiceUnavailable || a.code() != "billing_unavailable" {
		t.Fatalf("change with Stripe down = %d %s; want 503 billing_unavailable", a.status, a.raw)
	}
	if keys := r.replayKeys(); len(keys) != 0 {
		t.Errorf("a 503 left %v stored", keys)
	}
	b := r.call("POST", "/subscription/change", "u1", "cus_A", `{"plan":"team"}`, "Idempotency-Key", "k1")
	c := r.call("POST", "/subscription/change", "u1", "cus_A", `{"plan":"team"}`, "Idempotency-Key", "k1")
	if b.status != http.StatusOK || b.header.Get("Idempotent-Replayed") != "" || c.raw != b.raw || c.header.Get("Idempotent-Replayed") != "true" {
		t.Errorf("retries = %d %s, %d %s; want the change done, then replayed", b.status, b.raw, c.status, c.raw)
	}
}

// countingReplays counts Claim calls, to know that a request is waiting.
type countingReplays struct {
	Replays
	claims atomic.Int32
}

func (c *countingReplays) Claim(ctx context.Context, key string, cl Claim, ttl time.Duration) (*Held, error) {
	c.claims.Add(1)
	return c.Replays.Claim(ctx, key, cl, ttl)
}

// A duplicate that arrives while the first request runs (on this replica
// or another) waits for its answer, or runs the call itself when the first
// one gave up its claim; it never runs alongside it.
func TestConcurrentDuplicateWaits(t *testing.T) {
	const body = `{"plan":"team"}`
	path := prefix + "/subscription/change"
	cases := []struct {
		name   string
		settle func(r *rig, key string, cl Claim) // what the "first request" does
		want   func(t *testing.T, r *rig, a answer)
	}{
		{"the first answers", func(r *rig, key string, cl Claim) {
			if err := r.h.replays.Save(r.t.Context(), key, cl, Answer{Status: 200, Body: []byte(`{"first":true}`)}, time.Hour); err != nil {
				r.t.Error(err)
			}
		}, func(t *testing.T, r *rig, a answer) {
			if a.status != 200 || a.body["first"] != true || r.double.Count("POST", "/v1/subscriptions/sub_A") != 0 {
				t.Errorf("duplicate = %d %s; want the first answer, and no Stripe write of its own", a.status, a.raw)
			}
		}},
		{"the first fails", func(r *rig, key string, cl Claim) {
			if err := r.h.replays.Release(r.t.Context(), key, cl); err != nil {
				r.t.Error(err)
			}
		}, func(t *testing.T, r *rig, a answer) {
			if a.status != 200 || a.str("plan") != "team" || r.double.Count("POST", "/v1/subscriptions/sub_A") != 1 {
				t.Errorf("duplicate = %d %s; want it to run the change itself, once", a.status, a.raw)
			}
		}},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			r := newRig(t)
			r.subscribe("cus_A", "sub_A", stripe.SubscriptionStatusActive, "price_starter_m")
			counting := &countingReplays{Replays: r.h.replays}
			r.h.replays = counting
			key, cl := replayKey("u1", "subscription/change", "k1"), Claim{Fingerprint: fingerprint("POST", path, []byte(body)), Token: "first"}
			if held, err := counting.Replays.Claim(t.Context(), key, cl, time.Minute); held != nil || err != nil {
				t.Fatalf("claim = %v, %v", held, err)
			}
			done := make(chan answer, 1)
			go func() { done <- r.call("POST", "/subscription/change", "u1", "cus_A", body, "Idempotency-Key", "k1") }()
			testrig.Eventually(t, "the duplicate to find the key held", func() bool { return counting.claims.Load() >= 1 })
			tc.settle(r, key, cl)
			select {
			case a := <-done:
				tc.want(t, r, a)
			case <-time.After(20 * time.Second):
				t.Fatal("the duplicate did not answer")
			}
		})
	}
}

// A duplicate gives up waiting after a while: 409 request_in_progress,
// with Retry-After, and nothing done.
func TestDuplicateOfAStuckRequest(t *testing.T) {
	r := newRig(t)
	r.subscribe("cus_A", "sub_A", stripe.SubscriptionStatusActive, "price_starter_m")
	r.h.replayWait = 100 * time.Millisecond
	body := `{"plan":"team"}`
	cl := Claim{Fingerprint: fingerprint("POST", prefix+"/subscription/change", []byte(body)), Token: "stuck"}
	if _, err := r.h.replays.Claim(t.Context(), replayKey("u1", "subscription/change", "k1"), cl, time.Minute); err != nil {
		t.Fatal(err)
	}
	a := r.call("POST", "/subscription/change", "u1", "cus_A", body, "Idempotency-Key", "k1")
	if a.status != http.StatusConflict || a.code() != "request_in_progress" || a.header.Get("Retry-After") != "1" {
		t.Errorf("duplicate of a stuck request = %d %s (Retry-After %q); want 409 request_in_progress, Retry-After 1",
			a.status, a.raw, a.header.Get("Retry-After"))
	}
	if n := r.double.Count("POST", "/v1/subscriptions/sub_A"); n != 0 {
		t.Errorf("%d Stripe writes; want none", n)
	}
}

// Many copies of one click at once (a retrying client, several replicas'
// worth): one change, one answer for all.
func TestConcurrentRetriesChangeOnce(t *testing.T) {
	r := newRig(t)
	r.subscribe("cus_A", "sub_A", stripe.SubscriptionStatusActive, "price_starter_m")
	const n = 8
	answers := make([]answer, n)
	var wg sync.WaitGroup
	for i := range n {
		wg.Go(func() {
			answers[i] = r.call("POST", "/subscription/change", "u1", "cus_A", `{"plan":"team"}`, "Idempotency-Key", "k1")
		})
	}
	wg.Wait()
	for i, a := range answers {
		if a.status != http.StatusOK || a.raw != answers[0].raw {
			t.Errorf("answer %d = %d %s; want the one answer %s", i, a.status, a.raw, answers[0].raw)
		}
	}
	if got := r.double.Count("POST", "/v1/subscriptions/sub_A"); got != 1 {
		t.Errorf("%d subscription updates for %d copies of one change; want 1", got, n)
	}
}
