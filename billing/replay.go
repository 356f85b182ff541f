package billing

import (
	"bytes"
	"context"
	"crypto/rand"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"net/http"
	"time"

	"github.com/tollgate-dev/tollgate/proxy"
)

// Errors of Replays.
var (
	// ErrReplayCorrupt is returned for a stored value that cannot be read.
	ErrReplayCorrupt = errors.New("billing: stored idempotent answer is corrupt")
	// ErrClaimLost is returned by Save when the claim expired before the
	// answer could be stored.
	ErrClaimLost = errors.New("billing: idempotency claim expired before the answer was stored")
)

// Replays remembers the first answer of each write call made with a
// client's Idempotency-Key, so that a client that lost the answer and
// retries gets it again instead of a second execution (which would answer
// 409 same_plan to a retried change that had succeeded). The key is per
// user, call and client key; *RedisReplays shares it between replicas.
type Replays interface {
	// Claim takes key for one execution of a request whose parameters
	// have fingerprint fp, unless the key is taken: then it returns what
	// holds it (a stored answer, or another execution still running).
	Claim(ctx context.Context, key string, c Claim, ttl time.Duration) (held *Held, err error)
	// Save replaces claim c with the answer, kept for ttl, if c still
	// holds the key.
	Save(ctx context.Context, key string, c Claim, a Answer, ttl time.Duration) error
	// Release drops claim c, if it still holds the key.
	Release(ctx context.Context, key string, c Claim) error
}

// Claim is one execution's hold on a key.
type Claim struct {
	Fingerprint string // of the request's method, path and body
	Token       string // this execution's, random
}

// Held is what holds a key: a stored answer, or (Answer nil) a running
// execution.
type Held struct {
	Fingerprint string
	Answer      *Answer
}

// Answer is a stored first answer.
type Answer struct {
	Status int             `json:"status"`
	Body   json.RawMessage `json:"body"`
}

// How long answers are replayed (Stripe keeps its idempotency keys as
// long), how long an execution holds its key at most (it runs with a
// shorter deadline, so it never outlives the claim), and how long a
// duplicate waits for the first execution to finish.
const (
	replayTTL     = 24 * time.Hour
	claimTTL      = 3 * time.Minute
	executionTime = 2 * time.Minute
	replayWait    = 10 * time.Second
	replayPoll    = 50 * time.Millisecond
	maxClientKey  = 255 // Stripe's limit, which the derived Stripe keys inherit
)

var (
	errKeyTooLong = badRequest("The Idempotency-Key header must be at most 255 characters.")
	errInProgress = &proxy.HTTPError{Status: http.StatusConflict, Code: "request_in_progress",
		Msg:        "A request with this Idempotency-Key is still being processed; retry with the same key shortly.",
		RetryAfter: 1}
)

// replayable reports whether an answer is the outcome of its call, to be
// replayed: not a failure worth retrying (5xx, 429), nor a request refused
// for its shape before anything happened (400, 413, 415), which the
// client may fix and send again with the same key.
func replayable(status int) bool {
	switch {
	case status >= 500, status == http.StatusTooManyRequests, status == http.StatusBadRequest,
		status == http.StatusRequestEntityTooLarge, status == http.StatusUnsupportedMediaType:
		return false
	}
	return true
}

// replayKey names the stored answer of one call by one user with one
// client key. It is hashed: user ids and client keys are arbitrary text.
func replayKey(user, op, client string) string {
	sum := sha256.Sum256([]byte(user + "\x00" + op + "\x00" + client))
	return hex.EncodeToString(sum[:])
}

// fingerprint identifies a request's parameters: the method, the path and
// the body with insignificant JSON whitespace removed.
func fingerprint(method, path string, body []byte) string {
	var b bytes.Buffer
	if json.Compact(&b, body) != nil {
		b.Reset()
		b.Write(bytes.TrimSpace(body))
	}
	sum := sha256.Sum256([]byte(method + " " + path + "\x00" + b.String()))
	return hex.EncodeToString(sum[:])
}

// executed is one answer of an endpoint, as served.
type executed struct {
	status int
	body   []byte
	herr   *proxy.HTTPError // the error answered, if it was one
}

// once runs a write call at most once per client Idempotency-Key: the
// first request executes it (run), a repeat gets the first answer, a
// concurrent repeat waits for it, and the same key with other parameters
// is refused. Without a key, or without Replays, run just runs.
func (h *Handler) once(c *call, op string, run func() executed) (executed, bool) {
	client := c.r.Header.Get("Idempotency-Key")
	if client == "" || h.replays == nil {
		return run(), false
	}
	if len(client) > maxClientKey {
		return failed(errKeyTooLong), false
	}
	key := replayKey(c.id.User, op, client)
	cl := Claim{Fingerprint: fingerprint(c.r.Method, c.r.URL.Path, c.body), Token: rand.Text()}
	ctx, cancel := context.WithTimeout(c.ctx, h.replayWait)
	defer cancel()
	for {
		held, err := h.replays.Claim(c.ctx, key, cl, claimTTL)
		switch {
		case err != nil:
			return failed(errUnavailable.WithCause(err)), false
		case held == nil:
			return h.execute(c, key, cl, run), false
		case held.Fingerprint != cl.Fingerprint:
			return failed(errIdempotency), false
		case held.Answer != nil:
			return executed{status: held.Answer.Status, body: held.Answer.Body}, true
		}
		// Another execution runs: wait for its answer, or for its claim to
		// go (failed, or its replica died), then try again.
		select {
		case <-ctx.Done():
			return failed(errInProgress), false
		case <-time.After(replayPoll):
		}
	}
}

// execute runs the claimed call, with a deadline inside the claim's
// lifetime, and stores its answer if it is to be replayed.
func (h *Handler) execute(c *call, key string, cl Claim, run func() executed) executed {
	ctx, cancel := context.WithTimeout(c.ctx, executionTime)
	defer cancel()
	c.ctx = ctx
	out := run()
	// Storing must not depend on the client still waiting.
	sctx, scancel := context.WithTimeout(context.WithoutCancel(ctx), 5*time.Second)
	defer scancel()
	var err error
	if replayable(out.status) {
		err = h.replays.Save(sctx, key, cl, Answer{Status: out.status, Body: out.body}, replayTTL)
	} else {
		err = h.replays.Release(sctx, key, cl)
	}
	if err != nil {
		// The answer stands; a retry waits for the claim to expire, then
		// runs again (Stripe's own idempotency keys keep its writes single).
		h.log.ErrorContext(c.ctx, "billing: the answer of an idempotent call could not be stored", "path", c.r.URL.Path,
			"status", out.status, "err", err)
	}
	return out
}

func failed(herr *proxy.HTTPError) executed {
	return executed{status: herr.Status, herr: herr}
}
