package config

import (
	"fmt"
	"net/url"
	"regexp"
	"slices"
	"strings"
	"time"
)

var (
	identRe  = regexp.MustCompile(`^[A-Za-z0-9][A-Za-z0-9_.-]{0,99}$`)
	methodRe = regexp.MustCompile(`^[A-Z]+$`)
	statusRe = regexp.MustCompile(`^([1-5]xx|[1-5][0-9][0-9])$`)
)

func (c *Config) validateJWT(p *problems) {
	j := c.Auth.JWT
	if len(j.Algorithms) == 0 {
		p.add("auth.jwt.algorithms", "required, no default: list the algorithms your issuer signs with, for example [RS256]")
	}
	hmac, public := false, false
	for i, a := range j.Algorithms {
		switch {
		case !slices.Contains(Algorithms, a):
			p.add(fmt.Sprintf("auth.jwt.algorithms[%d]", i), "%q is not supported (one of %s; \"none\" is never accepted)", a, strings.Join(Algorithms, ", "))
		case strings.HasPrefix(a, "HS"):
			hmac = true
		default:
			public = true
		}
	}
	if hmac && public {
		p.add("auth.jwt.algorithms", "mixes HMAC (HS*) and public-key algorithms: a key is pinned to one kind, list one kind")
	}
	if len(j.Audience) == 0 {
		p.add("auth.jwt.audience", "required, non-empty: the audience value(s) your tokens are issued for")
	}
	for i, a := range j.Audience {
		if strings.TrimSpace(a) == "" {
			p.add(fmt.Sprintf("auth.jwt.audience[%d]", i), "must not be empty")
		}
	}
	sources := 0
	for _, set := range []bool{j.JWKSURL != "", len(j.PublicKeyFiles) > 0, j.HMACSecret != ""} {
		if set {
			sources++
		}
	}
	switch {
	case sources == 0:
		p.add("auth.jwt", "needs a key source: jwks_url, public_key_files or hmac_secret")
	case sources > 1:
		p.add("auth.jwt", "set exactly one of jwks_url, public_key_files, hmac_secret")
	}
	if j.HMACSecret != "" {
		if public {
			p.add("auth.jwt.hmac_secret", "an HMAC secret needs HS256/HS384/HS512 in auth.jwt.algorithms")
		}
		if len(j.HMACSecret) < 32 {
			p.add("auth.jwt.hmac_secret", "is %d bytes; use at least 32 random bytes", len(j.HMACSecret))
		}
	}
	if (j.JWKSURL != "" || len(j.PublicKeyFiles) > 0) && hmac {
		p.add("auth.jwt.algorithms", "HS* algorithms cannot be verified with public keys (key confusion): use hmac_secret or drop them")
	}
	if j.JWKSURL != "" {
		u, err := url.Parse(j.JWKSURL)
		if err != nil || u.Host == "" || (u.Scheme != "https" && !(u.Scheme == "http" && isLoopback(u.Hostname()))) {
			p.add("auth.jwt.jwks_url", "%q must be an https:// URL (http:// only for a loopback host)", j.JWKSURL)
		}
	}
	if j.Leeway < 0 || j.Leeway > 5*time.Minute {
		p.add("auth.jwt.leeway", "must be between 0 and 5m, got %s", j.Leeway)
	}
	if j.CustomerClaim == "" {
		p.add("auth.jwt.customer_claim", "must not be empty")
	}
	if j.UserClaim == "" {
		p.add("auth.jwt.user_claim", "must not be empty")
	}
	if j.MaxTokenBytes < 512 || j.MaxTokenBytes > 64<<10 {
		p.add("auth.jwt.max_token_bytes", "must be 512..65536, got %d", j.MaxTokenBytes)
	}
	if j.CacheSize < 0 {
		p.add("auth.jwt.cache_size", "must not be negative (0 turns the cache off), got %d", j.CacheSize)
	}
}

func (c *Config) validatePlans(p *problems) {
	owner := map[string]string{}
	for _, name := range sortedNames(c.Plans) {
		pl := c.Plans[name]
		path := "plans." + name
		if !identRe.MatchString(name) {
			p.add(path, "plan name %q must be letters, digits, '_', '-' or '.'", name)
		}
		if len(pl.Prices) == 0 {
			p.add(path+".prices", "needs at least one Stripe price id (price_...)")
		}
		for i, price := range pl.Prices {
			pp := fmt.Sprintf("%s.prices[%d]", path, i)
			switch {
			case !strings.HasPrefix(price, "price_") && !strings.HasPrefix(price, "plan_"):
				p.add(pp, "%q does not look like a Stripe price id (price_...)", price)
			case owner[price] != "":
				p.add(pp, "%q is already in plan %q: a price maps to one plan", price, owner[price])
			default:
				owner[price] = name
			}
		}
		for i, f := range pl.Features {
			if !identRe.MatchString(f) {
				p.add(fmt.Sprintf("%s.features[%d]", path, i), "%q is not a valid feature name", f)
			}
		}
		validateSeats(p, path+".seats", pl.Seats)
		for _, meter := range sortedNames(pl.Limits) {
			limit := pl.Limits[meter]
			if _, ok := c.Metering.Meters[meter]; !ok {
				p.add(path+".limits."+meter, "no meter %q in metering.meters", meter)
			}
			if limit < 0 || limit > MaxLimit {
				p.add(path+".limits."+meter, "must be 0..%d units (2^53-1), got %d", int64(MaxLimit), limit)
			}
		}
	}
}

func (c *Config) validateGating(p *problems) {
	if c.Gating.GracePeriod < 0 {
		p.add("gating.grace_period", "must not be negative, got %s", c.Gating.GracePeriod)
	}
	if c.Gating.MaxStaleness < MinMaxStaleness {
		p.add("gating.max_staleness", "must be at least %s, got %s: decisions on state older than this are refused even while the store is healthy, and the change feed proves state current only every fraction of a second", MinMaxStaleness, c.Gating.MaxStaleness)
	}
	if c.Gating.CacheSize < 100 {
		p.add("gating.cache_size", "must be at least 100, got %d", c.Gating.CacheSize)
	}
	for _, f := range []struct {
		path string
		d    time.Duration
	}{{"gating.refresh_interval", c.Gating.RefreshInterval}, {"gating.negative_ttl", c.Gating.NegativeTTL}, {"gating.sync_interval", c.Gating.SyncInterval}} {
		if f.d < 0 {
			p.add(f.path, "must not be negative, got %s", f.d)
		}
	}
	if d := c.Gating.ReplayInterval; d != 0 && (d < time.Minute || d > 24*time.Hour) {
		p.add("gating.replay_interval", "must be 0 (off) or between 1m and 24h, got %s", d)
	}
	if u := c.Gating.UpgradeURL; u != "" {
		if pu, err := url.Parse(u); err != nil || (pu.Scheme != "https" && pu.Scheme != "http" && !strings.HasPrefix(u, "/")) {
			p.add("gating.upgrade_url", "%q is not an absolute URL or a path", u)
		}
	}
	if m := c.Gating.Mode; m != ModeEnforce && m != ModeShadow {
		p.add("gating.mode", "%q is not enforce or shadow", m)
	}
}

func (c *Config) validateMetering(p *problems) {
	m := c.Metering
	if m.Window > 0 && m.Window < time.Second {
		p.add("metering.window", "must be at least 1s, got %s", m.Window)
	}
	if m.FlushInterval > 0 && m.Window > 0 && m.FlushInterval > m.Window {
		p.add("metering.flush_interval", "%s is longer than metering.window %s", m.FlushInterval, m.Window)
	}
	if m.MaxBufferedKeys < 1 {
		p.add("metering.max_buffered_keys", "must be at least 1, got %d", m.MaxBufferedKeys)
	}
	if m.LeaseTTL < time.Second || m.LeaseTTL > 10*time.Minute {
		p.add("metering.lease_ttl", "must be between 1s and 10m, got %s", m.LeaseTTL)
	}
	if m.RateLimit < 1 || m.RateLimit > 10000 {
		p.add("metering.rate_limit", "must be 1..10000 Stripe calls per second, got %d", m.RateLimit)
	}
	if d := m.ReconcileInterval; d != 0 && (d < 5*time.Minute || d > 24*time.Hour) {
		p.add("metering.reconcile_interval", "must be 0 (off) or between 5m and 24h, got %s", d)
	} else if d != 0 && m.Window > 0 && time.Hour%m.Window != 0 {
		p.add("metering.reconcile_interval", "needs a metering.window that divides an hour (usage is reconciled by the hour), got window %s", m.Window)
	}
	if m.MaxUnitsPerRequest < 1 || m.MaxUnitsPerRequest > MaxUnitsBound {
		p.add("metering.max_units_per_request", "must be 1..%d units, got %d", int64(MaxUnitsBound), m.MaxUnitsPerRequest)
	}
	if q := m.Quota; q.LeaseTTL < time.Second || q.LeaseTTL > 10*time.Minute {
		p.add("metering.quota.lease_ttl", "must be between 1s and 10m, got %s", q.LeaseTTL)
	} else if q.SyncInterval <= 0 || q.SyncInterval > q.LeaseTTL/3 {
		p.add("metering.quota.sync_interval", "must be positive and at most a third of metering.quota.lease_ttl (%s), so a share is renewed before it expires; got %s", q.LeaseTTL/3, q.SyncInterval)
	}
	for i, st := range m.CountedStatuses {
		if !statusRe.MatchString(st) {
			p.add(fmt.Sprintf("metering.counted_statuses[%d]", i), "%q is not a status class (2xx) or code (304)", st)
		}
	}
	for _, name := range sortedNames(m.Meters) {
		meter, path := m.Meters[name], "metering.meters."+name
		if !identRe.MatchString(name) {
			p.add(path, "meter name %q must be letters, digits, '_', '-' or '.'", name)
		}
		switch meter.Mode {
		case ModeMeterEvents, "":
			if meter.EventName == "" {
				p.add(path+".event_name", "required: the event_name of the Stripe Billing Meter")
			}
			if meter.Price != "" {
				p.add(path+".price", "only used with mode: usage_records")
			}
		case ModeUsageRecords:
			if !strings.HasPrefix(meter.Price, "price_") && !strings.HasPrefix(meter.Price, "plan_") {
				p.add(path+".price", "required with mode: usage_records: the metered Stripe price id (price_...)")
			}
		default:
			p.add(path+".mode", "%q is not meter_events or usage_records", meter.Mode)
		}
	}
}

func (c *Config) validateRoutes(p *problems) {
	if len(c.Routes) == 0 {
		p.add("routes", "no routes: every request would be denied with 403 no_route")
	}
	for i, r := range c.Routes {
		path := fmt.Sprintf("routes[%d]", i)
		if r == nil {
			p.add(path, "empty route")
			continue
		}
		if r.Path == "" {
			p.add(path+".path", "required")
		} else if err := PatternChecker(r.Path); err != nil {
			p.add(path+".path", "%v", err)
		}
		for j, m := range r.Methods {
			if !methodRe.MatchString(m) {
				p.add(fmt.Sprintf("%s.methods[%d]", path, j), "%q is not an upper-case HTTP method", m)
			}
		}
		if !slices.Contains([]string{"", AuthRequired, AuthOptional, AuthNone}, r.Auth) {
			p.add(path+".auth", "%q is not required, optional or none", r.Auth)
		}
		if r.AuthMode() != AuthRequired && r.Require.Any() {
			p.add(path+".require", "needs auth: required: an anonymous caller has no subscription to check")
		}
		if r.AuthMode() != AuthRequired && r.Meter != "" {
			p.add(path+".meter", "needs auth: required: usage cannot be billed to an anonymous caller")
		}
		for j, pl := range r.Require.Plans {
			if _, ok := c.Plans[pl]; !ok {
				p.add(fmt.Sprintf("%s.require.plans[%d]", path, j), "no plan %q in plans", pl)
			}
		}
		for j, f := range r.Require.Features {
			if !identRe.MatchString(f) {
				p.add(fmt.Sprintf("%s.require.features[%d]", path, j), "%q is not a valid feature name", f)
			}
		}
		if r.Meter != "" {
			if _, ok := c.Metering.Meters[r.Meter]; !ok {
				p.add(path+".meter", "no meter %q in metering.meters", r.Meter)
			}
		}
		switch {
		case r.Reserve < 0 || r.Reserve > c.Metering.MaxUnitsPerRequest:
			p.add(path+".reserve", "must be 0..metering.max_units_per_request (%d) units, got %d", c.Metering.MaxUnitsPerRequest, r.Reserve)
		case r.Reserve > 0 && r.Meter == "":
			p.add(path+".reserve", "needs meter: a route without a meter has no quota to reserve")
		}
	}
}

func (c *Config) validateEndpoints(p *problems) {
	for _, e := range [][2]string{{"webhook.path", c.Webhook.Path}, {"billing.prefix", c.Billing.Prefix}} {
		path, v := e[0], e[1]
		if v == "" && path == "billing.prefix" {
			continue // the billing API is off
		}
		if !strings.HasPrefix(v, "/") || PatternChecker(v) != nil || strings.Contains(v, "*") || v == "/" {
			p.add(path, "%q must be a plain absolute path such as /_tollgate/...", v)
		}
	}
	c.validateBilling(p)
	c.validateCORS(p)
	if c.Webhook.ForwardURL != "" {
		if u, err := url.Parse(c.Webhook.ForwardURL); err != nil || (u.Scheme != "http" && u.Scheme != "https") || u.Host == "" {
			p.add("webhook.forward_url", "%q is not an http(s) URL", c.Webhook.ForwardURL)
		}
		if !strings.HasPrefix(c.Webhook.ForwardSecret, "whsec_") {
			p.add("webhook.forward_secret", "required with forward_url: a whsec_... secret the app verifies forwarded events with")
		}
	}
	c.validateWebhook(p)
}

func (c *Config) validateWebhook(p *problems) {
	w := c.Webhook
	for _, f := range []struct {
		path     string
		d        time.Duration
		min, max time.Duration
		why      string
	}{
		{"webhook.process_timeout", w.ProcessTimeout, time.Second, 5 * time.Minute, ""},
		{"webhook.dedup_ttl", w.DedupTTL, 72 * time.Hour, 8760 * time.Hour,
			" (Stripe retries a delivery for up to 3 days: a shorter memory lets a late retry take effect twice)"},
		{"webhook.forward_timeout", w.ForwardTimeout, time.Second, 5 * time.Minute, ""},
	} {
		if f.d < f.min || f.d > f.max {
			p.add(f.path, "must be between %s and %s, got %s%s", f.min, f.max, f.d, f.why)
		}
	}
	if w.ForwardMaxAttempts < 1 || w.ForwardMaxAttempts > 100 {
		p.add("webhook.forward_max_attempts", "must be 1..100, got %d", w.ForwardMaxAttempts)
	}
	if w.DeliveryLogSize < 0 || w.DeliveryLogSize > 1000000 {
		p.add("webhook.delivery_log_size", "must be 0 (off) to 1000000, got %d", w.DeliveryLogSize)
	}
	if w.DeliveryLogAge < time.Hour || w.DeliveryLogAge > 720*time.Hour {
		p.add("webhook.delivery_log_age", "must be between 1h and 720h, got %s", w.DeliveryLogAge)
	}
}

func sortedNames[V any](m map[string]V) []string {
	names := make([]string, 0, len(m))
	for n := range m {
		names = append(names, n)
	}
	slices.Sort(names)
	return names
}

func (c *Config) validateBilling(p *problems) {
	b := c.Billing
	if b.TrialDays < 0 || b.TrialDays > 730 {
		p.add("billing.trial_days", "must be 0..730, got %d", b.TrialDays)
	}
	if b.RateLimit < 0 || b.RateLimit > 10000 {
		p.add("billing.rate_limit", "must be 0..10000 calls per user and minute (0 = no limit), got %d", b.RateLimit)
	}
	switch b.UpgradeProration {
	case "always_invoice", "create_prorations":
	default:
		p.add("billing.upgrade_proration", "%q is not always_invoice or create_prorations", b.UpgradeProration)
	}
	c.validateSeatBilling(p)
	if !c.BillingServed() {
		return
	}
	for _, e := range [][2]string{{"billing.success_url", b.SuccessURL}, {"billing.cancel_url", b.CancelURL}, {"billing.return_url", b.ReturnURL}} {
		path, v := e[0], e[1]
		if v == "" {
			p.add(path, "required while the billing API is served (stripe.secret_key is set); set billing.prefix: \"\" to turn the API off")
			continue
		}
		if u, err := url.Parse(v); err != nil || (u.Scheme != "http" && u.Scheme != "https") || u.Host == "" {
			p.add(path, "%q is not an absolute http(s) URL", v)
		}
	}
}

func (c *Config) validateCORS(p *problems) {
	co := c.CORS
	for i, o := range co.AllowedOrigins {
		path := fmt.Sprintf("cors.allowed_origins[%d]", i)
		if o == "*" {
			if co.AllowCredentials {
				p.add(path, `"*" cannot be used with allow_credentials: true (browsers refuse it, and it would let any site act with your users' cookies); list the origins`)
			}
			continue
		}
		u, err := url.Parse(strings.Replace(o, "*", "x", 1))
		if err != nil || (u.Scheme != "http" && u.Scheme != "https") || u.Host == "" || u.Path != "" || u.RawQuery != "" ||
			strings.Count(o, "*") > 1 || strings.HasSuffix(o, "/") {
			p.add(path, "%q is not an origin such as https://app.example.com (scheme and host, no path), https://*.example.com or \"*\"", o)
		}
	}
	for i, m := range co.AllowedMethods {
		if m == "" || strings.ToUpper(m) != m || strings.ContainsAny(m, " \t,") {
			p.add(fmt.Sprintf("cors.allowed_methods[%d]", i), "%q is not an upper-case method such as GET", m)
		}
	}
	if co.MaxAge < 0 || co.MaxAge > 24*time.Hour {
		p.add("cors.max_age", "must be 0..24h, got %s", co.MaxAge)
	}
}
