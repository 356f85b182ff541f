package auth

import (
	"context"
	"errors"
	"sync"
	"testing"
	"time"

	"github.com/golang-jwt/jwt/v5"
)

// fakeLinks is a UserLinks that counts lookups.
type fakeLinks struct {
	mu    sync.Mutex
	links map[string]string
	err   error
	calls int
}

func (f *fakeLinks) CustomerForUser(_ context.Context, user string) (string, bool, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.calls++
	if f.err != nil {
		return "", false, f.err
	}
	c, ok := f.links[user]
	return c, ok, nil
}

func (f *fakeLinks) set(user, customer string, err error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	if customer != "" {
		f.links[user] = customer
	}
	f.err = err
}

func (f *fakeLinks) count() int {
	f.mu.Lock()
	defer f.mu.Unlock()
	return f.calls
}

// TestCustomerMapping walks a request sequence over one verifier: the claim
// wins, Links fills in without it, and link answers expire quickly.
func TestCustomerMapping(t *testing.T) {
	clock := newClock(t0)
	links := &fakeLinks{links: map[string]string{"user_1": "cus_linked"}}
	o := hmacOptions(clock)
	o.Links = links
	v := newVerifier(t, o)
	// Tokens live long enough for every step's clock.
	withClaim := sign(t, jwt.SigningMethodHS256, testSecret, with(claimsAt(t0), "exp", t0.Add(24*time.Hour).Unix()))
	noClaim := sign(t, jwt.SigningMethodHS256, testSecret, with(claimsAt(t0), "stripe_customer_id", nil, "exp", t0.Add(24*time.Hour).Unix()))
	nullClaim := sign(t, jwt.SigningMethodHS256, testSecret, with(claimsAt(t0), "stripe_customer_id", "", "exp", t0.Add(24*time.Hour).Unix()))
	lost := errors.New("store unreachable")

	steps := []struct {
		name      string
		advance   time.Duration
		setup     func()
		tok       string
		want      string // Customer
		wantErr   error
		wantCalls int // cumulative Links calls
	}{
		{"claim wins, Links not asked", 0, nil, withClaim, "cus_123", nil, 0},
		{"no claim: Links", 0, nil, noClaim, "cus_linked", nil, 1},
		{"empty claim: Links (cached)", 0, nil, nullClaim, "cus_linked", nil, 1},
		{"within LinkTTL: cached", 29 * time.Second, nil, noClaim, "cus_linked", nil, 1},
		{"after LinkTTL: asked again", 2 * time.Second, nil, noClaim, "cus_linked", nil, 2},
		{"Links down, recent answer used", 40 * time.Second, func() { links.set("", "", lost) }, noClaim, "cus_linked", nil, 3},
		{"Links down, answer too old", 10 * time.Minute, nil, noClaim, "", ErrLinkUnavailable, 4},
		{"Links back", 0, func() { links.set("", "", nil) }, noClaim, "cus_linked", nil, 5},
	}
	for _, s := range steps {
		clock.Advance(s.advance)
		if s.setup != nil {
			s.setup()
		}
		id, err := v.Authenticate(bearer(s.tok))
		if !errors.Is(err, s.wantErr) || (err != nil && s.wantErr == nil) {
			t.Fatalf("%s: Authenticate error = %v; want %v", s.name, err, s.wantErr)
		}
		if id.Customer != s.want {
			t.Errorf("%s: Customer = %q; want %q", s.name, id.Customer, s.want)
		}
		if err != nil && id.User != "user_1" {
			t.Errorf("%s: User = %q on link failure; want it kept for logs", s.name, id.User)
		}
		if got := links.count(); got != s.wantCalls {
			t.Errorf("%s: Links calls = %d; want %d", s.name, got, s.wantCalls)
		}
	}
}

// A user without a link is valid with Customer "", and that answer is reused
// only briefly so a fresh checkout is seen quickly.
func TestNoLinkIsShortLived(t *testing.T) {
	clock := newClock(t0)
	links := &fakeLinks{links: map[string]string{}}
	o := hmacOptions(clock)
	o.Links = links
	v := newVerifier(t, o)
	tok := sign(t, jwt.SigningMethodHS256, testSecret, with(claimsAt(t0), "stripe_customer_id", nil))

	steps := []struct {
		advance   time.Duration
		link      string
		want      string
		wantCalls int
	}{
		{0, "", "", 1},
		{900 * time.Millisecond, "cus_new", "", 1}, // negative answer still cached
		{100 * time.Millisecond, "", "cus_new", 2}, // 1s: asked again
	}
	for i, s := range steps {
		clock.Advance(s.advance)
		links.set("user_1", s.link, nil)
		id, err := v.Authenticate(bearer(tok))
		if err != nil {
			t.Fatalf("step %d: %v", i, err)
		}
		if id.Customer != s.want || links.count() != s.wantCalls {
			t.Errorf("step %d: Customer = %q, calls = %d; want %q, %d", i, id.Customer, links.count(), s.want, s.wantCalls)
		}
	}
	// InvalidateUser forces the next lookup.
	v.InvalidateUser("user_1")
	if _, err := v.Authenticate(bearer(tok)); err != nil || links.count() != 3 {
		t.Errorf("after InvalidateUser: err = %v, calls = %d; want nil, 3", err, links.count())
	}
}

func TestInvalidLinkIgnored(t *testing.T) {
	links := &fakeLinks{links: map[string]string{"user_1": "cus_1\r\nX-Evil: 1"}}
	o := hmacOptions(newClock(t0))
	o.Links = links
	v := newVerifier(t, o)
	id, err := v.Authenticate(bearer(sign(t, jwt.SigningMethodHS256, testSecret, with(claimsAt(t0), "stripe_customer_id", nil))))
	if err != nil || id.Customer != "" {
		t.Errorf("Authenticate = %+v, %v; want Customer \"\", nil", id, err)
	}
}
