package config

import (
	"errors"
	"os"
	"reflect"
	"slices"
	"strings"
	"testing"
	"time"
)

func env(m map[string]string) func(string) (string, bool) {
	return func(k string) (string, bool) { v, ok := m[k]; return v, ok }
}

const minimal = `
upstream: http://127.0.0.1:3000
stripe:
  trusted_payloads: true
auth:
  jwt:
    algorithms: [HS256]
    audience: [api]
    hmac_secret: "${SECRET}"
routes:
  - { path: /healthz, auth: none }
  - { path: /api/**, require: { subscription: true }, meter: calls }
plans:
  starter: { prices: [price_1], features: [reports], limits: { calls: 100 } }
metering:
  meters:
    calls: { event_name: api_calls }
`

func TestParseMinimal(t *testing.T) {
	secret := strings.Repeat("s", 32)
	cfg, err := ParseEnv(strings.NewReader(minimal), env(map[string]string{"SECRET": secret}))
	if err != nil {
		t.Fatalf("ParseEnv: %v", err)
	}
	if err := cfg.Validate(); err != nil {
		t.Fatalf("Validate: %v", err)
	}
	for _, c := range []struct {
		name      string
		got, want any
	}{
		{"hmac_secret expanded", cfg.Auth.JWT.HMACSecret, secret},
		{"default listen kept", cfg.Listen, ":8080"},
		{"default leeway kept", cfg.Auth.JWT.Leeway, 30 * time.Second},
		{"routes", len(cfg.Routes), 2},
		{"route auth", cfg.Routes[1].AuthMode(), AuthRequired},
		{"limit", cfg.Plans["starter"].Limits["calls"], int64(100)},
		{"meter mode default", cfg.Metering.Meters["calls"].Mode, ""},
		{"forward auth default", cfg.Auth.JWT.ForwardsAuthorization(), true},
		{"upgrades default", strings.Join(cfg.Proxy.Upgrades, ","), "websocket"},
		{"method override default", cfg.Proxy.AllowMethodOverride, false},
	} {
		if c.got != c.want {
			t.Errorf("%s = %v; want %v", c.name, c.got, c.want)
		}
	}
}

// A route's shadow key overrides gating.mode both ways: true shadows a
// route under enforce, false enforces a route under shadow (how a team
// turns enforcement on route by route).
func TestRouteShadowed(t *testing.T) {
	yes, no := true, false
	for _, c := range []struct {
		name   string
		mode   string
		shadow *bool
		want   bool
	}{
		{"enforce, unset", ModeEnforce, nil, false},
		{"enforce, route shadow", ModeEnforce, &yes, true},
		{"enforce, route enforce", ModeEnforce, &no, false},
		{"shadow, unset", ModeShadow, nil, true},
		{"shadow, route shadow", ModeShadow, &yes, true},
		{"shadow, route enforce", ModeShadow, &no, false},
	} {
		r := &Route{Path: "/x", Shadow: c.shadow}
		if got := r.Shadowed(c.mode); got != c.want {
			t.Errorf("%s: Shadowed(%q) = %v; want %v", c.name, c.mode, got, c.want)
		}
	}
	cfg, err := ParseEnv(strings.NewReader(minimal+"gating: { mode: shadow }\n"), env(map[string]string{"SECRET": strings.Repeat("s", 32)}))
	if err != nil {
		t.Fatal(err)
	}
	if cfg.Gating.Mode != ModeShadow || Default().Gating.Mode != ModeEnforce {
		t.Errorf("gating.mode parsed %q, default %q; want shadow, enforce", cfg.Gating.Mode, Default().Gating.Mode)
	}
}

// TestEnvCannotInjectYAML: ${VAR} is expanded in parsed values, never in the
// raw text, so a value with YAML syntax stays one string.
func TestEnvCannotInjectYAML(t *testing.T) {
	evil := "x\"\nadmin_allow_public: true\nfoo: \"" + strings.Repeat("s", 32)
	cfg, err := ParseEnv(strings.NewReader(minimal), env(map[string]string{"SECRET": evil}))
	if err != nil {
		t.Fatalf("ParseEnv: %v", err)
	}
	if cfg.AdminAllowPublic || cfg.Auth.JWT.HMACSecret != evil {
		t.Errorf("env value changed the structure: admin_allow_public=%v secret=%q", cfg.AdminAllowPublic, cfg.Auth.JWT.HMACSecret)
	}
}

func TestParseErrors(t *testing.T) {
	for _, c := range []struct {
		name, yaml string
		want       []string // substrings of the joined error, each a field path
	}{
		{"unknown top key", "listn: x", []string{"listn: unknown key"}},
		{"unknown nested key", "auth: {jwt: {algorithm: [RS256]}}", []string{"auth.jwt.algorithm: unknown key"}},
		{"wrong type list", "auth: {jwt: {audience: api}}", []string{"auth.jwt.audience: want a list"}},
		{"wrong type duration", "gating: {grace_period: 3}", []string{"gating.grace_period: \"3\" is not a duration"}},
		{"wrong type bool", "admin_allow_public: yes please", []string{"admin_allow_public: \"yes please\" is not true or false"}},
		{"wrong type int", "redis: {db: one}", []string{"redis.db: \"one\" is not a whole number"}},
		{"route key", "routes: [{path: /a, requires: {}}]", []string{"routes[0].requires: unknown key"}},
		{"unset env", "upstream: ${NOPE_NOT_SET}", []string{"upstream: environment variable NOPE_NOT_SET is not set"}},
		{"all at once", "a: 1\nb: 2\nserver: {idle_timeout: x}", []string{"a: unknown key", "b: unknown key", "server.idle_timeout"}},
		{"duplicate key", "listen: a\nlisten: b", []string{"listen: key given twice"}},
		{"mapping for scalar", "listen: {a: 1}", []string{"listen: want a single value"}},
	} {
		t.Run(c.name, func(t *testing.T) {
			_, err := ParseEnv(strings.NewReader(c.yaml), env(nil))
			if err == nil {
				t.Fatalf("ParseEnv(%q) = nil error; want %q", c.yaml, c.want)
			}
			for _, w := range c.want {
				if !strings.Contains(err.Error(), w) {
					t.Errorf("ParseEnv(%q) error = %q; want it to contain %q", c.yaml, err, w)
				}
			}
			var fe *FieldError
			if !errors.As(err, &fe) || fe.Line == 0 {
				t.Errorf("error %v carries no *FieldError with a line", err)
			}
		})
	}
}

func TestValidateRules(t *testing.T) {
	base := func() *Config {
		cfg, err := ParseEnv(strings.NewReader(minimal), env(map[string]string{"SECRET": strings.Repeat("s", 32)}))
		if err != nil {
			t.Fatal(err)
		}
		return cfg
	}
	for _, c := range []struct {
		name   string
		mutate func(*Config)
		want   string // "" = valid
	}{
		{"valid", func(*Config) {}, ""},
		{"redis read timeout 0", func(c *Config) { c.Redis.ReadTimeout = 0 }, "redis.read_timeout: must be more than 0"},
		{"max_staleness 0", func(c *Config) { c.Gating.MaxStaleness = 0 }, "gating.max_staleness: must be at least 2s"},
		{"redis password twice", func(c *Config) {
			c.Redis.URL, c.Redis.Password = "redis://:pw@127.0.0.1:6379/0", "pw"
		}, "redis.password: is set and redis.url carries a password too"},
		{"redis password beside a plain url", func(c *Config) { c.Redis.URL, c.Redis.Password = "redis://127.0.0.1:6379/0", "pw" }, ""},
		{"redis db twice", func(c *Config) { c.Redis.URL, c.Redis.DB = "redis://127.0.0.1:6379/3", 2 }, "redis.db: is set and redis.url names a database too"},
		{"no stripe key", func(c *Config) { c.Stripe.TrustedPayloads = false }, "stripe.secret_key: is empty: set it"},
		{"stripe key and trusted payloads", func(c *Config) { c.Stripe.SecretKey = "sk_test_x" }, "stripe.trusted_payloads: cannot be used with stripe.secret_key"},
		{"empty webhook secret", func(c *Config) { c.Stripe.WebhookSecrets = []string{""} }, "stripe.webhook_secrets[0]: is empty: set it"},
		{"empty algorithms", func(c *Config) { c.Auth.JWT.Algorithms = nil }, "auth.jwt.algorithms: required"},
		{"alg none", func(c *Config) { c.Auth.JWT.Algorithms = []string{"none"} }, "auth.jwt.algorithms[0]: \"none\" is not supported"},
		{"empty audience", func(c *Config) { c.Auth.JWT.Audience = nil }, "auth.jwt.audience: required"},
		{"blank audience", func(c *Config) { c.Auth.JWT.Audience = []string{" "} }, "auth.jwt.audience[0]: must not be empty"},
		{"hmac with RS256", func(c *Config) { c.Auth.JWT.Algorithms = []string{"RS256"} }, "auth.jwt.hmac_secret: an HMAC secret needs HS256"},
		{"two key sources", func(c *Config) { c.Auth.JWT.JWKSURL = "https://a/jwks" }, "auth.jwt: set exactly one"},
		{"jwks over http", func(c *Config) {
			c.Auth.JWT.HMACSecret, c.Auth.JWT.Algorithms, c.Auth.JWT.JWKSURL = "", []string{"RS256"}, "http://idp.example.com/jwks"
		}, "auth.jwt.jwks_url"},
		{"public admin", func(c *Config) { c.AdminListen = "0.0.0.0:9090" }, "admin_listen: \"0.0.0.0:9090\" is not a loopback address"},
		{"public admin opted in", func(c *Config) { c.AdminListen, c.AdminAllowPublic = "0.0.0.0:9090", true }, ""},
		{"admin same as listen", func(c *Config) { c.AdminListen = c.Listen }, "admin_listen: must differ"},
		{"no upstream", func(c *Config) { c.Upstream = "" }, "upstream: required"},
		{"bad cidr", func(c *Config) { c.TrustedProxies = []string{"10.0.0.0/40"} }, "trusted_proxies[0]"},
		{"unknown plan", func(c *Config) { c.Routes[1].Require.Plans = []string{"gold"} }, "routes[1].require.plans[0]: no plan \"gold\""},
		{"sentinel password without sentinel", func(c *Config) { c.Redis.URL, c.Redis.SentinelPassword = "redis://127.0.0.1:6379/0", "pw" },
			"redis.sentinel_password: only used with Sentinel"},
		{"unknown meter", func(c *Config) { c.Routes[1].Meter = "bytes" }, "routes[1].meter: no meter \"bytes\""},
		{"require on public route", func(c *Config) { c.Routes[0].Require.Subscription = true }, "routes[0].require: needs auth: required"},
		{"meter on optional route", func(c *Config) { c.Routes[1].Auth = AuthOptional }, "routes[1].meter: needs auth: required"},
		{"bad auth mode", func(c *Config) { c.Routes[0].Auth = "sometimes" }, "routes[0].auth"},
		{"no routes", func(c *Config) { c.Routes = nil }, "routes: no routes"},
		{"price in two plans", func(c *Config) { c.Plans["pro"] = &Plan{Prices: []string{"price_1"}} }, "plans.starter.prices[0]: \"price_1\" is already in plan \"pro\""},
		{"limit on unknown meter", func(c *Config) { c.Plans["starter"].Limits["bytes"] = 1 }, "plans.starter.limits.bytes: no meter"},
		{"limit at MaxLimit", func(c *Config) { c.Plans["starter"].Limits["calls"] = MaxLimit }, ""},
		{"limit past MaxLimit", func(c *Config) { c.Plans["starter"].Limits["calls"] = MaxLimit + 1 },
			"plans.starter.limits.calls: must be 0..9007199254740991 units (2^53-1), got 9007199254740992"},
		{"negative limit", func(c *Config) { c.Plans["starter"].Limits["calls"] = -1 }, "plans.starter.limits.calls: must be 0..9007199254740991 units (2^53-1), got -1"},
		{"meter without event name", func(c *Config) { c.Metering.Meters["calls"].EventName = "" }, "metering.meters.calls.event_name: required"},
		{"flush longer than window", func(c *Config) { c.Metering.FlushInterval = 2 * time.Minute }, "metering.flush_interval"},
		{"zero buffered keys", func(c *Config) { c.Metering.MaxBufferedKeys = 0 }, "metering.max_buffered_keys: must be at least 1"},
		{"short lease", func(c *Config) { c.Metering.LeaseTTL = 100 * time.Millisecond }, "metering.lease_ttl: must be between 1s and 10m"},
		{"zero rate limit", func(c *Config) { c.Metering.RateLimit = 0 }, "metering.rate_limit: must be 1..10000"},
		{"zero max units", func(c *Config) { c.Metering.MaxUnitsPerRequest = 0 }, "metering.max_units_per_request: must be 1..1099511627776 units, got 0"},
		{"max units beyond the bound", func(c *Config) { c.Metering.MaxUnitsPerRequest = 1<<40 + 1 }, "metering.max_units_per_request: must be 1..1099511627776"},
		{"short quota lease", func(c *Config) { c.Metering.Quota.LeaseTTL = time.Millisecond }, "metering.quota.lease_ttl: must be between 1s and 10m"},
		{"quota sync too slow for its lease", func(c *Config) { c.Metering.Quota.SyncInterval = 5 * time.Second }, "metering.quota.sync_interval: must be positive and at most a third"},
		{"zero quota sync", func(c *Config) { c.Metering.Quota.SyncInterval = 0 }, "metering.quota.sync_interval"},
		{"reserve", func(c *Config) { c.Routes[1].Reserve = 10 }, ""},
		{"negative reserve", func(c *Config) { c.Routes[1].Reserve = -1 }, "routes[1].reserve: must be 0..metering.max_units_per_request (1000000) units, got -1"},
		{"reserve beyond max units", func(c *Config) { c.Routes[1].Reserve = 1_000_001 }, "routes[1].reserve: must be 0..metering.max_units_per_request"},
		{"reserve without meter", func(c *Config) { c.Routes[0].Reserve = 2 }, "routes[0].reserve: needs meter"},
		{"usage records without price", func(c *Config) { c.Metering.Meters["calls"].Mode = ModeUsageRecords }, "metering.meters.calls.price: required with mode: usage_records"},
		{"usage records with price", func(c *Config) {
			c.Metering.Meters["calls"].Mode, c.Metering.Meters["calls"].Price = ModeUsageRecords, "price_metered"
		}, ""},
		{"price on a meter-events meter", func(c *Config) { c.Metering.Meters["calls"].Price = "price_x" }, "metering.meters.calls.price: only used with mode: usage_records"},
		{"zero shutdown timeout", func(c *Config) { c.Server.ShutdownTimeout = 0 }, "server.shutdown_timeout: must be a positive duration"},
		{"brace in prefix", func(c *Config) { c.Redis.Prefix = "a{b}" }, "redis.prefix"},
		{"publishable key", func(c *Config) { c.Stripe.SecretKey = "pk_test_x" }, "stripe.secret_key"},
		{"forward without secret", func(c *Config) { c.Webhook.ForwardURL = "https://app/hooks" }, "webhook.forward_secret"},
		{"forward with secret", func(c *Config) {
			c.Webhook.ForwardURL, c.Webhook.ForwardSecret = "https://app/hooks", "whsec_app"
		}, ""},
		{"dedup shorter than Stripe's retries", func(c *Config) { c.Webhook.DedupTTL = 24 * time.Hour }, "webhook.dedup_ttl: must be between 72h0m0s and 8760h0m0s, got 24h0m0s (Stripe retries"},
		{"zero process timeout", func(c *Config) { c.Webhook.ProcessTimeout = 0 }, "webhook.process_timeout: must be between 1s and 5m0s"},
		{"long forward timeout", func(c *Config) { c.Webhook.ForwardTimeout = time.Hour }, "webhook.forward_timeout: must be between 1s and 5m0s"},
		{"zero forward attempts", func(c *Config) { c.Webhook.ForwardMaxAttempts = 0 }, "webhook.forward_max_attempts: must be 1..100"},
		{"delivery log off", func(c *Config) { c.Webhook.DeliveryLogSize = 0 }, ""},
		{"negative delivery log", func(c *Config) { c.Webhook.DeliveryLogSize = -1 }, "webhook.delivery_log_size: must be 0 (off) to 1000000, got -1"},
		{"delivery log age of a minute", func(c *Config) { c.Webhook.DeliveryLogAge = time.Minute }, "webhook.delivery_log_age: must be between 1h and 720h, got 1m0s"},
		{"replay off", func(c *Config) { c.Gating.ReplayInterval = 0 }, ""},
		{"replay every second", func(c *Config) { c.Gating.ReplayInterval = time.Second }, "gating.replay_interval: must be 0 (off) or between 1m and 24h, got 1s"},
		{"reconcile every hour", func(c *Config) { c.Metering.ReconcileInterval = time.Hour }, ""},
		{"reconcile every minute", func(c *Config) { c.Metering.ReconcileInterval = time.Minute }, "metering.reconcile_interval: must be 0 (off) or between 5m and 24h, got 1m0s"},
		{"reconcile with a 7s window", func(c *Config) { c.Metering.ReconcileInterval = time.Hour; c.Metering.Window = 7 * time.Second }, "metering.reconcile_interval: needs a metering.window that divides an hour"},
		{"cluster without addrs", func(c *Config) { c.Redis.Cluster = true }, "redis.cluster: needs redis.addrs"},
		{"cluster by one address", func(c *Config) {
			c.Redis.URL, c.Redis.Addrs, c.Redis.Cluster = "", []string{"redis.example:6379"}, true
		}, ""},
		{"cors origins", func(c *Config) {
			c.CORS.AllowedOrigins = []string{"https://app.example.com", "http://localhost:3000", "https://*.example.com", "*"}
		}, ""},
		{"cors origin with a path", func(c *Config) { c.CORS.AllowedOrigins = []string{"https://app.example.com/"} }, "cors.allowed_origins[0]"},
		{"cors origin without scheme", func(c *Config) { c.CORS.AllowedOrigins = []string{"app.example.com"} }, "cors.allowed_origins[0]"},
		{"cors any origin with credentials", func(c *Config) {
			c.CORS.AllowedOrigins, c.CORS.AllowCredentials = []string{"*"}, true
		}, `cors.allowed_origins[0]: "*" cannot be used with allow_credentials`},
		{"cors lower-case method", func(c *Config) { c.CORS.AllowedMethods = []string{"get"} }, "cors.allowed_methods[0]"},
		{"cors max age", func(c *Config) { c.CORS.MaxAge = 48 * time.Hour }, "cors.max_age: must be 0..24h"},
		{"billing without redirect URLs", func(c *Config) {
			c.Stripe.SecretKey, c.Billing.SuccessURL = "sk_test_x", "https://app/ok"
		}, "billing.cancel_url: required while the billing API is served"},
		{"billing off", func(c *Config) {
			c.Stripe.SecretKey, c.Stripe.TrustedPayloads, c.Billing.Prefix = "sk_test_x", false, ""
		}, ""},
		{"billing redirect not a URL", func(c *Config) {
			c.Stripe.SecretKey, c.Billing.SuccessURL, c.Billing.CancelURL, c.Billing.ReturnURL = "sk_test_x", "/ok", "https://a/c", "https://a/r"
		}, "billing.success_url: \"/ok\" is not an absolute http(s) URL"},
		{"billing proration", func(c *Config) { c.Billing.UpgradeProration = "later" }, "billing.upgrade_proration"},
		{"seats", func(c *Config) { c.Plans["starter"].Seats = "5" }, ""},
		{"seats from quantity", func(c *Config) { c.Plans["starter"].Seats = SeatsQuantity }, ""},
		{"zero seats", func(c *Config) { c.Plans["starter"].Seats = "0" }, `plans.starter.seats: "0" is not a whole number of seats from 1 to 1000000, nor quantity`},
		{"negative seats", func(c *Config) { c.Plans["starter"].Seats = "-3" }, `plans.starter.seats: "-3" is not a whole number`},
		{"seats beyond the bound", func(c *Config) { c.Plans["starter"].Seats = "1000001" }, `plans.starter.seats: "1000001"`},
		{"seats as a word", func(c *Config) { c.Plans["starter"].Seats = "many" }, `plans.starter.seats: "many"`},
		{"seat proration", func(c *Config) { c.Billing.SeatProration = "later" }, "billing.seat_proration: \"later\" is not create_prorations, always_invoice or none"},
		{"seat sync delay", func(c *Config) { c.Billing.SeatsSyncDelay = 0 }, "billing.seats_sync_delay: must be 100ms..24h, got 0s"},
		{"seat sync without Stripe", func(c *Config) {
			c.Billing.SeatsSync, c.Plans["starter"].Seats = true, "3"
		}, "billing.seats_sync: needs stripe.secret_key"},
		{"seat sync without a seat plan", func(c *Config) {
			c.Stripe.SecretKey, c.Stripe.TrustedPayloads, c.Billing.Prefix, c.Billing.SeatsSync = "sk_test_x", false, "", true
		}, "billing.seats_sync: no plan sets seats"},
		{"seat sync", func(c *Config) {
			c.Stripe.SecretKey, c.Stripe.TrustedPayloads, c.Billing.Prefix, c.Billing.SeatsSync = "sk_test_x", false, "", true
			c.Plans["starter"].Seats = SeatsQuantity
		}, ""},
		{"admin claim with spaces", func(c *Config) { c.Billing.AdminClaim = " admin" }, "billing.admin_claim"},
		{"subscriptions count off", func(c *Config) { c.Metrics.SubscriptionsInterval = 0 }, ""},
		{"subscriptions count every 10ms", func(c *Config) { c.Metrics.SubscriptionsInterval = 10 * time.Millisecond }, "metrics.subscriptions_interval: must be 0 (off) or 1s..1h, got 10ms"},
		{"upgrades none", func(c *Config) { c.Proxy.Upgrades = []string{} }, ""},
		{"upgrades with a version", func(c *Config) { c.Proxy.Upgrades = []string{"websocket", "foo/2"} }, ""},
		// h2c upgrade smuggling: allowing h2c would open a tunnel nothing in it is judged in.
		{"upgrades h2c", func(c *Config) { c.Proxy.Upgrades = []string{"websocket", "H2C"} }, `proxy.upgrades[1]: "H2C" cannot be allowed`},
		{"upgrades h2", func(c *Config) { c.Proxy.Upgrades = []string{"h2/1"} }, `proxy.upgrades[0]: "h2/1" cannot be allowed`},
		{"upgrades not a token", func(c *Config) { c.Proxy.Upgrades = []string{"web socket"} }, `proxy.upgrades[0]: "web socket" is not an Upgrade protocol token`},
		{"upgrades empty token", func(c *Config) { c.Proxy.Upgrades = []string{""} }, `proxy.upgrades[0]`},
		{"upgrades twice", func(c *Config) { c.Proxy.Upgrades = []string{"websocket", "WebSocket"} }, `proxy.upgrades[1]: "WebSocket" is listed twice`},
		{"shadow mode", func(c *Config) { c.Gating.Mode = ModeShadow }, ""},
		{"unknown gating mode", func(c *Config) { c.Gating.Mode = "observe" }, `gating.mode: "observe" is not enforce or shadow`},
		{"empty gating mode", func(c *Config) { c.Gating.Mode = "" }, `gating.mode: "" is not enforce or shadow`},
		{"log flush interval 0", func(c *Config) { c.Log.FlushInterval = 0 }, ""},
		{"log flush interval 1s", func(c *Config) { c.Log.FlushInterval = time.Second }, ""},
		{"log flush interval negative", func(c *Config) { c.Log.FlushInterval = -time.Millisecond }, "log.flush_interval: -1ms is not 0 (each line at once) to 1s"},
		{"log flush interval too long", func(c *Config) { c.Log.FlushInterval = 5 * time.Second }, "log.flush_interval: 5s is not 0 (each line at once) to 1s"},
	} {
		t.Run(c.name, func(t *testing.T) {
			cfg := base()
			c.mutate(cfg)
			err := cfg.Validate()
			switch {
			case c.want == "" && err != nil:
				t.Errorf("Validate() = %v; want nil", err)
			case c.want != "" && (err == nil || !strings.Contains(err.Error(), c.want)):
				t.Errorf("Validate() = %v; want an error containing %q", err, c.want)
			}
		})
	}
}

func TestExampleConfigIsValid(t *testing.T) {
	f, err := os.Open("../deploy/tollgate.example.yaml")
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	cfg, err := ParseEnv(f, env(map[string]string{"STRIPE_SECRET_KEY": "sk_test_x", "STRIPE_WEBHOOK_SECRET": "whsec_x"}))
	if err != nil {
		t.Fatalf("example config does not parse: %v", err)
	}
	if err := cfg.Validate(); err != nil {
		t.Fatalf("example config is not valid: %v", err)
	}
}

// Validation problems name the line of their field (or of the nearest
// enclosing field written in the file), and Load lists them in file order.
func TestValidationProblemsCarryLines(t *testing.T) {
	src := "upstream: http://127.0.0.1:3000\n" + // line 1
		"stripe: { trusted_payloads: true }\n" + // 2
		"auth:\n" + // 3
		"  jwt:\n" + // 4
		"    algorithms: [HS256]\n" + // 5
		"    audience: [\"\"]\n" + // 6
		"    hmac_secret: short\n" + // 7
		"routes:\n" + // 8
		"  - { path: /a, require: { plans: [gold] } }\n" // 9
	_, err := Load(strings.NewReader(src), env(nil))
	var lines []int
	for _, p := range Problems(err) {
		var fe *FieldError
		if !errors.As(p, &fe) {
			t.Fatalf("problem %v is not a *FieldError", p)
		}
		lines = append(lines, fe.Line)
		want := map[string]int{"auth.jwt.audience[0]": 6, "auth.jwt.hmac_secret": 7, "routes[0].require.plans[0]": 9}[fe.Path]
		if want != 0 && fe.Line != want {
			t.Errorf("%s at line %d; want %d", fe.Path, fe.Line, want)
		}
	}
	if len(lines) < 3 || !slices.IsSorted(lines) {
		t.Errorf("problem lines %v; want at least 3, in file order", lines)
	}
}

// Every key of the schema is documented in the example config (written or
// commented), so the example stays the user's reference.
func TestExampleConfigDocumentsEveryKey(t *testing.T) {
	raw, err := os.ReadFile("../deploy/tollgate.example.yaml")
	if err != nil {
		t.Fatal(err)
	}
	text := string(raw)
	var walk func(prefix string, typ reflect.Type)
	walk = func(prefix string, typ reflect.Type) {
		for typ.Kind() == reflect.Pointer || typ.Kind() == reflect.Slice || typ.Kind() == reflect.Map {
			typ = typ.Elem()
		}
		if typ.Kind() != reflect.Struct || typ == reflect.TypeOf(time.Duration(0)) {
			return
		}
		for i := range typ.NumField() {
			tag := strings.Split(typ.Field(i).Tag.Get("yaml"), ",")[0]
			if tag == "" {
				continue
			}
			if !strings.Contains(text, tag+":") {
				t.Errorf("%s%s is not in deploy/tollgate.example.yaml", prefix, tag)
			}
			walk(prefix+tag+".", typ.Field(i).Type)
		}
	}
	walk("", reflect.TypeOf(Config{}))
}

// Issue 12: an unset-in-practice secret (compose passes ” for an unset
// variable) must be refused with the variable it came from, never run
// production in trusted payload mode.
func TestEmptySecretsNameTheirVariable(t *testing.T) {
	src := strings.Replace(minimal, "stripe:\n  trusted_payloads: true\n",
		"stripe:\n  secret_key: \"${STRIPE_KEY}\"\n  webhook_secrets: [\"${HOOK_SECRET}\"]\n", 1)
	_, err := Load(strings.NewReader(src), env(map[string]string{"SECRET": strings.Repeat("s", 32), "STRIPE_KEY": "", "HOOK_SECRET": ""}))
	for _, want := range []string{
		"stripe.secret_key: is empty (from ${STRIPE_KEY}, which is set but empty)",
		"stripe.webhook_secrets[0]: is empty (from ${HOOK_SECRET}, which is set but empty)",
	} {
		if err == nil || !strings.Contains(err.Error(), want) {
			t.Errorf("Load with empty secrets = %v; want a problem containing %q", err, want)
		}
	}
}

func TestParseSeats(t *testing.T) {
	for _, c := range []struct {
		yaml  string
		want  Seats
		fixed int64
	}{
		{"seats: 3", "3", 3},
		{"seats: quantity", SeatsQuantity, 0},
		{`seats: "12"`, "12", 12},
	} {
		in := strings.Replace(minimal, "limits: { calls: 100 } }", "limits: { calls: 100 }, "+c.yaml+" }", 1)
		cfg, err := Load(strings.NewReader(in), env(map[string]string{"SECRET": strings.Repeat("s", 32)}))
		if err != nil {
			t.Fatalf("%s: %v", c.yaml, err)
		}
		got := cfg.Plans["starter"].Seats
		n, _ := got.Fixed()
		if got != c.want || n != c.fixed || !got.Limited() {
			t.Errorf("%s: seats = %q (fixed %d); want %q (fixed %d)", c.yaml, got, n, c.want, c.fixed)
		}
	}
}
