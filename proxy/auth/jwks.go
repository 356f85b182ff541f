package auth

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"net/url"
	"slices"
	"sync"
	"sync/atomic"
	"time"

	"github.com/MicahParks/jwkset"
	"github.com/prometheus/client_golang/prometheus"
)

// jwksSource keeps the keys of one JWKS URL.
//
// It parses with jwkset but does its own fetching rather than using keyfunc's
// HTTP storage, whose behaviour conflicts with issue 3: its first fetch
// blocks the constructor, the body size is unbounded, a `{"keys":[]}` answer
// wipes the keys, the unknown-kid rate limiter runs on the wall clock and
// parks request goroutines in limiter waits, and its refresh goroutine cannot
// be joined on Close. Here one goroutine (run) does every fetch, so fetches
// never overlap and Close waits for it.
type jwksSource struct {
	url      string
	logURL   string // url without credentials
	client   *http.Client
	timeout  time.Duration
	refresh  time.Duration
	cooldown time.Duration
	now      func() time.Time
	allowed  []string
	log      *slog.Logger
	// onReplace runs after a fetch replaced an earlier key set: tokens
	// verified under a key the issuer has just withdrawn must not live on
	// in the verified-token cache.
	onReplace func()

	keys      atomic.Pointer[keySet]
	ready     chan struct{} // closed after the first successful fetch
	readyOnce sync.Once
	kick      chan struct{} // buffered(1): "fetch now"

	mu        sync.Mutex
	lastKick  time.Time     // on the now clock; zero: never kicked
	nextFetch chan struct{} // closed when the next fetch to start has finished
	stopped   bool

	attempts atomic.Int64 // fetches finished, successful or not (tests)

	metrics jwksMetrics
}

// Result labels of Options.JWKSFetches.
const (
	jwksFetchOK     = "ok"
	jwksFetchFailed = "failed"
)

// jwksMetrics are the optional JWKS series; nil fields count nothing.
type jwksMetrics struct {
	ok, failed  prometheus.Counter
	lastSuccess prometheus.Gauge
}

func newJWKSMetrics(o *Options) jwksMetrics {
	var m jwksMetrics
	if o.JWKSFetches != nil {
		// Both exist from start at 0, so a first failure shows in rate().
		m.ok = o.JWKSFetches.WithLabelValues(jwksFetchOK)
		m.failed = o.JWKSFetches.WithLabelValues(jwksFetchFailed)
	}
	if m.lastSuccess = o.JWKSLastSuccess; m.lastSuccess != nil {
		m.lastSuccess.Set(0)
	}
	return m
}

// observe counts one finished fetch. A fetch cut short by Close is not a
// failure of the key source.
func (m jwksMetrics) observe(ctx context.Context, err error) {
	switch {
	case err == nil:
		if m.ok != nil {
			m.ok.Inc()
		}
		if m.lastSuccess != nil {
			// Wall time, not Options.Now: Prometheus compares it with time().
			m.lastSuccess.SetToCurrentTime()
		}
	case ctx.Err() == nil && m.failed != nil:
		m.failed.Inc()
	}
}

func newJWKSSource(o *Options) *jwksSource {
	client := o.HTTPClient
	if client == nil {
		client = &http.Client{
			Timeout:       DefaultJWKSTimeout,
			Transport:     http.DefaultTransport.(*http.Transport).Clone(),
			CheckRedirect: noDowngrade,
		}
	}
	timeout := client.Timeout
	if timeout <= 0 {
		timeout = DefaultJWKSTimeout
	}
	return &jwksSource{
		url:       o.JWKSURL,
		logURL:    redact(o.JWKSURL),
		client:    client,
		timeout:   timeout,
		refresh:   o.JWKSRefresh,
		cooldown:  o.JWKSRefetchCooldown,
		now:       o.Now,
		allowed:   o.Algorithms,
		log:       o.Logger,
		ready:     make(chan struct{}),
		kick:      make(chan struct{}, 1),
		nextFetch: make(chan struct{}),
		metrics:   newJWKSMetrics(o),
	}
}

// redact hides a password in the URL's userinfo and drops its query, which
// some providers use for access tokens.
func redact(raw string) string {
	u, err := url.Parse(raw)
	if err != nil {
		return "(unparsable URL)"
	}
	u.RawQuery = ""
	return u.Redacted()
}

// noDowngrade follows redirects like net/http's default, except from https
// to anything else: key material must not travel in clear text because the
// endpoint said so.
func noDowngrade(req *http.Request, via []*http.Request) error {
	if len(via) >= 10 {
		return errors.New("stopped after 10 redirects")
	}
	if via[0].URL.Scheme == "https" && req.URL.Scheme != "https" {
		return fmt.Errorf("refusing redirect from https to %s", req.URL.Scheme)
	}
	return nil
}

// run fetches at once, then on every refresh tick or kick, until ctx ends.
func (s *jwksSource) run(ctx context.Context) {
	defer s.stop()
	backoff := min(time.Second, s.refresh)
	timer := time.NewTimer(0)
	defer timer.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-timer.C:
		case <-s.kick:
		}
		if err := s.fetchOnce(ctx); err != nil {
			if ctx.Err() != nil {
				return
			}
			msg := "auth: JWKS fetch failed; keeping previous keys"
			if s.keys.Load().len() == 0 {
				msg = "auth: JWKS fetch failed; no keys yet, so every token is refused until a fetch succeeds"
			}
			s.log.Warn(msg, "url", s.logURL, "keys", s.keys.Load().len(), "retry_in", backoff.String(), "error", err)
			timer.Reset(backoff)
			backoff = min(2*backoff, s.refresh)
			continue
		}
		backoff = min(time.Second, s.refresh)
		timer.Reset(s.refresh)
	}
}

// fetchOnce runs one fetch and wakes the requests waiting for it.
func (s *jwksSource) fetchOnce(ctx context.Context) error {
	s.mu.Lock()
	done := s.nextFetch
	s.nextFetch = make(chan struct{})
	s.mu.Unlock()
	defer close(done)

	ks, err := s.fetch(ctx)
	s.attempts.Add(1) // before ready closes: WaitReady implies attempts >= 1
	s.metrics.observe(ctx, err)
	if err != nil {
		return err
	}
	if prev := s.keys.Swap(ks); prev != nil && s.onReplace != nil {
		s.onReplace()
	}
	s.readyOnce.Do(func() {
		s.log.Info("auth: JWKS loaded", "url", s.logURL, "keys", ks.len())
		close(s.ready)
	})
	return nil
}

// stop releases requests still waiting for a fetch once run has exited.
func (s *jwksSource) stop() {
	s.mu.Lock()
	defer s.mu.Unlock()
	if !s.stopped {
		s.stopped = true
		close(s.nextFetch)
	}
}

func (s *jwksSource) fetch(ctx context.Context) (*keySet, error) {
	ctx, cancel := context.WithTimeout(ctx, s.timeout)
	defer cancel()
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, s.url, nil)
	if err != nil {
		return nil, err
	}
	req.Header.Set("Accept", "application/jwk-set+json, application/json")
	resp, err := s.client.Do(req)
	if err != nil {
		// *url.Error prints the whole URL; its query may hold a credential.
		var ue *url.Error
		if errors.As(err, &ue) {
			ue.URL = s.logURL
		}
		return nil, err
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		return nil, fmt.Errorf("status %s", resp.Status)
	}
	body, err := io.ReadAll(io.LimitReader(resp.Body, MaxJWKSBytes+1))
	if err != nil {
		return nil, fmt.Errorf("read body: %w", err)
	}
	if len(body) > MaxJWKSBytes {
		return nil, fmt.Errorf("body exceeds %d bytes", MaxJWKSBytes)
	}
	keys, err := parseJWKS(body, s.allowed, s.log)
	if err != nil {
		return nil, err
	}
	return newKeySet(keys), nil
}

// parseJWKS returns the usable, pinned keys of a JWK Set. Keys that are
// malformed, unsupported, for encryption or not allowed by the algorithm
// list are skipped; a set with no usable key is an error, so a garbage or
// empty answer never replaces working keys.
func parseJWKS(body []byte, allowed []string, log *slog.Logger) (keys []pinnedKey, err error) {
	// A panic in a background fetch would kill the proxy; the endpoint's
	// bytes are not trusted to be sane.
	defer func() {
		if r := recover(); r != nil {
			keys, err = nil, fmt.Errorf("parse JWKS: panic: %v", r)
		}
	}()
	// Each key is decoded on its own, so that one malformed key (a number
	// where a string belongs) does not make the whole set unusable.
	var set struct {
		Keys []json.RawMessage `json:"keys"`
	}
	if err := json.Unmarshal(body, &set); err != nil {
		return nil, fmt.Errorf("decode JWKS: %w", err)
	}
	for i, raw := range set.Keys {
		var m jwkset.JWKMarshal
		if err := json.Unmarshal(raw, &m); err != nil {
			log.Warn("auth: JWKS key skipped", "index", i, "error", err)
			continue
		}
		if m.USE == jwkset.UseEnc || m.KTY == jwkset.KtyOct || (len(m.KEYOPS) > 0 && !slices.Contains(m.KEYOPS, jwkset.KeyOpsVerify)) {
			continue
		}
		// Drop private parameters a careless issuer may publish: only the
		// public key is needed, and we never want to hold the private one.
		m.D, m.P, m.Q, m.DP, m.DQ, m.QI, m.OTH = "", "", "", "", "", "", nil
		jwk, err := jwkset.NewJWKFromMarshal(m, jwkset.JWKMarshalOptions{}, jwkset.JWKValidateOptions{})
		if err != nil {
			log.Warn("auth: JWKS key skipped", "index", i, "kid", m.KID, "error", err)
			continue
		}
		pub := jwk.Key()
		algs, err := pinAlgorithms(pub, string(m.ALG), allowed)
		if err != nil {
			log.Debug("auth: JWKS key not usable", "index", i, "kid", m.KID, "reason", err)
			continue
		}
		keys = append(keys, pinnedKey{kid: m.KID, algs: algs, key: pub})
	}
	if len(keys) == 0 {
		return nil, errors.New("JWKS holds no usable key for the allowed algorithms")
	}
	return keys, nil
}

// refetch asks for an immediate fetch because a token named an unknown kid,
// and waits for it. At most one such fetch happens per cooldown (on the now
// clock); it returns false without fetching while the cooldown runs.
func (s *jwksSource) refetch(ctx context.Context) bool {
	s.mu.Lock()
	now := s.now()
	if s.stopped || (!s.lastKick.IsZero() && now.Sub(s.lastKick) < s.cooldown) {
		s.mu.Unlock()
		return false
	}
	s.lastKick = now
	// nextFetch is the fetch that starts after this kick (run swaps the
	// channel when a fetch starts), so waking up means the new keys are in.
	done := s.nextFetch
	s.mu.Unlock()

	select {
	case s.kick <- struct{}{}:
	default: // a kick is already pending; it serves us too
	}
	// A fetch in progress (say, against a hanging endpoint) delays ours;
	// bound the wait to about one fetch so the request is not held for two
	// fetch timeouts.
	ctx, cancel := context.WithTimeout(ctx, s.timeout+time.Second)
	defer cancel()
	select {
	case <-done:
		return true
	case <-ctx.Done():
		return false
	}
}
