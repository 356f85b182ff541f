package auth

import (
	"crypto/subtle"
	"hash/maphash"
	"sync"
	"sync/atomic"
	"time"

	"github.com/golang-jwt/jwt/v5"
)

// evictScan is how many entries an insert into a full cache inspects looking
// for an expired one before evicting an arbitrary one. Go's randomised map
// iteration makes the arbitrary choice a random one, which is good enough and
// keeps inserts O(1).
const evictScan = 8

// verified is what the token cache remembers about a token whose signature
// and claims were checked. Claims is shared by every hit and must be treated
// as read-only.
//
// A hit reads the fields up to link, and no others: they are kept in the
// entry's first 128 bytes, two cache lines, and the link entry is one more
// (issue 13: with 100,000 tokens cached, each line a hit touches is a
// read from memory).
type verified struct {
	token  string // the whole token: a hit must be this token, not one that hashes alike
	user   string
	claims jwt.MapClaims
	exp    time.Time

	// until and from are the bounds checkTimes applies, with the cache's
	// leeway, set when the entry is cached (put): a hit compares the time
	// twice instead of shifting three times by the leeway (issue 13), and
	// only a token outside them is checked again, for its exact reason.
	until time.Time // exp + leeway
	from  time.Time // the later of nbf - leeway and iat - leeway

	// link is the user's link cache entry that this token's last request
	// used (see linkCache), or the entry of its customer claim (set when
	// the token is verified; links are resolved per request).
	link atomic.Pointer[linkEntry]

	nbf, iat time.Time // zero when absent; read only when checkTimes runs, or before from

	// To 192 bytes, a size class of whole cache lines, so that entries
	// start on a line (TestVerifiedHitFieldsInTwoLines).
	_ [24]byte
}

// setBounds sets until and from for leeway.
func (e *verified) setBounds(leeway time.Duration) {
	e.until, e.from = e.exp.Add(leeway), time.Time{}
	set := false
	for _, t := range [...]time.Time{e.nbf, e.iat} {
		if t.IsZero() {
			continue
		}
		if f := t.Add(-leeway); !set || f.After(e.from) {
			e.from, set = f, true
		}
	}
}

// hasFrom reports whether from is a bound: nbf or iat is present.
func (e *verified) hasFrom() bool { return !e.nbf.IsZero() || !e.iat.IsZero() }

// inBounds reports whether checkTimes would accept the entry at now
// (setBounds has run). Without nbf and iat, from is the zero time, which
// no clock reads before, so nbf and iat (past the first 128 bytes) are
// read only for a time before year 1 or before a present bound.
func (e *verified) inBounds(now time.Time) bool {
	return now.Before(e.until) && (!now.Before(e.from) || !e.hasFrom())
}

// checkTimes re-applies golang-jwt's exp/nbf/iat rules with leeway, so a
// cache hit is accepted exactly when a fresh verification would be.
func (e *verified) checkTimes(now time.Time, leeway time.Duration) *Error {
	if !now.Before(e.exp.Add(leeway)) {
		return failf(ReasonExpired, "token expired at %s (cached)", e.exp.Format(time.RFC3339))
	}
	if !e.nbf.IsZero() && now.Before(e.nbf.Add(-leeway)) {
		return failf(ReasonNotYetValid, "token not valid before %s (cached)", e.nbf.Format(time.RFC3339))
	}
	if !e.iat.IsZero() && now.Before(e.iat.Add(-leeway)) {
		return failf(ReasonNotYetValid, "token issued in the future at %s (cached)", e.iat.Format(time.RFC3339))
	}
	return nil
}

// tokenCache maps a token to its verification. Only verified tokens are
// stored, so an attacker cannot fill it with garbage.
//
// The map key is a keyed 64-bit hash (hash/maphash, with a random seed per
// process) of the token's length and its last keyTail bytes: the lookup
// is on every request, and a cryptographic hash of a 1 KB token cost more
// than the rest of the cache hit (issue 13); so did a keyed hash of all of
// it. The hash only finds the entry. What makes it a hit is the comparison
// of the whole token with the one the entry was verified for, in constant
// time, so a forged token that lands on a valid one's entry (the valid
// token's signature under another payload does, by construction; any
// token may by chance) misses and is verified like any other. Only
// verified tokens are stored, so a forgery never evicts the entry it
// lands on; two valid tokens on one key just take turns in it.
type tokenCache struct {
	mu      sync.RWMutex
	max     int
	leeway  time.Duration
	seed    maphash.Seed
	entries map[uint64]*verified
}

func newTokenCache(max int, leeway time.Duration) *tokenCache {
	return &tokenCache{max: max, leeway: leeway, seed: maphash.MakeSeed(), entries: make(map[uint64]*verified)}
}

// keyTail is how much of a token's end its key hashes. A JWT ends with
// its signature, which differs between any two valid tokens (43 bytes of
// base64 for HS256, 342 for RS256).
const keyTail = 64

// key is where tok is looked up: the hash of its last keyTail bytes (all
// of a shorter token), mixed with its length.
func (c *tokenCache) key(tok string) uint64 {
	n := len(tok)
	if n > keyTail {
		tok = tok[n-keyTail:]
	}
	return maphash.String(c.seed, tok) ^ uint64(n)*0x9e3779b97f4a7c15
}

// get returns the entry for tok, or ok false, and the entry's link
// (verified.link) when links finds it current at now. A hit whose time
// claims no longer pass returns the rejection; an expired entry is also
// dropped so no entry outlives exp. The link is read before the token is
// compared, though only used after: with many tokens cached, the link
// entry is a read from memory, and the comparison's reads of the cached
// copy go on meanwhile instead of before it (issue 13).
func (c *tokenCache) get(key uint64, tok string, now time.Time, links *linkCache) (e *verified, link *linkEntry, rej *Error, ok bool) {
	c.mu.RLock()
	e, ok = c.entries[key]
	c.mu.RUnlock()
	if !ok {
		return nil, nil, nil, false
	}
	if l := e.link.Load(); links.current(l, now) {
		link = l
	}
	if !sameToken(e.token, tok) {
		return nil, nil, nil, false
	}
	if e.inBounds(now) {
		return e, link, nil, true
	}
	if rej = e.checkTimes(now, c.leeway); rej != nil && rej.Reason == ReasonExpired {
		c.mu.Lock()
		if c.entries[key] == e {
			delete(c.entries, key)
		}
		c.mu.Unlock()
	}
	return e, link, rej, true
}

// sameToken compares two tokens in constant time (for tokens of one
// length; the length is not secret), as crypto/subtle.ConstantTimeCompare
// does, but 32 bytes at a step (issue 13: byte by byte, the comparison
// of a 1 KB token cost more than the rest of the cache hit). Every byte
// is read whatever the others hold, and nothing branches on their values.
func sameToken(a, b string) bool {
	if len(a) != len(b) {
		return false
	}
	b = b[:len(a)]
	var diff, d1, d2, d3 uint64 // four words a step: four independent chains
	for len(a) >= 32 {
		_, _ = a[31], b[31]
		diff |= load64(a[0:8]) ^ load64(b[0:8])
		d1 |= load64(a[8:16]) ^ load64(b[8:16])
		d2 |= load64(a[16:24]) ^ load64(b[16:24])
		d3 |= load64(a[24:32]) ^ load64(b[24:32])
		a, b = a[32:], b[32:]
	}
	for len(a) >= 8 {
		diff |= load64(a[0:8]) ^ load64(b[0:8])
		a, b = a[8:], b[8:]
	}
	for i := 0; i < len(a); i++ {
		diff |= uint64(a[i] ^ b[i])
	}
	diff |= d1 | d2 | d3
	diff |= diff >> 32
	diff |= diff >> 16
	diff |= diff >> 8
	return subtle.ConstantTimeByteEq(uint8(diff), 0) == 1
}

// load64 reads s[:8] as a little-endian word (the compiler makes it one
// load).
func load64(s string) uint64 {
	_ = s[7]
	return uint64(s[0]) | uint64(s[1])<<8 | uint64(s[2])<<16 | uint64(s[3])<<24 |
		uint64(s[4])<<32 | uint64(s[5])<<40 | uint64(s[6])<<48 | uint64(s[7])<<56
}

// put stores e, verified for e.token, under key.
func (c *tokenCache) put(key uint64, e *verified, now time.Time) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if _, ok := c.entries[key]; !ok && len(c.entries) >= c.max {
		c.evictLocked(now)
	}
	e.setBounds(c.leeway)
	c.entries[key] = e
}

func (c *tokenCache) evictLocked(now time.Time) {
	var victim uint64
	n := 0
	for k, e := range c.entries {
		if n == 0 {
			victim = k
		}
		if !now.Before(e.exp.Add(c.leeway)) {
			delete(c.entries, k)
			return
		}
		if n++; n == evictScan {
			break
		}
	}
	delete(c.entries, victim)
}

// clear forgets every verified token, so that each is checked again
// against the current keys.
func (c *tokenCache) clear() {
	c.mu.Lock()
	defer c.mu.Unlock()
	clear(c.entries)
}

func (c *tokenCache) len() int {
	c.mu.RLock()
	defer c.mu.RUnlock()
	return len(c.entries)
}

// Link cache lifetimes beyond Options.LinkTTL.
const (
	// negativeLinkTTL caps how long "user has no customer" is reused: right
	// after checkout the link appears and the user should not wait long.
	negativeLinkTTL = time.Second
	// staleLinkFactor × LinkTTL is how old an answer may be when Links fails
	// and it is used anyway; past that the request fails with 503 rather
	// than act on a link that may have changed.
	staleLinkFactor = 10
)

// linkEntry is one Links answer (or, with claim set, a token's customer
// claim). It does not change once cached, but for gone and memo.
type linkEntry struct {
	customer string // "" when Links knows no customer for the user
	at       time.Time
	// gone is set, under the cache's lock, when the cache stops holding
	// the entry for its user (replaced, forgotten or evicted): a token's
	// memo of it (verified.link) is then no longer used.
	gone atomic.Bool
	// claim marks the entry of a token with a customer claim: in no cache,
	// never stale, the token's own.
	claim bool
	// memo is the Identity.Memo of the requests that use the entry.
	memo Memo
}

// Memo is room for what the request path resolves from an identity's
// customer after authentication, kept with what named the customer (a
// Links answer, or a cached token's customer claim), so that the next
// request it names the same customer for can skip those lookups (issue 13:
// the sidecar keeps the customer's entitlement cache entry, quota share and
// usage counter in it). auth never reads it. A memo is dropped with its
// answer, so it lives no longer than the link TTL or the token's cache
// entry, and it always stands for one customer: Identity.Customer of every
// request it comes with. What is kept in it must be checked to be current
// before it is used.
type Memo struct{ v atomic.Value }

// Slot is the memo's room; nil for a nil Memo (an identity without a
// customer), which callers treat as no memo.
func (m *Memo) Slot() *atomic.Value {
	if m == nil {
		return nil
	}
	return &m.v
}

// identify sets id's customer, and its memo when there is a customer, from
// e.
func (e *linkEntry) identify(id *Identity) {
	id.Customer, id.Memo = e.customer, nil
	if e.customer != "" {
		id.Memo = &e.memo
	}
}

// linkCache remembers Links answers briefly. Unlike verified tokens, links
// change (a checkout completes, a customer is deleted), so they are never
// cached for long.
//
// A cached token remembers the entry its user's last request used
// (verified.link): while that entry is not gone and still fresh it is
// exactly what the map would return, and the request skips the map, its
// lock and the hash of the user (issue 13: three reads from memory per
// request with 100,000 users cached).
type linkCache struct {
	mu      sync.Mutex
	max     int
	ttl     time.Duration
	entries map[string]*linkEntry
}

func newLinkCache(max int, ttl time.Duration) *linkCache {
	return &linkCache{max: max, ttl: ttl, entries: make(map[string]*linkEntry)}
}

// isFresh reports whether e may be used at now without asking Links.
func (c *linkCache) isFresh(e *linkEntry, now time.Time) bool {
	ttl := c.ttl
	if e.customer == "" {
		ttl = min(ttl, negativeLinkTTL)
	}
	age := now.Sub(e.at)
	return age >= 0 && age < ttl
}

// current reports whether e, a token's verified.link, may be used at now:
// the token's customer claim, or an earlier request's entry that the cache
// still holds for its user and that is fresh.
func (c *linkCache) current(e *linkEntry, now time.Time) bool {
	return e != nil && (e.claim || !e.gone.Load() && c.isFresh(e, now))
}

// fresh returns the entry for user if it may be used without asking Links.
func (c *linkCache) fresh(user string, now time.Time) (*linkEntry, bool) {
	c.mu.Lock()
	e := c.entries[user]
	c.mu.Unlock()
	return e, e != nil && c.isFresh(e, now)
}

// stale returns the entry for user if it is recent enough to stand in for a
// failed lookup.
func (c *linkCache) stale(user string, now time.Time) (*linkEntry, bool) {
	c.mu.Lock()
	e := c.entries[user]
	c.mu.Unlock()
	if e == nil {
		return nil, false
	}
	age := now.Sub(e.at)
	// Only a found link stands in; a stale "no link" could deny a user who
	// has just paid, where 503 (retry) is the honest answer.
	return e, e.customer != "" && age >= 0 && age < staleLinkFactor*c.ttl
}

func (c *linkCache) put(user string, e *linkEntry) {
	c.mu.Lock()
	defer c.mu.Unlock()
	old := c.entries[user]
	if old == nil && len(c.entries) >= c.max {
		for k, victim := range c.entries { // random victim, see evictScan
			victim.gone.Store(true)
			delete(c.entries, k)
			break
		}
	}
	if old != nil {
		old.gone.Store(true)
	}
	c.entries[user] = e
}

func (c *linkCache) forget(user string) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if e := c.entries[user]; e != nil {
		e.gone.Store(true)
		delete(c.entries, user)
	}
}
