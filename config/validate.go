package config

import (
	"errors"
	"fmt"
	"net"
	"net/netip"
	"net/url"
	"slices"
	"strings"
	"time"
)

// Algorithms is every JWT algorithm tollgate can verify.
var Algorithms = []string{
	"HS256", "HS384", "HS512",
	"RS256", "RS384", "RS512",
	"PS256", "PS384", "PS512",
	"ES256", "ES384", "EdDSA",
}

// PatternChecker validates a route path pattern. The proxy package owns the
// pattern syntax; it registers its compiler here so that `tollgate check`
// and the proxy agree on what a valid pattern is.
var PatternChecker = func(string) error { return nil }

type problems struct {
	errs  []error
	lines map[string]int // field path → line in the file, when parsed
}

// add records a problem, with the line of its field (or of the nearest
// enclosing field that was written in the file).
func (p *problems) add(path, format string, args ...any) {
	p.errs = append(p.errs, fieldError(path, p.line(path), format, args...))
}

func (p *problems) line(path string) int {
	for path != "" {
		if l, ok := p.lines[path]; ok {
			return l
		}
		i := strings.LastIndexAny(path, ".[")
		if i < 0 {
			return 0
		}
		path = path[:i]
	}
	return 0
}

// Validate checks the whole configuration and returns every problem found,
// joined, each a *FieldError naming its field path. It has no side effects.
func (c *Config) Validate() error {
	p := problems{lines: c.lines}
	c.validateListeners(&p)
	c.validateServer(&p)
	c.validateProxy(&p)
	c.validateRedis(&p)
	c.validateStripe(&p)
	c.validateJWT(&p)
	c.validatePlans(&p)
	c.validateGating(&p)
	c.validateMetering(&p)
	c.validateRoutes(&p)
	c.validateEndpoints(&p)
	c.validateMetrics(&p)
	return errors.Join(p.errs...)
}

func (c *Config) validateListeners(p *problems) {
	if _, _, err := net.SplitHostPort(c.Listen); err != nil {
		p.add("listen", "%q is not host:port (for example \":8080\")", c.Listen)
	}
	host, port, err := net.SplitHostPort(c.AdminListen)
	switch {
	case err != nil:
		p.add("admin_listen", "%q is not host:port (for example \"127.0.0.1:9090\")", c.AdminListen)
	case c.AdminListen == c.Listen && port != "0":
		p.add("admin_listen", "must differ from listen: /metrics and /readyz are never served on the proxy listener")
	case !isLoopback(host) && !c.AdminAllowPublic:
		p.add("admin_listen", "%q is not a loopback address; metrics reveal routes and usage, so set admin_allow_public: true to serve them on it deliberately", c.AdminListen)
	}
	u, err := url.Parse(c.Upstream)
	switch {
	case c.Upstream == "":
		p.add("upstream", "required: the application's base URL, for example http://127.0.0.1:3000")
	case err != nil || (u.Scheme != "http" && u.Scheme != "https") || u.Host == "":
		p.add("upstream", "%q is not an http:// or https:// URL with a host", c.Upstream)
	case u.RawQuery != "" || u.Fragment != "":
		p.add("upstream", "%q must not have a query or fragment", c.Upstream)
	}
	for i, cidr := range c.TrustedProxies {
		if _, err := netip.ParsePrefix(cidr); err != nil {
			p.add(fmt.Sprintf("trusted_proxies[%d]", i), "%q is not a CIDR such as 10.0.0.0/8", cidr)
		}
	}
	if !slices.Contains([]string{"debug", "info", "warn", "error"}, c.Log.Level) {
		p.add("log.level", "%q is not one of debug, info, warn, error", c.Log.Level)
	}
	if c.Log.Format != "json" && c.Log.Format != "text" {
		p.add("log.format", "%q is not json or text", c.Log.Format)
	}
	if f := c.Log.FlushInterval; f < 0 || f > MaxLogFlushInterval {
		p.add("log.flush_interval", "%s is not 0 (each line at once) to %s", f, MaxLogFlushInterval)
	}
}

func isLoopback(host string) bool {
	if host == "localhost" {
		return true
	}
	ip, err := netip.ParseAddr(host)
	return err == nil && ip.IsLoopback()
}

func (c *Config) validateServer(p *problems) {
	for _, f := range []struct {
		path string
		d    time.Duration
	}{
		{"server.read_header_timeout", c.Server.ReadHeaderTimeout},
		{"server.shutdown_timeout", c.Server.ShutdownTimeout},
		{"proxy.dial_timeout", c.Proxy.DialTimeout},
		{"proxy.response_header_timeout", c.Proxy.ResponseHeaderTimeout},
		{"metering.flush_interval", c.Metering.FlushInterval},
		{"metering.window", c.Metering.Window},
		{"stripe.timeout", c.Stripe.Timeout},
		{"auth.jwt.jwks_refresh", c.Auth.JWT.JWKSRefresh},
		{"auth.jwt.jwks_refetch_cooldown", c.Auth.JWT.JWKSRefetchCooldown},
	} {
		if f.d <= 0 {
			p.add(f.path, "must be a positive duration, got %s", f.d)
		}
	}
	for _, f := range []struct {
		path string
		d    time.Duration
	}{
		{"server.read_timeout", c.Server.ReadTimeout},
		{"server.write_timeout", c.Server.WriteTimeout},
		{"server.idle_timeout", c.Server.IdleTimeout},
		{"server.drain_delay", c.Server.DrainDelay},
		{"proxy.idle_conn_timeout", c.Proxy.IdleConnTimeout},
	} {
		if f.d < 0 {
			p.add(f.path, "must not be negative (0 means no limit), got %s", f.d)
		}
	}
	// go-redis reads 0 as its own 3 s default, not as "no limit": refuse it
	// rather than document a meaning it does not have.
	for _, f := range []struct {
		path string
		d    time.Duration
	}{
		{"redis.dial_timeout", c.Redis.DialTimeout},
		{"redis.read_timeout", c.Redis.ReadTimeout},
		{"redis.write_timeout", c.Redis.WriteTimeout},
	} {
		if f.d <= 0 || f.d > time.Minute {
			p.add(f.path, "must be more than 0 and at most 1m (a bound on one Redis command), got %s", f.d)
		}
	}
	if c.Server.MaxHeaderBytes < 4096 {
		p.add("server.max_header_bytes", "must be at least 4096, got %d", c.Server.MaxHeaderBytes)
	}
	if c.Proxy.MaxIdleConnsPerHost < 0 {
		p.add("proxy.max_idle_conns_per_host", "must not be negative, got %d", c.Proxy.MaxIdleConnsPerHost)
	}
}

func (c *Config) validateRedis(p *problems) {
	r := c.Redis
	if r.URL != "" && len(r.Addrs) > 0 {
		p.add("redis", "set url or addrs, not both")
	}
	if r.URL != "" {
		u, err := url.Parse(r.URL)
		if err != nil || (u.Scheme != "redis" && u.Scheme != "rediss" && u.Scheme != "unix") {
			p.add("redis.url", "not a redis://, rediss:// or unix:// URL")
		} else {
			pw, hasPW := u.User.Password()
			switch {
			case hasPW && pw != "" && r.Password != "":
				p.add("redis.password", "is set and redis.url carries a password too: keep it in one place")
			case u.User.Username() != "" && r.Username != "":
				p.add("redis.username", "is set and redis.url carries a user name too: keep it in one place")
			case strings.Trim(u.Path, "/") != "" && strings.Trim(u.Path, "/") != "0" && r.DB != 0:
				p.add("redis.db", "is set and redis.url names a database too (%s): keep it in one place", u.Path)
			}
		}
	}
	for i, a := range r.Addrs {
		if _, _, err := net.SplitHostPort(a); err != nil {
			p.add(fmt.Sprintf("redis.addrs[%d]", i), "%q is not host:port", a)
		}
	}
	if r.Cluster && (r.MasterName != "" || len(r.Addrs) == 0) {
		p.add("redis.cluster", "needs redis.addrs (the cluster's nodes or configuration endpoint) and no master_name")
	}
	if r.MasterName != "" && len(r.Addrs) == 0 {
		p.add("redis.master_name", "Sentinel needs redis.addrs (the sentinels' addresses)")
	}
	if r.SentinelPassword != "" && r.MasterName == "" {
		p.add("redis.sentinel_password", "only used with Sentinel (redis.master_name)")
	}
	if r.DB < 0 || r.DB > 15 {
		p.add("redis.db", "must be 0..15, got %d", r.DB)
	}
	if strings.ContainsAny(r.Prefix, "{} ") {
		p.add("redis.prefix", "%q must not contain braces or spaces: braces would break the per-customer hash tag", r.Prefix)
	}
}

// fromEnv says which ${VAR} a field's value came from, for messages about
// an empty value: " (from ${STRIPE_SECRET_KEY}, which is set but empty)".
func (c *Config) fromEnv(path string) string {
	names := c.envs[path]
	if len(names) == 0 {
		return ""
	}
	refs := make([]string, len(names))
	for i, n := range names {
		refs[i] = "${" + n + "}"
	}
	verb := "is"
	if len(refs) > 1 {
		verb = "are"
	}
	return fmt.Sprintf(" (from %s, which %s set but empty)", strings.Join(refs, " "), verb)
}

func (c *Config) validateStripe(p *problems) {
	s := c.Stripe
	if s.SecretKey != "" && !strings.HasPrefix(s.SecretKey, "sk_") && !strings.HasPrefix(s.SecretKey, "rk_") {
		p.add("stripe.secret_key", "does not look like a Stripe secret or restricted key (sk_... or rk_...)")
	}
	switch {
	case s.SecretKey == "" && !s.TrustedPayloads:
		p.add("stripe.secret_key", "is empty%s: set it to your sk_... or rk_... key; without one nothing is re-read "+
			"from Stripe, no sync runs and usage is never reported (for a demo or a test only, set "+
			"stripe.trusted_payloads: true)", c.fromEnv("stripe.secret_key"))
	case s.SecretKey != "" && s.TrustedPayloads:
		p.add("stripe.trusted_payloads", "cannot be used with stripe.secret_key: with a key, state is always re-read from Stripe; remove one of them")
	}
	for i, w := range s.WebhookSecrets {
		path := fmt.Sprintf("stripe.webhook_secrets[%d]", i)
		switch {
		case w == "":
			p.add(path, "is empty%s: set it to the endpoint's signing secret (whsec_...), or remove the entry to turn the webhook endpoint off", c.fromEnv(path))
		case !strings.HasPrefix(w, "whsec_"):
			p.add(path, "does not look like a webhook signing secret (whsec_...)")
		}
	}
	if s.APIBase != "" {
		if u, err := url.Parse(s.APIBase); err != nil || (u.Scheme != "http" && u.Scheme != "https") || u.Host == "" {
			p.add("stripe.api_base", "%q is not an http(s) URL", s.APIBase)
		}
	}
	if s.MaxNetworkRetries < 0 || s.MaxNetworkRetries > 10 {
		p.add("stripe.max_network_retries", "must be 0..10, got %d", s.MaxNetworkRetries)
	}
}
