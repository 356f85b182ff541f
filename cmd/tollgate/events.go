package main

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"text/tabwriter"
	"time"

	"github.com/tollgate-dev/tollgate/config"
	"github.com/tollgate-dev/tollgate/entitlements"
	"github.com/tollgate-dev/tollgate/webhook"
)

const eventsHelp = `usage: tollgate events -config FILE [-customer cus_...] [-type T] [-failed] [-since D] [-limit N] [-json]

Lists recent webhook deliveries from the delivery log in Redis, newest first:
when each arrived, the event, its type and customer, what it did (processed,
duplicate, ignored, stale, invalid, failed, busy), the error, and which
replica handled it. Events that tollgate replay applied are listed too
(source replay), and so are operator grants and revokes from the grant
audit (source grant, types grant.created and grant.revoked: who, what, why).
The log keeps webhook.delivery_log_size deliveries (default 10000) for
webhook.delivery_log_age (default 168h).

Examples:
  tollgate events -config tollgate.yaml
  tollgate events -config tollgate.yaml -customer cus_123 -since 24h
  tollgate events -config tollgate.yaml -failed -since 2h
  tollgate events -config tollgate.yaml -type 'grant.*' -customer cus_123
  tollgate events -config tollgate.yaml -type 'customer.subscription.*' -limit 0 -json | jq .
`

// eventsTimeout bounds the whole read.
const eventsTimeout = 30 * time.Second

// eventsCmd prints the delivery log.
func eventsCmd(ctx context.Context, args []string, stdout, stderr io.Writer) int {
	fs := newFlags("events")
	path := fs.String("config", "", "path to the YAML configuration file")
	customer := fs.String("customer", "", "only deliveries about this Stripe customer (cus_...)")
	typ := fs.String("type", "", "only this event type, or a prefix ending in .* (customer.subscription.*)")
	failed := fs.Bool("failed", false, "only deliveries that did not take effect (failed, busy, invalid)")
	since := fs.String("since", "", "only deliveries since then: a duration back (30m, 24h, 7d) or a time (2024-05-01, RFC 3339)")
	limit := fs.Int("limit", 50, "at most this many, newest first; 0 = all")
	asJSON := fs.Bool("json", false, "one JSON object per delivery per line (JSON Lines) instead of a table")
	if code, ok := parse(fs, args, stdout, stderr); !ok {
		return code
	}
	if fs.NArg() > 0 {
		return usageError(stderr, fs, "unexpected argument %q", fs.Arg(0))
	}
	f := webhook.Filter{Customer: *customer, Type: *typ, Failed: *failed, Limit: *limit}
	switch {
	case *path == "":
		return usageError(stderr, fs, "-config FILE is required")
	case *customer != "" && !customerIDRe.MatchString(*customer):
		return usageError(stderr, fs, "%s", fmt.Sprintf("-customer %q is not a Stripe customer id (cus_...)", *customer))
	case *limit < 0:
		return usageError(stderr, fs, "%s", fmt.Sprintf("-limit %d: must be 0 (all) or more", *limit))
	}
	if *since != "" {
		t, err := parseSince(*since, time.Now())
		if err != nil {
			return usageError(stderr, fs, "%s", "-since "+err.Error())
		}
		f.Since = t
	}
	cfg, err := loadConfig(*path)
	if err != nil {
		printProblems(stderr, *path, err)
		return 1
	}
	if cfg.Webhook.DeliveryLogSize == 0 {
		fmt.Fprintf(stderr, "tollgate events: webhook.delivery_log_size is 0 in %s: the delivery log is off\n", *path)
		return 1
	}
	ctx, cancel := context.WithTimeout(ctx, eventsTimeout)
	defer cancel()
	st, ok := openRedis(ctx, "events", cfg.Redis, newLogger(config.Log{Level: "warn", Format: "text"}, stderr), stderr)
	if !ok {
		return 1
	}
	defer st.Close()
	log := webhook.NewDeliveryLog(st.Client, st.Keys, cfg.Webhook.DeliveryLogSize, cfg.Webhook.DeliveryLogAge)
	deliveries, err := log.List(ctx, f)
	if err != nil {
		fmt.Fprintf(stderr, "tollgate events: %v\n", err)
		return 1
	}
	grants, err := grantEntries(ctx, entitlements.NewRedisStore(st), f)
	if err != nil {
		fmt.Fprintf(stderr, "tollgate events: %v\n", err)
		return 1
	}
	list := mergeEntries(deliveries, grants, *limit)
	if *asJSON {
		enc := json.NewEncoder(stdout)
		for _, e := range list {
			if err := enc.Encode(e); err != nil {
				return 1
			}
		}
		return 0
	}
	printEntries(stdout, list, cfg.Webhook, *limit)
	return 0
}

func printEntries(w io.Writer, list []eventEntry, cfg config.Webhook, limit int) {
	if len(list) == 0 {
		fmt.Fprintln(w, "no deliveries or grant changes match")
		return
	}
	tw := tabwriter.NewWriter(w, 0, 0, 2, ' ', 0)
	fmt.Fprintln(tw, "TIME\tEVENT\tTYPE\tCUSTOMER\tRESULT\tSOURCE\tREPLICA\tMS\tERROR / DETAIL")
	grants := 0
	for _, e := range list {
		ms := fmt.Sprintf("%.1f", e.DurationMS)
		if e.Grant != nil {
			grants++
			ms = "-"
		}
		fmt.Fprintf(tw, "%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\n", e.At.UTC().Format(time.RFC3339), dash(e.Event), e.Type,
			dash(e.Customer), dash(e.Result), e.Source, dash(e.Replica), ms, e.detail())
	}
	tw.Flush()
	more := ""
	if len(list) == limit {
		more = " (there may be more: -limit 0 lists all)"
	}
	counts, audit := fmt.Sprintf("%d deliveries", len(list)-grants), ""
	if grants > 0 {
		counts += fmt.Sprintf(" and %d grant changes", grants)
		audit = fmt.Sprintf("; the grant audit keeps the last %d changes", entitlements.AuditSize)
	}
	fmt.Fprintf(w, "\n%s, newest first%s; the log keeps the last %d for %s%s.\n",
		counts, more, cfg.DeliveryLogSize, cfg.DeliveryLogAge, audit)
}

func dash(s string) string {
	if s == "" {
		return "-"
	}
	return s
}
