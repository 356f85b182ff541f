// Package config is tollgate's configuration: the schema users write in YAML,
// its defaults, parsing with ${VAR} expansion, and validation that reports
// every problem at once with the field path it belongs to.
//
// The flow is Default → Parse(io.Reader) → Validate, with no side effects:
// nothing here opens a socket, reads a key file or touches global state.
// Every field is documented for users in deploy/tollgate.example.yaml.
package config

import (
	"strconv"
	"time"
)

// Config is the whole configuration file.
type Config struct {
	// Listen is the proxy listener: app traffic, the Stripe webhook and the
	// billing API.
	Listen string `yaml:"listen"`
	// AdminListen serves /metrics, /healthz and /readyz. It must be a loopback
	// address unless AdminAllowPublic is set: metrics reveal routes and usage.
	AdminListen      string `yaml:"admin_listen"`
	AdminAllowPublic bool   `yaml:"admin_allow_public"`
	// Upstream is the application's base URL.
	Upstream string `yaml:"upstream"`
	// TrustedProxies are CIDRs whose X-Forwarded-* headers are kept and
	// extended; from anyone else they are replaced.
	TrustedProxies []string `yaml:"trusted_proxies"`

	Server   Server           `yaml:"server"`
	Proxy    ProxyTimeouts    `yaml:"proxy"`
	CORS     CORS             `yaml:"cors"`
	Log      Log              `yaml:"log"`
	Redis    Redis            `yaml:"redis"`
	Stripe   Stripe           `yaml:"stripe"`
	Auth     Auth             `yaml:"auth"`
	Plans    map[string]*Plan `yaml:"plans"`
	Gating   Gating           `yaml:"gating"`
	Routes   []*Route         `yaml:"routes"`
	Metering Metering         `yaml:"metering"`
	Billing  Billing          `yaml:"billing"`
	Webhook  Webhook          `yaml:"webhook"`
	Metrics  Metrics          `yaml:"metrics"`

	// lines maps each field path written in the file to its line, so that
	// validation problems can say where they are.
	lines map[string]int
	// envs maps each field path whose value used ${VAR} to those variables,
	// so that a problem with the value can name where it came from.
	envs map[string][]string
}

// CORS lets browser code on other origins call the app (and the billing
// API) through tollgate. Off while AllowedOrigins is empty. When on,
// tollgate owns CORS: it answers every preflight itself (a preflight
// carries no token, so it never reaches auth, the gate or the app), marks
// answers to allowed origins, tollgate's own denials included, and drops
// the app's own Access-Control-* response headers.
type CORS struct {
	// AllowedOrigins are exact origins (https://app.example.com), origins
	// with one wildcard (https://*.example.com), or "*" for any.
	AllowedOrigins []string `yaml:"allowed_origins"`
	AllowedMethods []string `yaml:"allowed_methods"`
	// AllowedHeaders are the request headers cross-origin code may send;
	// Authorization must be among them for bearer tokens.
	AllowedHeaders []string `yaml:"allowed_headers"`
	ExposedHeaders []string `yaml:"exposed_headers"`
	// AllowCredentials lets cookies (auth.jwt.cookie) cross origins; not
	// with "*".
	AllowCredentials bool          `yaml:"allow_credentials"`
	MaxAge           time.Duration `yaml:"max_age"`
}

// Enabled reports whether tollgate handles CORS.
func (c CORS) Enabled() bool { return len(c.AllowedOrigins) > 0 }

// Server holds the listeners' timeouts and shutdown behaviour.
type Server struct {
	ReadHeaderTimeout time.Duration `yaml:"read_header_timeout"`
	ReadTimeout       time.Duration `yaml:"read_timeout"`
	// WriteTimeout is 0 by default so that streamed responses (SSE) and
	// WebSockets are not cut off; slow clients are bounded by IdleTimeout
	// and by the upstream.
	WriteTimeout   time.Duration `yaml:"write_timeout"`
	IdleTimeout    time.Duration `yaml:"idle_timeout"`
	MaxHeaderBytes int           `yaml:"max_header_bytes"`
	// DrainDelay is how long /readyz answers 503 before the listener stops
	// accepting, so load balancers take the replica out first.
	DrainDelay time.Duration `yaml:"drain_delay"`
	// ShutdownTimeout bounds how long in-flight requests may take to finish.
	ShutdownTimeout time.Duration `yaml:"shutdown_timeout"`
}

// ProxyTimeouts bound the connection to the upstream and say which
// protocol switches and method overrides may reach it.
type ProxyTimeouts struct {
	DialTimeout           time.Duration `yaml:"dial_timeout"`
	ResponseHeaderTimeout time.Duration `yaml:"response_header_timeout"`
	IdleConnTimeout       time.Duration `yaml:"idle_conn_timeout"`
	MaxIdleConnsPerHost   int           `yaml:"max_idle_conns_per_host"`
	// Upgrades are the Upgrade protocols (RFC 9110 §7.8) a client may switch
	// the connection to, matched without regard to case; any other token is
	// removed from the request, and a 101 to anything not requested and
	// allowed is answered 502. Default [websocket]; [] allows none. h2c and
	// h2 are refused: every request inside such a tunnel would skip routes,
	// auth and gating.
	Upgrades []string `yaml:"upgrades"`
	// AllowMethodOverride keeps X-HTTP-Method-Override, X-HTTP-Method and
	// X-Method-Override on forwarded requests (removed by default); the
	// method they name must then lead to the same route as the request's.
	AllowMethodOverride bool `yaml:"allow_method_override"`
}

// Log selects the structured log output.
type Log struct {
	Level  string `yaml:"level"`  // debug, info, warn, error
	Format string `yaml:"format"` // json or text
	// FlushInterval batches access lines (json format): they are written at most this
	// long after they are logged (or at 32 KiB, or before any other line),
	// one write for many instead of one per request. 0 writes each at once.
	FlushInterval time.Duration `yaml:"flush_interval"`
}

// MaxLogFlushInterval bounds log.flush_interval: the access lines a crash
// can lose are those of one interval.
const MaxLogFlushInterval = time.Second

// Redis locates the shared store. With neither URL nor Addrs set, tollgate
// runs an embedded in-process store: one replica only, nothing durable.
type Redis struct {
	URL        string   `yaml:"url"`
	Addrs      []string `yaml:"addrs"`
	MasterName string   `yaml:"master_name"`
	// Cluster forces Redis Cluster mode with a single address (a managed
	// service's configuration endpoint); several addrs without master_name
	// are a Cluster anyway.
	Cluster  bool   `yaml:"cluster"`
	Username string `yaml:"username"`
	Password string `yaml:"password"`
	// SentinelPassword is the sentinels' own password (their requirepass),
	// with master_name; empty when they have none. Password is the data
	// nodes'.
	SentinelPassword string `yaml:"sentinel_password"`
	DB               int    `yaml:"db"`
	TLS              bool   `yaml:"tls"`
	// Prefix is put before every key, so several deployments can share one
	// Redis. Customer keys also carry a {cus_...} hash tag for Cluster.
	Prefix       string        `yaml:"prefix"`
	DialTimeout  time.Duration `yaml:"dial_timeout"`
	ReadTimeout  time.Duration `yaml:"read_timeout"`
	WriteTimeout time.Duration `yaml:"write_timeout"`
}

// Embedded reports whether no external Redis is configured.
func (r Redis) Embedded() bool { return r.URL == "" && len(r.Addrs) == 0 }

// Stripe configures the Stripe API client and webhook verification.
type Stripe struct {
	// SecretKey is required unless TrustedPayloads is set: without it
	// nothing is re-read from Stripe, nothing is reconciled and no usage is
	// ever reported.
	SecretKey string `yaml:"secret_key"`
	// TrustedPayloads runs without Stripe API access: webhook state is taken
	// from the signed event itself (order by its created time), no sync runs
	// and usage is counted but never reported. For tollgate demo and tests
	// only; it must be chosen explicitly, so that an empty secret key in
	// production is an error instead of a silent downgrade.
	TrustedPayloads bool     `yaml:"trusted_payloads"`
	WebhookSecrets  []string `yaml:"webhook_secrets"`
	// APIBase points stripe-go at stripe-mock or a test double.
	APIBase           string        `yaml:"api_base"`
	Timeout           time.Duration `yaml:"timeout"`
	MaxNetworkRetries int           `yaml:"max_network_retries"`
}

// Auth configures caller authentication.
type Auth struct {
	JWT JWT `yaml:"jwt"`
}

// JWT configures bearer-token verification. Algorithms and Audience have no
// default: an empty list would mean "accept anything".
type JWT struct {
	Algorithms           []string      `yaml:"algorithms"`
	Issuer               string        `yaml:"issuer"`
	Audience             []string      `yaml:"audience"`
	JWKSURL              string        `yaml:"jwks_url"`
	JWKSRefresh          time.Duration `yaml:"jwks_refresh"`
	JWKSRefetchCooldown  time.Duration `yaml:"jwks_refetch_cooldown"`
	PublicKeyFiles       []string      `yaml:"public_key_files"`
	HMACSecret           string        `yaml:"hmac_secret"`
	Leeway               time.Duration `yaml:"leeway"`
	CustomerClaim        string        `yaml:"customer_claim"`
	UserClaim            string        `yaml:"user_claim"`
	Cookie               string        `yaml:"cookie"`
	MaxTokenBytes        int           `yaml:"max_token_bytes"`
	CacheSize            int           `yaml:"cache_size"`
	ForwardAuthorization *bool         `yaml:"forward_authorization"`
}

// Plan maps Stripe price ids to a plan name, its features and limits.
type Plan struct {
	Prices   []string         `yaml:"prices"`
	Features []string         `yaml:"features"`
	Limits   map[string]int64 `yaml:"limits"`
	// Seats limits the distinct users of a customer on this plan: a whole
	// number, or "quantity" for the quantity of the subscription's item of
	// the plan's (licensed) price, Stripe's per-seat pricing. Empty: no
	// limit, and no seats are tracked.
	Seats Seats `yaml:"seats"`
}

// Seats is a plan's seat limit: "", a whole number, or SeatsQuantity.
type Seats string

// SeatsQuantity takes the seat count from the subscription item's quantity.
const SeatsQuantity Seats = "quantity"

// MaxSeats bounds a fixed seat limit (the holders of one customer are one
// Redis key).
const MaxSeats = 1_000_000

// Limited reports whether the plan limits seats.
func (s Seats) Limited() bool { return s != "" }

// Fixed returns a fixed seat limit, and false for none or "quantity".
func (s Seats) Fixed() (int64, bool) {
	n, err := strconv.ParseInt(string(s), 10, 64)
	return n, err == nil
}

// QuotaReturnBound bounds returning quota shares at shutdown: past the
// share lease (metering.quota.lease_ttl) the shares come back by
// themselves, so waiting longer for Redis buys nothing.
func (c *Config) QuotaReturnBound() time.Duration {
	return min(c.Server.ShutdownTimeout, c.Metering.Quota.LeaseTTL)
}

// ShutdownBound is the longest a graceful shutdown can take after SIGTERM
// (internal/sidecar): the drain delay, in-flight requests
// (shutdown_timeout), returning quota shares (QuotaReturnBound) and the
// final flush of counted usage (shutdown_timeout, a bound of its own).
// Orchestrators must give at least this before a kill.
func (c *Config) ShutdownBound() time.Duration {
	return c.Server.DrainDelay + c.Server.ShutdownTimeout + c.QuotaReturnBound() + c.Server.ShutdownTimeout
}

// MinMaxStaleness is the smallest gating.max_staleness: below it, decisions
// on a healthy store would be refused between two proofs of currency.
const MinMaxStaleness = 2 * time.Second

// Gating tunes entitlement decisions.
type Gating struct {
	GracePeriod time.Duration `yaml:"grace_period"`
	// MaxStaleness is how long decisions may use last-known state while
	// the store is unreachable, counted from the replica's last proof that
	// its copy was current (not from when each customer was loaded); then
	// they fail closed (503) unless a route is fail_open.
	MaxStaleness time.Duration `yaml:"max_staleness"`
	UpgradeURL   string        `yaml:"upgrade_url"`
	// CacheSize bounds the customers each replica keeps in memory.
	CacheSize int `yaml:"cache_size"`
	// RefreshInterval re-reads every cached customer from the store, a
	// backstop for a lost change announcement; 0 turns it off.
	RefreshInterval time.Duration `yaml:"refresh_interval"`
	// NegativeTTL is how long a customer Stripe does not know is denied
	// without asking again.
	NegativeTTL time.Duration `yaml:"negative_ttl"`
	// SyncInterval runs reconciliation with Stripe (one replica at a time);
	// 0 turns the background sync off (tollgate sync still works).
	SyncInterval time.Duration `yaml:"sync_interval"`
	// ReplayInterval runs `tollgate replay` in the background (one replica
	// at a time): every handled event in Stripe's events list that the
	// ledger has not taken is applied, so a webhook lost on the way, or one
	// Stripe gave up on, takes effect within this interval. Each run lists
	// the events since the previous one. 0 turns it off; needs
	// stripe.secret_key. Default 10m.
	ReplayInterval time.Duration `yaml:"replay_interval"`
	// AnyPrice lets a subscription entitle even if none of its prices is in
	// plans. Off by default once plans are configured: a subscription to
	// another product sold from the same Stripe account must not open
	// this app's routes. Without plans, every subscription counts.
	AnyPrice bool `yaml:"any_price"`
	// Mode is enforce (the default) or shadow: in shadow mode every
	// entitlement denial (402, 403 plan_required/feature_required, 429) is
	// logged, counted and passed to the app, and the request is forwarded.
	// A route's shadow overrides it either way.
	Mode string `yaml:"mode"`
}

// Gating modes.
const (
	ModeEnforce = "enforce"
	ModeShadow  = "shadow"
)

// Auth modes of a route.
const (
	AuthRequired = "required"
	AuthOptional = "optional"
	AuthNone     = "none"
)

// Route is one entry of the ordered route table; the first match wins.
type Route struct {
	Name    string   `yaml:"name"`
	Path    string   `yaml:"path"`
	Methods []string `yaml:"methods"`
	Auth    string   `yaml:"auth"`
	Require Require  `yaml:"require"`
	Meter   string   `yaml:"meter"`
	// Reserve is the units a request on a metered route holds of its
	// customer's quota before it is forwarded, and what it is billed when
	// the upstream declares nothing: the route's cost when it is known in
	// advance. 0 means 1.
	Reserve  int64 `yaml:"reserve"`
	FailOpen bool  `yaml:"fail_open"`
	// Shadow, when set, overrides gating.mode for this route: true forwards
	// what the gate would deny for entitlements, false enforces even when
	// gating.mode is shadow. Unset follows gating.mode.
	Shadow *bool `yaml:"shadow"`
}

// Units is what a request on the route reserves, and is billed when the
// upstream declares no usage: Reserve, or 1.
func (r *Route) Units() int64 {
	if r.Reserve > 0 {
		return r.Reserve
	}
	return 1
}

// Shadowed reports whether the route runs in shadow mode under a gating
// mode: its own shadow key, else the global mode.
func (r *Route) Shadowed(mode string) bool {
	if r.Shadow != nil {
		return *r.Shadow
	}
	return mode == ModeShadow
}

// AuthMode is the route's auth mode; an empty one means required.
func (r *Route) AuthMode() string {
	if r.Auth == "" {
		return AuthRequired
	}
	return r.Auth
}

// Label is the route's name in metrics and logs.
func (r *Route) Label() string {
	if r.Name != "" {
		return r.Name
	}
	return r.Path
}

// Require lists what a caller must have to use a route.
type Require struct {
	Subscription bool     `yaml:"subscription"`
	Plans        []string `yaml:"plans"`
	Features     []string `yaml:"features"`
}

// Any reports whether the route needs any entitlement at all.
func (r Require) Any() bool { return r.Subscription || len(r.Plans) > 0 || len(r.Features) > 0 }

// Metering configures usage counting and reporting.
type Metering struct {
	FlushInterval time.Duration     `yaml:"flush_interval"`
	Window        time.Duration     `yaml:"window"`
	Meters        map[string]*Meter `yaml:"meters"`
	// CountedStatuses are the upstream answers that are billed: classes such
	// as "2xx" or exact codes such as "304". Default ["2xx"].
	CountedStatuses []string `yaml:"counted_statuses"`
	// MaxBufferedKeys bounds the counts a replica keeps in memory while
	// Redis is unreachable, in (customer, meter, window) entries. When it is
	// full, a new window is merged into the newest buffered window of the
	// same (customer, meter); a (customer, meter) with nothing buffered is
	// dropped, logged and counted in usage_report_errors_total. Default
	// 100000 (about 10 MB).
	MaxBufferedKeys int `yaml:"max_buffered_keys"`
	// LeaseTTL is how long the reporting lease lasts without renewal: one
	// replica at a time reports to Stripe, and a crashed one hands over
	// within this time. Default 10s.
	LeaseTTL time.Duration `yaml:"lease_ttl"`
	// RateLimit caps the Stripe calls per second of the (single) reporting
	// replica, across all customers. Default 50.
	RateLimit int `yaml:"rate_limit"`
	// ReconcileInterval runs `tollgate usage -reconcile` for the current
	// month on one replica at a time and sets tollgate_usage_drift_units;
	// 0 turns it off (the default: it reads one meter event summary from
	// Stripe per customer and meter).
	ReconcileInterval time.Duration `yaml:"reconcile_interval"`
	// MaxUnitsPerRequest bounds what one answer may bill (X-Tollgate-Usage
	// in its header, plus its trailer). A larger, negative or malformed
	// value is invalid: the route's default is billed instead. Default
	// 1,000,000.
	MaxUnitsPerRequest int64 `yaml:"max_units_per_request"`
	// Quota tunes the leases through which replicas share quotas.
	Quota QuotaLeases `yaml:"quota"`
}

// QuotaLeases tunes how replicas share a customer's quota: each takes a
// share of what remains from Redis and admits from memory while it lasts.
type QuotaLeases struct {
	// LeaseTTL is how long a replica's share stays reserved without a word
	// from it. A replica that crashed gives its unused units back after at
	// most this long; until then other replicas cannot admit them.
	// Default 10s.
	LeaseTTL time.Duration `yaml:"lease_ttl"`
	// SyncInterval is how often a replica reports the units it served,
	// renews its shares and returns the ones it no longer uses. A crash
	// can give back what it admitted since its last report (see README
	// "Quotas"). Default 1s; at most a third of LeaseTTL.
	SyncInterval time.Duration `yaml:"sync_interval"`
}

// Counts reports whether an upstream answer with this status is billed.
func (m Metering) Counts(status int) bool {
	for _, s := range m.CountedStatuses {
		if len(s) == 3 && s[1:] == "xx" && status/100 == int(s[0]-'0') {
			return true
		}
		if strconv.Itoa(status) == s {
			return true
		}
	}
	return false
}

// Meter modes.
const (
	ModeMeterEvents  = "meter_events"
	ModeUsageRecords = "usage_records"
)

// Meter is one usage meter reported to Stripe. An empty Mode means
// meter_events.
type Meter struct {
	EventName string `yaml:"event_name"`
	Mode      string `yaml:"mode"`
	// Price is the metered price whose subscription item receives usage
	// records; required with mode usage_records, unused otherwise.
	Price string `yaml:"price"`
}

// Billing configures the self-serve billing API, served on the proxy
// listener under Prefix when stripe.secret_key is set. An empty Prefix
// turns it off.
type Billing struct {
	Prefix string `yaml:"prefix"`
	// TrialDays is the trial a checkout offers a customer who never had
	// one; 0 offers none.
	TrialDays int `yaml:"trial_days"`
	// SuccessURL and CancelURL are where Checkout sends the browser back
	// (SuccessURL may hold {CHECKOUT_SESSION_ID}); ReturnURL is the
	// customer portal's way back. Required while the API is served: they
	// come from config, never from the request, so the API cannot be used
	// as an open redirect.
	SuccessURL string `yaml:"success_url"`
	CancelURL  string `yaml:"cancel_url"`
	ReturnURL  string `yaml:"return_url"`
	// UpgradeProration is how an upgrade is charged: always_invoice (the
	// prorated difference is invoiced and charged at once; the default)
	// or create_prorations (it waits for the next invoice).
	UpgradeProration string `yaml:"upgrade_proration"`
	// RateLimit is how many billing calls one user may make per minute
	// (in bursts of as many), per replica; 0 turns the limit off.
	RateLimit int `yaml:"rate_limit"`
	// AdminClaim names the JWT claim that makes a caller an admin of their
	// customer: only a token whose claim is the boolean true may release
	// seats (DELETE seats/{user}). Empty: nobody may.
	AdminClaim string `yaml:"admin_claim"`
	// SeatsSync makes the quantity of the subscription item of a seat
	// plan's price follow the seats in use (at least 1), at most once per
	// customer every SeatsSyncDelay, prorated per SeatProration. With it,
	// seats: quantity no longer refuses newcomers (the quantity grows);
	// seats: N still caps at N.
	SeatsSync      bool          `yaml:"seats_sync"`
	SeatsSyncDelay time.Duration `yaml:"seats_sync_delay"`
	// SeatProration is Stripe's proration_behavior for those updates:
	// create_prorations (the default), always_invoice or none.
	SeatProration string `yaml:"seat_proration"`
}

// BillingServed reports whether the billing API is on: it needs Stripe.
func (c *Config) BillingServed() bool { return c.Billing.Prefix != "" && c.Stripe.SecretKey != "" }

// Webhook configures Stripe webhook intake. The endpoint is served only
// when stripe.webhook_secrets is non-empty.
type Webhook struct {
	Path string `yaml:"path"`
	// ForwardURL, when set, receives every verified event, re-signed with
	// ForwardSecret in Stripe's Stripe-Signature format. Delivery is queued
	// in Redis and retried; it never delays the answer to Stripe.
	ForwardURL    string `yaml:"forward_url"`
	ForwardSecret string `yaml:"forward_secret"`
	// ProcessTimeout bounds the processing of one event (its Stripe calls
	// and store writes). The per-event processing lock lasts 10s longer, so
	// a replica that dies mid-event frees it within ProcessTimeout+10s.
	// Default 30s.
	ProcessTimeout time.Duration `yaml:"process_timeout"`
	// DedupTTL is how long a processed event id is remembered, so that a
	// redelivery has no second effect. At least 72h (Stripe retries for 3
	// days); default 720h (the 30 days the Events API lists).
	DedupTTL time.Duration `yaml:"dedup_ttl"`
	// ForwardTimeout bounds one delivery to ForwardURL. Default 10s.
	ForwardTimeout time.Duration `yaml:"forward_timeout"`
	// ForwardMaxAttempts is how often a forwarded event is tried (backoff
	// from 1s, doubling, at most 1h apart) before it goes to the dead-letter
	// list. Default 15 (3 to 4 hours of retries).
	ForwardMaxAttempts int `yaml:"forward_max_attempts"`
	// DeliveryLogSize is how many deliveries the delivery log (`tollgate
	// events`) keeps, the newest; 0 turns the log off. Default 10000.
	DeliveryLogSize int `yaml:"delivery_log_size"`
	// DeliveryLogAge is how long a delivery stays in the log. Default 168h.
	DeliveryLogAge time.Duration `yaml:"delivery_log_age"`
}

// Metrics configures the Prometheus output.
type Metrics struct {
	// PerCustomer adds series labelled by Stripe customer (high
	// cardinality: one series per customer and decision or meter).
	PerCustomer bool `yaml:"per_customer"`
	// SubscriptionsInterval is how often tollgate_subscriptions and
	// tollgate_seats_in_use are counted from the store, on one replica at a
	// time (the others export 0); 0 turns the count off.
	SubscriptionsInterval time.Duration `yaml:"subscriptions_interval"`
}

// DefaultMaxUnitsPerRequest is metering.max_units_per_request's default;
// MaxUnitsBound is the largest value it may take (2^40: far above any real
// answer, and sums of many stay exact in Redis's Lua numbers).
const (
	DefaultMaxUnitsPerRequest = 1_000_000
	MaxUnitsBound             = 1 << 40
)

// MaxLimit is the largest plan limit (plans.<name>.limits.<meter>): 2^53−1,
// meter.MaxTotal, the largest count the meter and the quota ledger keep
// exactly (Redis Lua numbers are doubles).
const MaxLimit = 1<<53 - 1

// Default returns the configuration every file is read on top of.
func Default() *Config {
	return &Config{
		Listen:      ":8080",
		AdminListen: "127.0.0.1:9090",
		Server: Server{
			ReadHeaderTimeout: 10 * time.Second,
			ReadTimeout:       60 * time.Second,
			IdleTimeout:       120 * time.Second,
			MaxHeaderBytes:    64 << 10,
			DrainDelay:        5 * time.Second,
			ShutdownTimeout:   30 * time.Second,
		},
		Proxy: ProxyTimeouts{
			DialTimeout:           5 * time.Second,
			ResponseHeaderTimeout: 60 * time.Second,
			IdleConnTimeout:       90 * time.Second,
			MaxIdleConnsPerHost:   100,
			Upgrades:              []string{"websocket"},
		},
		CORS: CORS{
			AllowedMethods: []string{"GET", "HEAD", "POST", "PUT", "PATCH", "DELETE"},
			AllowedHeaders: []string{"Authorization", "Content-Type", "Idempotency-Key", "X-Request-Id"},
			ExposedHeaders: []string{"X-Request-Id", "Retry-After", "RateLimit", "RateLimit-Policy"},
			MaxAge:         10 * time.Minute,
		},
		Log: Log{Level: "info", Format: "json", FlushInterval: 100 * time.Millisecond},
		Redis: Redis{
			Prefix:       "tollgate:",
			DialTimeout:  2 * time.Second,
			ReadTimeout:  time.Second,
			WriteTimeout: time.Second,
		},
		Stripe: Stripe{Timeout: 20 * time.Second, MaxNetworkRetries: 2},
		Auth: Auth{JWT: JWT{
			Leeway:              30 * time.Second,
			CustomerClaim:       "stripe_customer_id",
			UserClaim:           "sub",
			MaxTokenBytes:       8 << 10,
			CacheSize:           10000,
			JWKSRefresh:         time.Hour,
			JWKSRefetchCooldown: 5 * time.Minute,
		}},
		Gating: Gating{GracePeriod: 72 * time.Hour, MaxStaleness: 5 * time.Minute, CacheSize: 100000,
			RefreshInterval: time.Minute, NegativeTTL: 10 * time.Second, SyncInterval: time.Hour,
			ReplayInterval: 10 * time.Minute, Mode: ModeEnforce},
		Metering: Metering{FlushInterval: time.Second, Window: 60 * time.Second, CountedStatuses: []string{"2xx"},
			MaxBufferedKeys: 100000, LeaseTTL: 10 * time.Second, RateLimit: 50, MaxUnitsPerRequest: DefaultMaxUnitsPerRequest,
			Quota: QuotaLeases{LeaseTTL: 10 * time.Second, SyncInterval: time.Second}},
		Billing: Billing{Prefix: "/_tollgate/billing", UpgradeProration: "always_invoice", RateLimit: 30,
			SeatsSyncDelay: time.Minute, SeatProration: "create_prorations"},
		Webhook: Webhook{Path: "/_tollgate/stripe/webhook", ProcessTimeout: 30 * time.Second, DedupTTL: 720 * time.Hour,
			ForwardTimeout: 10 * time.Second, ForwardMaxAttempts: 15, DeliveryLogSize: 10000, DeliveryLogAge: 168 * time.Hour},
		Metrics: Metrics{SubscriptionsInterval: time.Minute},
	}
}

// ForwardsAuthorization reports whether the Authorization header is passed
// to the upstream (default true: apps often re-read claims themselves).
func (j JWT) ForwardsAuthorization() bool {
	return j.ForwardAuthorization == nil || *j.ForwardAuthorization
}
