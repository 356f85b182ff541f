// Package billing is the self-serve billing API that tollgate serves to the
// application's own billing pages, so the application never imports Stripe:
// checkout, the customer portal, the current subscription, plan changes
// with a proration preview, cancellation and resumption, invoices and
// usage against plan limits.
//
// Every call is made for the verified caller of the request (auth.Identity
// from the request's context), never for a customer named in the request.
// Redirect URLs come from configuration, never from the request. Every
// write call to Stripe sends an idempotency key, derived from the client's
// Idempotency-Key header when there is one, so a retried click does not
// create a second checkout or change a plan twice. Stripe's details are
// logged, never sent to the client.
package billing

import (
	"context"
	"crypto/rand"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"mime"
	"net/http"
	"strings"
	"time"

	"github.com/stripe/stripe-go/v76/client"

	"github.com/tollgate-dev/tollgate/config"
	"github.com/tollgate-dev/tollgate/entitlements"
	"github.com/tollgate-dev/tollgate/proxy"
	"github.com/tollgate-dev/tollgate/proxy/auth"
)

// UsedFunc returns how many units of a meter a customer used since a time.
type UsedFunc func(ctx context.Context, customer, meter string, since time.Time) (int64, error)

// Options configure a Handler.
type Options struct {
	Config *config.Config // billing, plans and metering sections
	Stripe *client.API
	// Store and Source give the customer's state; after a change the state
	// is re-read from Stripe and written to Store, and Gate enforces it on
	// this replica at once (the others follow within a second).
	Store  entitlements.Store
	Source entitlements.Source
	Gate   *entitlements.Gate
	// Used reads metered usage for GET usage; nil when nothing is metered.
	Used UsedFunc
	// Checkouts remembers each user's open Checkout Session (nil: none
	// is remembered, and two tabs can start two subscriptions).
	Checkouts Checkouts
	// Replays remembers the first answer of each write call made with an
	// Idempotency-Key (nil: a repeated key executes the call again, and
	// only Stripe's own idempotency keeps its writes single).
	Replays Replays
	// Seats serves GET seats and DELETE seats/{user}; nil: no plan limits
	// seats, and they answer 404.
	Seats  Seats
	Logger *slog.Logger
	Now    func() time.Time
}

// Handler serves the billing API under billing.prefix. Mount it behind
// authentication (proxy.Mount with Auth set).
type Handler struct {
	cfg       *config.Config
	api       *client.API
	store     entitlements.Store
	source    entitlements.Source
	gate      *entitlements.Gate
	plans     *entitlements.Plans
	used      UsedFunc
	checkouts Checkouts
	replays   Replays
	// replayWait bounds how long a repeated request waits for the first
	// one with its Idempotency-Key to finish.
	replayWait time.Duration
	prices     *priceCache
	log        *slog.Logger
	now        func() time.Time
	routes     map[string]endpoint
	csrf       *http.CrossOriginProtection
	limits     *userLimits // nil: no per-user limit
	seatList   Seats       // nil: no seat endpoints
	seatPrefix string      // prefix + "/seats/"
}

// New returns the billing API handler.
func New(o Options) (*Handler, error) {
	if o.Config == nil || o.Stripe == nil || o.Store == nil || o.Source == nil || o.Gate == nil {
		return nil, errors.New("billing: Config, Stripe, Store, Source and Gate are required")
	}
	h := &Handler{
		cfg: o.Config, api: o.Stripe, store: o.Store, source: o.Source, gate: o.Gate,
		plans: entitlements.NewPlans(o.Config.Plans), used: o.Used, checkouts: o.Checkouts, replays: o.Replays, replayWait: replayWait, log: o.Logger, now: o.Now,
		csrf: http.NewCrossOriginProtection(), limits: newUserLimits(o.Config.Billing.RateLimit),
	}
	if h.log == nil {
		h.log = slog.Default()
	}
	if h.now == nil {
		h.now = time.Now
	}
	h.prices = newPriceCache(o.Stripe, priceTTL, h.now)
	for _, origin := range o.Config.CORS.AllowedOrigins {
		// Origins the operator trusts with CORS may also call the billing
		// API; only exact ones ("*" and wildcards stay cross-origin).
		if !strings.Contains(origin, "*") {
			if err := h.csrf.AddTrustedOrigin(origin); err != nil {
				return nil, fmt.Errorf("billing: cors.allowed_origins: %w", err)
			}
		}
	}
	p := strings.TrimSuffix(o.Config.Billing.Prefix, "/")
	h.routes = map[string]endpoint{
		p + "/checkout":             {http.MethodPost, "checkout", h.checkout, true},
		p + "/portal":               {http.MethodPost, "portal", h.portal, true},
		p + "/subscription":         {http.MethodGet, "subscription", h.subscription, false},
		p + "/subscription/preview": {http.MethodPost, "subscription/preview", h.preview, false},
		p + "/subscription/change":  {http.MethodPost, "subscription/change", h.change, true},
		p + "/subscription/cancel":  {http.MethodPost, "subscription/cancel", h.cancel, true},
		p + "/subscription/resume":  {http.MethodPost, "subscription/resume", h.resume, true},
		p + "/subscription/pause":   {http.MethodPost, "subscription/pause", h.pause, true},
		p + "/invoices":             {http.MethodGet, "invoices", h.invoices, false},
		p + "/usage":                {http.MethodGet, "usage", h.usage, false},
	}
	if o.Seats != nil {
		h.seatList, h.seatPrefix = o.Seats, p+"/seats/"
		h.routes[p+"/seats"] = endpoint{http.MethodGet, "seats", h.seats, false}
	}
	return h, nil
}

// endpoint is one billing API call: its method, its name, what answers
// it, and whether it writes (and so replays its first answer for a
// repeated Idempotency-Key).
type endpoint struct {
	method string
	op     string
	fn     func(*call) (any, *proxy.HTTPError)
	write  bool
}

// ServeHTTP answers one billing API request (the path is tollgate's
// normalised path). Cross-origin browser writes are refused: the token
// may come from a cookie, so this is CSRF protection.
func (h *Handler) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	e, ok := h.routes[r.URL.Path]
	if !ok {
		e, ok = h.seatEndpoint(r.URL.Path)
	}
	switch {
	case !ok:
		proxy.WriteError(w, errNotFound)
		return
	case r.Method == http.MethodHead && e.method == http.MethodGet:
	case r.Method != e.method:
		w.Header().Set("Allow", e.method)
		proxy.WriteError(w, errMethod)
		return
	}
	if err := h.csrf.Check(r); err != nil {
		proxy.WriteError(w, errCrossOrigin.WithCause(err))
		return
	}
	h.serve(w, r, e)
}

// call is one request to an endpoint.
type call struct {
	r    *http.Request
	ctx  context.Context
	id   auth.Identity
	op   string // the endpoint's name: subscription/change, ...
	body []byte
}

// maxBody caps a request body: every request is a few small fields.
const maxBody = 16 << 10

func (h *Handler) serve(w http.ResponseWriter, r *http.Request, e endpoint) {
	id, ok := auth.FromContext(r.Context())
	if !ok {
		// Mounted without authentication: refuse rather than guess.
		proxy.WriteError(w, errNoIdentity)
		return
	}
	if ok, wait := h.limits.allow(id.User, h.now()); !ok {
		proxy.WriteError(w, rateLimited(wait))
		return
	}
	c := &call{r: r, ctx: r.Context(), id: id, op: e.op}
	if r.Method == http.MethodPost {
		if herr := c.readBody(); herr != nil {
			proxy.WriteError(w, herr)
			return
		}
	}
	run := func() executed { return h.run(c, e.fn) }
	if !e.write {
		h.send(w, c, run(), false)
		return
	}
	out, replayed := h.once(c, e.op, run)
	h.send(w, c, out, replayed)
}

// run executes an endpoint and encodes its answer.
func (h *Handler) run(c *call, fn func(*call) (any, *proxy.HTTPError)) executed {
	out, herr := fn(c)
	if herr != nil {
		b, _ := json.Marshal(herr.Body())
		return executed{status: herr.Status, body: b, herr: herr}
	}
	b, err := json.Marshal(out)
	if err != nil {
		return failed(errStripeRefused.WithCause(fmt.Errorf("encode answer: %w", err)))
	}
	return executed{status: http.StatusOK, body: b}
}

// send writes an answer: an error as proxy.WriteError does (logging its
// cause), anything else, a replayed error too, as the JSON it is.
func (h *Handler) send(w http.ResponseWriter, c *call, out executed, replayed bool) {
	if herr := out.herr; herr != nil {
		if herr.Err != nil {
			h.log.WarnContext(c.ctx, "billing: request failed", "path", c.r.URL.Path, "code", herr.Code,
				"user", c.id.User, "customer", c.id.Customer, "cause", herr.Err.Error())
		}
		proxy.WriteError(w, herr)
		return
	}
	w.Header().Set("Content-Type", "application/json")
	w.Header().Set("Cache-Control", "no-store")
	w.Header().Set("X-Content-Type-Options", "nosniff")
	if replayed {
		// As Stripe marks a replay, so a client can tell.
		w.Header().Set("Idempotent-Replayed", "true")
	}
	w.WriteHeader(out.status)
	_, _ = w.Write(append(out.body, '\n'))
}

func (c *call) readBody() *proxy.HTTPError {
	b, err := io.ReadAll(io.LimitReader(c.r.Body, maxBody+1))
	if err != nil {
		return badRequest("The request body could not be read.")
	}
	if len(b) > maxBody {
		return &proxy.HTTPError{Status: http.StatusRequestEntityTooLarge, Code: "body_too_large",
			Msg: fmt.Sprintf("The request body is over %d bytes.", maxBody)}
	}
	if len(strings.TrimSpace(string(b))) > 0 {
		if mt, _, _ := mime.ParseMediaType(c.r.Header.Get("Content-Type")); mt != "application/json" {
			return &proxy.HTTPError{Status: http.StatusUnsupportedMediaType, Code: "unsupported_media_type",
				Msg: "Send the request body as Content-Type: application/json."}
		}
	}
	c.body = b
	return nil
}

// decode reads the JSON body into v, refusing unknown fields; an empty
// body leaves v as it is.
func (c *call) decode(v any) *proxy.HTTPError {
	if len(strings.TrimSpace(string(c.body))) == 0 {
		return nil
	}
	d := json.NewDecoder(strings.NewReader(string(c.body)))
	d.DisallowUnknownFields()
	if err := d.Decode(v); err != nil {
		return badRequest("The request body is not valid JSON for this endpoint: " + jsonProblem(err))
	}
	if d.More() {
		return badRequest("The request body holds more than one JSON value.")
	}
	return nil
}

// jsonProblem names the field or position a JSON error is about, without
// echoing values.
func jsonProblem(err error) string {
	var te *json.UnmarshalTypeError
	var se *json.SyntaxError
	switch {
	case errors.As(err, &te):
		return fmt.Sprintf("field %q must be a %s.", te.Field, te.Type.String())
	case errors.As(err, &se):
		return fmt.Sprintf("syntax error at byte %d.", se.Offset)
	case strings.HasPrefix(err.Error(), "json: unknown field "):
		return "unknown field " + strings.TrimPrefix(err.Error(), "json: unknown field ") + "."
	}
	return "it could not be parsed."
}

// idempotencyKey is the Stripe Idempotency-Key of one write: derived from
// the client's Idempotency-Key header (scoped to the caller and the
// operation), so a retried request repeats the same Stripe call; random
// without one (stripe-go's own retries still reuse it).
func (c *call) idempotencyKey(op string) string {
	client := c.r.Header.Get("Idempotency-Key")
	if client == "" || len(client) > 255 {
		var b [16]byte
		_, _ = rand.Read(b[:])
		return "tg-" + op + "-" + hex.EncodeToString(b[:])
	}
	sum := sha256.Sum256([]byte(c.id.User + "\x00" + c.id.Customer + "\x00" + op + "\x00" + client))
	return "tg-" + op + "-" + hex.EncodeToString(sum[:16])
}

// customer is the caller's Stripe customer, or errNoCustomer.
func (c *call) customer() (string, *proxy.HTTPError) {
	if c.id.Customer == "" {
		return "", errNoCustomer
	}
	return c.id.Customer, nil
}
