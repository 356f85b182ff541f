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

// A cached token remembers the link entry its last request used and skips
// the link cache while that entry is current (issue 13). The memo must be
// exactly what the cache would answer: once the entry is replaced (by
// another token of the same user) or forgotten, or once it is older than
// LinkTTL, a request with the token reads the cache again.
func TestTokenLinkMemoFollowsTheCache(t *testing.T) {
	clock := newClock(t0)
	links := &fakeLinks{links: map[string]string{"user_1": "cus_1"}}
	o := hmacOptions(clock)
	o.Links = links
	v := newVerifier(t, o)
	a := sign(t, jwt.SigningMethodHS256, testSecret, with(claimsAt(t0), "stripe_customer_id", nil))
	b := sign(t, jwt.SigningMethodHS256, testSecret, with(claimsAt(t0), "stripe_customer_id", nil, "iat", t0.Unix()-1))
	want := func(step, tok, customer string, calls int) {
		t.Helper()
		id, err := v.Authenticate(bearer(tok))
		if err != nil || id.Customer != customer || links.count() != calls {
			t.Fatalf("%s: customer %q, err %v, %d Links calls; want %q, nil, %d", step, id.Customer, err, links.count(), customer, calls)
		}
	}
	want("first request", a, "cus_1", 1)
	want("again, from the memo", a, "cus_1", 1)
	want("another token of the user, from the cache", b, "cus_1", 1)

	// Replaced: b's request asks Links again (the entry was forgotten) and
	// caches the new answer; a's memo is of the replaced entry.
	v.InvalidateUser("user_1")
	links.set("user_1", "cus_1b", nil)
	want("b after InvalidateUser", b, "cus_1b", 2)
	want("a after its entry was replaced", a, "cus_1b", 2)

	// Forgotten: a's memo (now of b's entry) is not used.
	v.InvalidateUser("user_1")
	links.set("user_1", "cus_1c", nil)
	want("a after InvalidateUser", a, "cus_1c", 3)

	// Expired: at LinkTTL the memo is not used either.
	clock.Advance(DefaultLinkTTL - time.Nanosecond)
	want("a just before LinkTTL", a, "cus_1c", 3)
	clock.Advance(time.Nanosecond)
	links.set("user_1", "cus_1d", nil)
	want("a at LinkTTL", a, "cus_1d", 4)
}

// Every way an entry leaves the link cache marks it gone, so that no
// token's memo of it is used: replaced, forgotten, evicted.
func TestLinkCacheMarksWhatLeavesGone(t *testing.T) {
	c := newLinkCache(2, time.Minute)
	e1, e2, e3, e1b := &linkEntry{customer: "cus_1"}, &linkEntry{customer: "cus_1"}, &linkEntry{customer: "cus_1"}, &linkEntry{customer: "cus_1"}
	c.put("u1", e1)
	c.put("u2", e2)
	if e1.gone.Load() || e2.gone.Load() {
		t.Fatal("an entry still cached is gone")
	}
	c.put("u1", e1b)
	if !e1.gone.Load() || e1b.gone.Load() {
		t.Fatalf("replaced: old gone %v, new gone %v; want true, false", e1.gone.Load(), e1b.gone.Load())
	}
	c.put("u3", e3) // full: evicts u1 or u2
	var kept, gone int
	for _, e := range []*linkEntry{e1b, e2} {
		if e.gone.Load() {
			gone++
		} else {
			kept++
		}
	}
	if gone != 1 || kept != 1 || len(c.entries) != 2 {
		t.Fatalf("evicted: %d gone, %d kept, %d cached; want 1, 1, 2", gone, kept, len(c.entries))
	}
	for u, e := range c.entries {
		if e.gone.Load() {
			t.Fatalf("%s is cached and gone", u)
		}
	}
	c.forget("u3")
	if !e3.gone.Load() {
		t.Fatal("forgotten entry not gone")
	}
}
