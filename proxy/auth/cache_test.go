package auth

import (
	"context"
	"fmt"
	"math/rand/v2"
	"strings"
	"sync/atomic"
	"testing"
	"time"
	"unsafe"

	"github.com/golang-jwt/jwt/v5"

	"github.com/tollgate-dev/tollgate/internal/testrig"
)

// TestLeewayBoundaries pins exp/nbf/iat boundaries with the injected clock,
// both on a fresh verification and on a cache hit: a cached token must be
// accepted exactly when a fresh verification would accept it.
func TestLeewayBoundaries(t *testing.T) {
	exp := t0.Add(time.Hour)
	claims := with(claimsAt(t0), "nbf", t0.Unix(), "exp", exp.Unix())
	tests := []struct {
		name   string
		leeway time.Duration
		now    time.Time
		want   string
	}{
		{"no leeway, 1s before exp", 0, exp.Add(-time.Second), ReasonOK},
		{"no leeway, at exp", 0, exp, ReasonExpired},
		{"no leeway, at nbf", 0, t0, ReasonOK},
		{"no leeway, 1s before nbf", 0, t0.Add(-time.Second), ReasonNotYetValid},
		{"30s leeway, exp+29s", 30 * time.Second, exp.Add(29 * time.Second), ReasonOK},
		{"30s leeway, exp+30s", 30 * time.Second, exp.Add(30 * time.Second), ReasonExpired},
		{"30s leeway, nbf-30s", 30 * time.Second, t0.Add(-30 * time.Second), ReasonOK},
		{"30s leeway, nbf-31s", 30 * time.Second, t0.Add(-31 * time.Second), ReasonNotYetValid},
	}
	for _, tt := range tests {
		tok := sign(t, jwt.SigningMethodHS256, testSecret, claims)
		t.Run(tt.name+"/fresh", func(t *testing.T) {
			clock := newClock(tt.now)
			o := hmacOptions(clock)
			o.Leeway = tt.leeway
			v := newVerifier(t, o)
			_, err := v.Authenticate(bearer(tok))
			if got := reasonOf(err); got != tt.want {
				t.Errorf("at %v: Authenticate = %q (%v); want %q", tt.now.Sub(t0), got, err, tt.want)
			}
		})
		t.Run(tt.name+"/cached", func(t *testing.T) {
			clock := newClock(t0.Add(time.Minute)) // valid for every leeway
			o := hmacOptions(clock)
			o.Leeway = tt.leeway
			v := newVerifier(t, o)
			if _, err := v.Authenticate(bearer(tok)); err != nil {
				t.Fatalf("priming Authenticate: %v", err)
			}
			clock.Set(tt.now)
			_, err := v.Authenticate(bearer(tok))
			if got := reasonOf(err); got != tt.want {
				t.Errorf("at %v: cached Authenticate = %q (%v); want %q", tt.now.Sub(t0), got, err, tt.want)
			}
			if n := v.verifications.Load(); n != 1 {
				t.Errorf("verifications = %d; want 1 (second call served from cache)", n)
			}
		})
	}
}

// TestCacheVerifiesOnce checks the point of the cache: an RS256 signature is
// checked once per token, not once per request.
func TestCacheVerifiesOnce(t *testing.T) {
	clock := newClock(t0)
	v := newVerifier(t, baseOptions(t, clock))
	tok := sign(t, jwt.SigningMethodRS256, rsaKey(), claimsAt(t0))
	for i := range 100 {
		clock.Advance(time.Second)
		if _, err := v.Authenticate(bearer(tok)); err != nil {
			t.Fatalf("request %d: %v", i, err)
		}
	}
	if got, want := v.verifications.Load(), int64(1); got != want {
		t.Errorf("verifications = %d; want %d", got, want)
	}
}

// Stolen-token replay past exp: a cached token is rejected once the clock
// passes exp, and its entry is dropped.
func TestCacheHitRejectsAfterExpiry(t *testing.T) {
	clock := newClock(t0)
	v := newVerifier(t, hmacOptions(clock))
	tok := sign(t, jwt.SigningMethodHS256, testSecret, with(claimsAt(t0), "exp", t0.Add(time.Minute).Unix()))
	if _, err := v.Authenticate(bearer(tok)); err != nil {
		t.Fatalf("Authenticate before exp: %v", err)
	}
	if got := v.tokens.len(); got != 1 {
		t.Fatalf("cache len = %d; want 1", got)
	}
	clock.Advance(time.Minute)
	_, err := v.Authenticate(bearer(tok))
	if got, want := reasonOf(err), ReasonExpired; got != want {
		t.Errorf("Authenticate after exp = %q (%v); want %q", got, err, want)
	}
	if got := v.tokens.len(); got != 0 {
		t.Errorf("cache len after expiry = %d; want 0", got)
	}
	// Rewinding the clock re-verifies from scratch; it does not resurrect
	// the entry.
	clock.Set(t0)
	if _, err := v.Authenticate(bearer(tok)); err != nil {
		t.Errorf("Authenticate after rewind: %v", err)
	}
	if got, want := v.verifications.Load(), int64(2); got != want {
		t.Errorf("verifications = %d; want %d", got, want)
	}
}

// An identity carries a reading of the verifier's clock taken when it was
// complete (Identity.At), which the sidecar's gate decides at (issue 13):
// on a cache hit whose link is remembered, the time its token was checked
// at; after a link read, which may wait for Redis, a reading after it;
// never a time kept from an earlier request.
func TestIdentityAtIsWhenTheIdentityWasComplete(t *testing.T) {
	clock := newClock(t0)
	o := hmacOptions(clock)
	const lookup = 3 * time.Second // a slow link read
	o.Links = slowLinks{clock: clock, took: lookup}
	var reads atomic.Int64 // the verifier's readings of its clock
	o.Now = func() time.Time { reads.Add(1); return clock.Now() }
	v := newVerifier(t, o)
	tok := sign(t, jwt.SigningMethodHS256, testSecret, with(claimsAt(t0), "stripe_customer_id", nil,
		"exp", t0.Add(time.Hour).Unix()))
	for i, c := range []struct {
		advance time.Duration
		lookup  bool // the link is read (the first request, and after the link TTL)
	}{
		{0, true}, {time.Second, false}, {time.Second, false}, {DefaultLinkTTL, true}, {time.Millisecond, false},
	} {
		clock.Advance(c.advance)
		want := clock.Now()
		if c.lookup {
			want = want.Add(lookup)
		}
		before := reads.Load()
		id, err := v.Authenticate(bearer(tok))
		if err != nil {
			t.Fatalf("request %d: %v", i, err)
		}
		// A hit with its link remembered reads the clock once; that is
		// the point of carrying the reading.
		if n := reads.Load() - before; !c.lookup && n != 1 {
			t.Errorf("request %d (a cache hit): %d readings of the clock; want 1", i, n)
		}
		if id.Customer != "cus_slow" || !id.At.Equal(want) {
			t.Errorf("request %d (link read %v): customer %q, At %v; want cus_slow at %v", i, c.lookup, id.Customer,
				id.At, want)
		}
	}
	if got := v.verifications.Load(); got != 1 {
		t.Errorf("verifications = %d; want 1 (the later requests were cache hits)", got)
	}
}

// slowLinks links every user to cus_slow, its clock advancing by took
// during each lookup.
type slowLinks struct {
	clock *testClock
	took  time.Duration
}

func (l slowLinks) CustomerForUser(context.Context, string) (string, bool, error) {
	l.clock.Advance(l.took)
	return "cus_slow", true, nil
}

// Rejections are not cached: a failing token costs a verification every
// time, and cannot fill the cache.
func TestCacheStoresOnlyVerified(t *testing.T) {
	v := newVerifier(t, hmacOptions(newClock(t0)))
	bad := sign(t, jwt.SigningMethodHS256, []byte("wrong-secret-wrong-secret-wrong-secret"), claimsAt(t0))
	for range 3 {
		if _, err := v.Authenticate(bearer(bad)); err == nil {
			t.Fatal("Authenticate(bad) succeeded")
		}
	}
	if got := v.tokens.len(); got != 0 {
		t.Errorf("cache len = %d; want 0", got)
	}
}

func TestCacheBounded(t *testing.T) {
	tests := []struct {
		name    string
		expired int // tokens that expire before the flood
	}{
		{"all live", 0},
		{"some expired", 3},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			clock := newClock(t0)
			o := hmacOptions(clock)
			o.CacheSize = 4
			v := newVerifier(t, o)
			for i := range tt.expired {
				c := with(claimsAt(t0), "sub", fmt.Sprintf("short_%d", i), "exp", t0.Add(time.Second).Unix())
				if _, err := v.Authenticate(bearer(sign(t, jwt.SigningMethodHS256, testSecret, c))); err != nil {
					t.Fatal(err)
				}
			}
			clock.Advance(2 * time.Second)
			for i := range 20 {
				c := with(claimsAt(t0), "sub", fmt.Sprintf("user_%d", i))
				if _, err := v.Authenticate(bearer(sign(t, jwt.SigningMethodHS256, testSecret, c))); err != nil {
					t.Fatal(err)
				}
				if got := v.tokens.len(); got > o.CacheSize {
					t.Fatalf("after %d tokens cache len = %d; want <= %d", i+1, got, o.CacheSize)
				}
			}
		})
	}
}

// Forgery by cache collision: a token whose hash lands on a cached valid
// token's entry (the key is a 64-bit keyed hash) must not be served that
// entry. The collision is simulated by filing the valid token's entry
// under the forged token's key.
func TestCacheCollisionIsNotAHit(t *testing.T) {
	clock := newClock(t0)
	v := newVerifier(t, hmacOptions(clock))
	valid := sign(t, jwt.SigningMethodHS256, testSecret, claimsAt(t0))
	other := sign(t, jwt.SigningMethodHS256, testSecret, with(claimsAt(t0), "sub", "user_other"))
	// The valid token's header and signature around another payload.
	parts := strings.Split(valid, ".")
	forgedClaims := strings.Split(sign(t, jwt.SigningMethodHS256, testSecret, with(claimsAt(t0), "sub", "admin")), ".")[1]
	forged := parts[0] + "." + forgedClaims + "." + parts[2]
	if _, err := v.Authenticate(bearer(valid)); err != nil {
		t.Fatal(err)
	}
	entry := v.tokens.entries[v.tokens.key(valid)]
	// The key is of the token's end: the valid token's signature under a
	// payload of the same length, changed at its start, lands on the
	// valid token's own entry with no help, and must not be served it or
	// evict it.
	sameEnd := parts[0] + "." + flipFirst(parts[1]) + "." + parts[2]
	if v.tokens.key(sameEnd) != v.tokens.key(valid) {
		t.Fatalf("a token with the valid one's length and last %d bytes has another key", keyTail)
	}
	before := v.verifications.Load()
	if id, err := v.Authenticate(bearer(sameEnd)); err == nil {
		t.Fatalf("Authenticate(the valid signature on another payload) = user %q; want a rejection", id.User)
	}
	if got := v.verifications.Load() - before; got != 1 {
		t.Errorf("verifications = %d; want 1 (a token on a valid one's key is a miss)", got)
	}
	if v.tokens.entries[v.tokens.key(valid)] != entry {
		t.Fatal("a rejected token evicted the valid token's entry")
	}
	tests := []struct {
		name     string
		tok      string
		wantUser string // "" : rejected
	}{
		{"forged token on the valid one's entry", forged, ""},
		{"another valid token on its entry", other, "user_other"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			v.tokens.put(v.tokens.key(tt.tok), entry, clock.Now())
			before := v.verifications.Load()
			id, err := v.Authenticate(bearer(tt.tok))
			switch {
			case tt.wantUser == "" && err == nil:
				t.Fatalf("Authenticate(%s) = user %q; want a rejection", tt.name, id.User)
			case tt.wantUser != "" && (err != nil || id.User != tt.wantUser):
				t.Fatalf("Authenticate(%s) = %q, %v; want user %q", tt.name, id.User, err, tt.wantUser)
			}
			if got := v.verifications.Load() - before; got != 1 {
				t.Errorf("verifications = %d; want 1 (a colliding entry is a miss)", got)
			}
		})
	}
	// The valid token still works, from the cache or verified again.
	if id, err := v.Authenticate(bearer(valid)); err != nil || id.User != claimsAt(t0)["sub"] {
		t.Errorf("Authenticate(valid) = %q, %v", id.User, err)
	}
}

// sameToken must tell apart tokens that differ in any one bit of any
// byte: in the steps of four words, in the single words and in the tail.
func TestSameToken(t *testing.T) {
	for _, n := range []int{0, 1, 7, 8, 9, 16, 23, 31, 32, 33, 40, 63, 64, 71, 600} {
		a := strings.Repeat("x", n)
		if !sameToken(a, strings.Clone(a)) {
			t.Errorf("sameToken of two copies of %d bytes = false", n)
		}
		if n > 0 && sameToken(a, a[:n-1]) {
			t.Errorf("sameToken of %d and %d bytes = true", n, n-1)
		}
		for i := range n {
			for bit := range 8 {
				b := []byte(a)
				b[i] ^= 1 << bit
				if sameToken(a, string(b)) {
					t.Fatalf("sameToken(%d bytes, bit %d of byte %d flipped) = true", n, bit, i)
				}
			}
		}
	}
}

// BenchmarkSameToken is the comparison a cache hit makes, for a 600-byte
// token (an RS256 JWT with a few claims).
func BenchmarkSameToken(b *testing.B) {
	a := strings.Repeat("eyJhbGciOiJSUzI1NiJ9.", 30)
	c := strings.Clone(a)
	for b.Loop() {
		if !sameToken(a, c) {
			b.Fatal("different")
		}
	}
}

// A cache hit's two comparisons accept exactly the tokens checkTimes
// accepts, for any exp, nbf and iat (each present or not), leeway and
// time, around the bounds and at random.
func TestCachedBoundsAreCheckTimes(t *testing.T) {
	rng := rand.New(rand.NewPCG(3, 4))
	base := time.Unix(1_800_000_000, 0)
	at := func() time.Time { return base.Add(time.Duration(rng.Int64N(int64(4*time.Hour))) - 2*time.Hour) }
	for i := range 100_000 {
		e := &verified{exp: at()}
		if rng.IntN(3) > 0 {
			e.nbf = at()
		}
		if rng.IntN(3) > 0 {
			e.iat = at()
		}
		leeway := []time.Duration{0, time.Second, time.Minute}[rng.IntN(3)]
		e.setBounds(leeway)
		nows := []time.Time{at(), e.exp.Add(leeway), e.exp.Add(leeway - 1), e.nbf.Add(-leeway), e.nbf.Add(-leeway - 1), e.iat.Add(-leeway), e.iat.Add(-leeway - 1)}
		for _, now := range nows {
			now = now.Add(time.Duration(rng.Int64N(3)) - 1) // a nanosecond either side too
			if got, want := e.inBounds(now), e.checkTimes(now, leeway) == nil; got != want {
				t.Fatalf("case %d: exp %v nbf %v iat %v leeway %v now %v: inBounds %v, checkTimes accepts %v",
					i, e.exp, e.nbf, e.iat, leeway, now, got, want)
			}
		}
	}
}

// flipFirst changes the first byte of a base64url segment to another
// base64url byte.
func flipFirst(seg string) string {
	c := byte('A')
	if seg[0] == 'A' {
		c = 'B'
	}
	return string(c) + seg[1:]
}

// A cache hit reads token, user, claims, exp, until, from and link, and
// those are kept in the entry's first two cache lines (issue 13: with
// 100,000 tokens cached, each line is a read from memory).
func TestVerifiedHitFieldsInTwoLines(t *testing.T) {
	var e verified
	end := testrig.FieldEnd
	testrig.WithinLines(t, "verified", 2, map[string]uintptr{
		"token":  end(unsafe.Offsetof(e.token), unsafe.Sizeof(e.token)),
		"user":   end(unsafe.Offsetof(e.user), unsafe.Sizeof(e.user)),
		"claims": end(unsafe.Offsetof(e.claims), unsafe.Sizeof(e.claims)),
		"exp":    end(unsafe.Offsetof(e.exp), unsafe.Sizeof(e.exp)),
		"until":  end(unsafe.Offsetof(e.until), unsafe.Sizeof(e.until)),
		"from":   end(unsafe.Offsetof(e.from), unsafe.Sizeof(e.from)),
		"link":   end(unsafe.Offsetof(e.link), unsafe.Sizeof(e.link)),
	})
	testrig.StartsOnLine[verified](t)
	// A request with a link reads its link entry too: one line.
	if n := unsafe.Sizeof(linkEntry{}); n > testrig.CacheLine {
		t.Errorf("a link entry is %d bytes, more than a cache line", n)
	}
}
