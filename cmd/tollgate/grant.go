package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"os"
	"slices"
	"strconv"
	"strings"
	"time"
	"unicode"

	"github.com/tollgate-dev/tollgate/config"
	"github.com/tollgate-dev/tollgate/entitlements"
)

// grantTimeout bounds one grant command against Redis.
const grantTimeout = 30 * time.Second

// maxReason bounds -reason: an audit note, not a document.
const maxReason = 500

// maxGrantLimit is the largest -limits value: usage totals are checked
// against 2^53-1, so a larger limit could never be reached anyway.
const maxGrantLimit = 1<<53 - 1

// grantFlags is the command line of tollgate grant.
type grantFlags struct {
	fs                        *flag.FlagSet
	config, customer          string
	features, limits, plan    string
	until, reason, by, revoke string
	list, audit, json         bool
	set                       map[string]bool // flags given on the command line
	createOnly                []string        // flags that only make sense when granting
	now                       time.Time
	// What checkGrant parsed.
	parsedLimits   map[string]int64
	parsedFeatures []string
	parsedUntil    time.Time
}

func newGrantFlags() *grantFlags {
	f := &grantFlags{fs: newFlags("grant")}
	fs := f.fs
	fs.StringVar(&f.config, "config", "", "path to the YAML configuration file (required)")
	fs.StringVar(&f.customer, "customer", "", "the Stripe customer (cus_...) to grant to; with -list or -audit, only this customer's")
	fs.StringVar(&f.features, "features", "", "features to add, comma separated (a,b)")
	fs.StringVar(&f.limits, "limits", "", "meter limits to raise, comma separated meter=N (api_calls=50000); never lowers a plan's limit")
	fs.StringVar(&f.plan, "plan", "", "a configured plan to entitle as if subscribed (status active)")
	fs.StringVar(&f.until, "until", "", "when the grant ends: an RFC 3339 time (2027-01-31T00:00:00Z) or a duration from now (720h); default: until revoked")
	fs.StringVar(&f.reason, "reason", "", "why (required to grant; recorded with -revoke): kept in the audit and shown in GET subscription")
	fs.StringVar(&f.by, "by", "", "who is granting or revoking, for the audit (default $USER)")
	fs.BoolVar(&f.list, "list", false, "list grants (all customers, or -customer's)")
	fs.StringVar(&f.revoke, "revoke", "", "revoke the grant with this id (gr_...)")
	fs.BoolVar(&f.audit, "audit", false, "print the audit of grants and revokes, newest first (all customers, or -customer's)")
	fs.BoolVar(&f.json, "json", false, "print JSON instead of text")
	f.createOnly = []string{"features", "limits", "plan", "until"}
	return f
}

// grantCmd creates, lists, revokes and audits operator grants.
func grantCmd(ctx context.Context, args []string, stdout, stderr io.Writer) int {
	f := newGrantFlags()
	if code, ok := parse(f.fs, args, stdout, stderr); !ok {
		return code
	}
	f.set = map[string]bool{}
	f.fs.Visit(func(fl *flag.Flag) { f.set[fl.Name] = true })
	f.now = time.Now()
	if msg := f.checkLine(); msg != "" {
		return usageError(stderr, f.fs, "%s", msg)
	}
	cfg, err := loadConfig(f.config)
	if err != nil {
		printProblems(stderr, f.config, err)
		return 1
	}
	if f.creating() {
		if msg := f.checkGrant(cfg); msg != "" {
			return usageError(stderr, f.fs, "%s", msg)
		}
	}
	ctx, cancel := context.WithTimeout(ctx, grantTimeout)
	defer cancel()
	st, ok := openRedis(ctx, "grant", cfg.Redis, slog.New(slog.NewTextHandler(io.Discard, nil)), stderr)
	if !ok {
		return 1
	}
	defer st.Close()
	store := entitlements.NewRedisStore(st)
	switch {
	case f.list:
		return f.runList(ctx, store, stdout, stderr)
	case f.audit:
		return f.runAudit(ctx, store, stdout, stderr)
	case f.revoke != "":
		return f.runRevoke(ctx, store, stdout, stderr)
	}
	return f.runCreate(ctx, store, stdout, stderr)
}

func (f *grantFlags) creating() bool { return !f.list && !f.audit && f.revoke == "" }

// checkLine checks what needs no configuration; it returns what is wrong.
func (f *grantFlags) checkLine() string {
	modes := 0
	for _, on := range []bool{f.list, f.audit, f.revoke != ""} {
		if on {
			modes++
		}
	}
	switch {
	case f.config == "":
		return "-config FILE is required"
	case f.fs.NArg() > 0:
		return fmt.Sprintf("unexpected argument %q", f.fs.Arg(0))
	case modes > 1:
		return "-list, -audit and -revoke exclude each other"
	case f.customer != "" && !customerIDRe.MatchString(f.customer):
		return fmt.Sprintf("-customer %q is not a Stripe customer id (cus_...)", f.customer)
	}
	if !f.creating() {
		for _, name := range f.createOnly {
			if f.set[name] {
				return fmt.Sprintf("-%s only applies when granting (not with -list, -audit or -revoke)", name)
			}
		}
	}
	switch {
	case f.revoke != "" && !entitlements.ValidGrantID(f.revoke):
		return fmt.Sprintf("-revoke %q is not a grant id (gr_...)", f.revoke)
	case f.revoke != "" && f.set["customer"]:
		return "-revoke takes only the grant id: the grant knows its customer"
	case (f.list || f.audit) && (f.set["reason"] || f.set["by"]):
		return "-reason and -by are recorded when granting or revoking, not with -list or -audit"
	case f.revoke != "" || f.list || f.audit:
		return f.checkWho(false)
	case f.customer == "":
		return "-customer cus_... is required to grant (or -list, -revoke ID, -audit)"
	case f.features == "" && f.limits == "" && f.plan == "":
		return "a grant needs -features, -limits or -plan: it has nothing to add"
	}
	return f.checkWho(true)
}

// checkWho checks -reason (required when granting) and -by.
func (f *grantFlags) checkWho(reasonRequired bool) string {
	f.reason = strings.TrimSpace(f.reason)
	if f.by == "" {
		f.by = os.Getenv("USER")
	}
	f.by = strings.TrimSpace(f.by)
	switch {
	case reasonRequired && f.reason == "":
		return "-reason is required: say why (it is kept in the audit and shown to the app)"
	case len(f.reason) > maxReason:
		return fmt.Sprintf("-reason is %d bytes; at most %d", len(f.reason), maxReason)
	case strings.ContainsFunc(f.reason, unicode.IsControl):
		return fmt.Sprintf("-reason %q holds a control character (a newline?)", f.reason)
	case (f.revoke != "" || reasonRequired) && f.by == "":
		return "-by NAME is required: $USER is not set"
	case len(f.by) > 100 || strings.ContainsFunc(f.by, unicode.IsControl):
		return fmt.Sprintf("-by %q must be at most 100 characters without control characters", f.by)
	}
	return ""
}

// checkGrant checks a new grant against the configuration.
func (f *grantFlags) checkGrant(cfg *config.Config) string {
	if f.plan != "" {
		if _, ok := cfg.Plans[f.plan]; !ok {
			return fmt.Sprintf("-plan %q is not a configured plan (plans: %s)", f.plan, namesOf(cfg.Plans))
		}
	}
	for _, name := range strings.Split(f.features, ",") {
		name = strings.TrimSpace(name)
		switch {
		case f.features == "":
		case !config.ValidName(name):
			return fmt.Sprintf("-features: %q is not a valid feature name (letters, digits, '_', '-', '.')", name)
		case !slices.Contains(f.parsedFeatures, name):
			f.parsedFeatures = append(f.parsedFeatures, name)
		}
	}
	if msg := f.parseLimits(cfg); msg != "" {
		return msg
	}
	return f.parseUntil()
}

func (f *grantFlags) parseLimits(cfg *config.Config) string {
	if f.limits == "" {
		return ""
	}
	f.parsedLimits = map[string]int64{}
	for _, item := range strings.Split(f.limits, ",") {
		m, v, ok := strings.Cut(strings.TrimSpace(item), "=")
		if !ok {
			return fmt.Sprintf("-limits: %q is not meter=N", item)
		}
		if _, known := cfg.Metering.Meters[m]; !known {
			return fmt.Sprintf("-limits: %q is not a configured meter (meters: %s)", m, namesOf(cfg.Metering.Meters))
		}
		n, err := strconv.ParseInt(v, 10, 64)
		if err != nil || n < 1 || n > maxGrantLimit {
			return fmt.Sprintf("-limits: %s=%q must be a whole number from 1 to %d", m, v, int64(maxGrantLimit))
		}
		if _, dup := f.parsedLimits[m]; dup {
			return fmt.Sprintf("-limits: meter %q given twice", m)
		}
		f.parsedLimits[m] = n
	}
	return ""
}

// parseUntil reads -until: an RFC 3339 time, or a duration from now.
func (f *grantFlags) parseUntil() string {
	if f.until == "" {
		return ""
	}
	if d, err := time.ParseDuration(f.until); err == nil {
		if d <= 0 {
			return fmt.Sprintf("-until %q: a duration must be positive (the grant would end before it starts)", f.until)
		}
		f.parsedUntil = f.now.Add(d)
		return ""
	}
	t, err := time.Parse(time.RFC3339, f.until)
	if err != nil {
		return fmt.Sprintf("-until %q is neither an RFC 3339 time (2027-01-31T00:00:00Z) nor a duration (720h)", f.until)
	}
	if !t.After(f.now) {
		return fmt.Sprintf("-until %q is in the past", f.until)
	}
	f.parsedUntil = t
	return ""
}

func (f *grantFlags) runCreate(ctx context.Context, s *entitlements.RedisStore, stdout, stderr io.Writer) int {
	g := entitlements.Grant{ID: entitlements.NewGrantID(), Customer: f.customer, Features: f.parsedFeatures,
		Limits: f.parsedLimits, Plan: f.plan, Until: f.parsedUntil.UTC(), Reason: f.reason, By: f.by, Created: f.now.UTC()}
	if f.parsedUntil.IsZero() {
		g.Until = time.Time{}
	}
	if err := s.AddGrant(ctx, g); err != nil {
		fmt.Fprintf(stderr, "tollgate grant: %v\n", err)
		if errors.Is(err, entitlements.ErrTooManyGrants) {
			return 2
		}
		return 1
	}
	if f.json {
		return writeGrantJSON(stdout, stderr, grantView(g, f.now))
	}
	fmt.Fprintf(stdout, "granted %s to %s: %s (by %s: %s); running replicas apply it within 1 s\n",
		g.ID, g.Customer, describeGrant(g), g.By, g.Reason)
	return 0
}

func (f *grantFlags) runRevoke(ctx context.Context, s *entitlements.RedisStore, stdout, stderr io.Writer) int {
	g, err := s.RevokeGrant(ctx, f.revoke, f.by, f.reason, f.now)
	if err != nil {
		fmt.Fprintf(stderr, "tollgate grant: %v\n", err)
		return 1
	}
	if f.json {
		return writeGrantJSON(stdout, stderr, grantView(g, f.now))
	}
	fmt.Fprintf(stdout, "revoked %s of %s: %s; running replicas stop applying it within 1 s\n", g.ID, g.Customer, describeGrant(g))
	return 0
}

func (f *grantFlags) runList(ctx context.Context, s *entitlements.RedisStore, stdout, stderr io.Writer) int {
	gs, err := s.ListGrants(ctx, f.customer)
	if err != nil {
		fmt.Fprintf(stderr, "tollgate grant: %v\n", err)
		return 1
	}
	if f.json {
		out := make([]grantJSON, 0, len(gs))
		for _, g := range gs {
			out = append(out, grantView(g, f.now))
		}
		return writeGrantJSON(stdout, stderr, out)
	}
	printGrants(stdout, gs, f.now)
	return 0
}

func (f *grantFlags) runAudit(ctx context.Context, s *entitlements.RedisStore, stdout, stderr io.Writer) int {
	evs, err := s.GrantAudit(ctx, f.customer, 0)
	if err != nil {
		fmt.Fprintf(stderr, "tollgate grant: %v\n", err)
		return 1
	}
	if f.json {
		if evs == nil {
			evs = []entitlements.GrantEvent{}
		}
		return writeGrantJSON(stdout, stderr, evs)
	}
	printAudit(stdout, evs)
	return 0
}

func namesOf[V any](m map[string]V) string {
	names := make([]string, 0, len(m))
	for n := range m {
		names = append(names, n)
	}
	if len(names) == 0 {
		return "none configured"
	}
	slices.Sort(names)
	return strings.Join(names, ", ")
}
