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
	"github.com/tollgate-dev/tollgate/internal/metrics"
	"github.com/tollgate-dev/tollgate/internal/stripeapi"
	"github.com/tollgate-dev/tollgate/webhook"
)

const replayHelp = `usage: tollgate replay -config FILE -since D [-dry-run] [-json] [-rate N]

Lists Stripe's events created since D (the event types tollgate handles) and
applies every one the webhook ledger has not taken yet: a webhook that was
lost on the way, or one Stripe gave up on, takes effect now. It uses the
same exactly-once ledger as the webhook endpoint, so an event that arrives
by webhook while it runs takes effect once, and running it again is always
safe. Applied events are recorded in the delivery log (tollgate events, source
replay). Stripe's events list goes back 30 days. Progress goes to stderr.

Exit status: 0 when every listed event is applied or was already; 1 when
Stripe could not be listed to the end or some event could not be applied
(run again: nothing is applied twice); 2 for a usage error.

Examples:
  tollgate replay -config tollgate.yaml -since 24h -dry-run
  tollgate replay -config tollgate.yaml -since 2024-05-01
  tollgate replay -config tollgate.yaml -since 3d -json | jq '.results'
`

// replayCmd replays Stripe's events list through the webhook ledger.
func replayCmd(ctx context.Context, args []string, stdout, stderr io.Writer) int {
	fs := newFlags("replay")
	path := fs.String("config", "", "path to the YAML configuration file")
	sinceFlag := fs.String("since", "", "replay events created since then: a duration back (30m, 24h, 7d) or a time (2024-05-01, RFC 3339); required")
	dryRun := fs.Bool("dry-run", false, "only list what would be applied; change nothing")
	asJSON := fs.Bool("json", false, "print the report as one JSON object")
	rateFlag := fs.Float64("rate", webhook.DefaultReplayRate, "events applied per second (each costs a few Stripe reads)")
	if code, ok := parse(fs, args, stdout, stderr); !ok {
		return code
	}
	if fs.NArg() > 0 {
		return usageError(stderr, fs, "unexpected argument %q", fs.Arg(0))
	}
	now := time.Now()
	since, err := parseSince(*sinceFlag, now)
	switch {
	case *path == "":
		return usageError(stderr, fs, "-config FILE is required")
	case err != nil:
		return usageError(stderr, fs, "%s", "-since "+err.Error())
	case *rateFlag <= 0 || *rateFlag > 1000:
		return usageError(stderr, fs, "%s", fmt.Sprintf("-rate %v: must be more than 0 and at most 1000", *rateFlag))
	}
	cfg, err := loadConfig(*path)
	if err != nil {
		printProblems(stderr, *path, err)
		return 1
	}
	if cfg.Stripe.SecretKey == "" {
		fmt.Fprintf(stderr, "tollgate replay: %s: stripe.secret_key is required to list events and re-read objects from Stripe\n", *path)
		return 1
	}
	if oldest := now.Add(-webhook.EventsRetention); since.Before(oldest) {
		fmt.Fprintf(stderr, "replay: Stripe's events list goes back 30 days: events created before %s cannot be replayed\n",
			oldest.UTC().Format(time.RFC3339))
	}
	log := newLogger(config.Log{Level: "warn", Format: "text"}, stderr)
	st, ok := openRedis(ctx, "replay", cfg.Redis, log, stderr)
	if !ok {
		return 1
	}
	defer st.Close()
	api := webhook.NewStripeAPI(stripeapi.New(cfg.Stripe, metrics.New(), log))
	o := webhook.ReplayOptions{
		Options: webhook.Options{Store: entitlements.NewRedisStore(st), Ledger: webhook.NewRedisLedger(st.Client, st.Keys),
			Stripe: api, ProcessTimeout: cfg.Webhook.ProcessTimeout, DedupTTL: cfg.Webhook.DedupTTL, Logger: log},
		Events: api, Rate: *rateFlag,
		Progress: func(p webhook.ReplayProgress) {
			fmt.Fprintf(stderr, "replay: page %d: %d events listed, %d applied, %d failed\n", p.Pages, p.Listed, p.Applied, p.Failed)
		},
	}
	if cfg.Webhook.DeliveryLogSize > 0 {
		o.Deliveries = webhook.NewDeliveryLog(st.Client, st.Keys, cfg.Webhook.DeliveryLogSize, cfg.Webhook.DeliveryLogAge)
	}
	if cfg.Webhook.ForwardURL != "" && len(cfg.Stripe.WebhookSecrets) > 0 {
		// A replayed event reaches the app as its webhook would have.
		o.Queue = webhook.NewQueue(st.Client, st.Keys)
	}
	r, err := webhook.NewReplayer(o)
	if err != nil {
		fmt.Fprintf(stderr, "tollgate replay: %v\n", err)
		return 1
	}
	what := "replay"
	if *dryRun {
		what = "replay (dry run)"
	}
	fmt.Fprintf(stderr, "%s: listing Stripe's events since %s...\n", what, since.UTC().Format(time.RFC3339))
	rep, runErr := r.Run(ctx, since, *dryRun)
	if *asJSON {
		printReplayJSON(stdout, rep, runErr)
	} else {
		printReplay(stdout, rep)
	}
	if runErr != nil {
		fmt.Fprintf(stderr, "tollgate replay: %v\n%d page(s) listed and %d event(s) applied before that; run it again to go on (nothing is applied twice)\n",
			runErr, rep.Pages, rep.Results["processed"])
		return 1
	}
	if n := rep.Failures(); n > 0 {
		fmt.Fprintf(stderr, "tollgate replay: %d event(s) could not be applied (see the list, or tollgate events -failed); run it again to retry them\n", n)
		return 1
	}
	return 0
}

// replayResultOrder is the order results are printed in.
var replayResultOrder = []string{"processed", "would_apply", "duplicate", "ignored", "busy", "failed", "invalid"}

func printReplay(w io.Writer, rep webhook.ReplayReport) {
	verb := "applied"
	if rep.DryRun {
		verb = "would be applied (dry run: nothing was changed)"
	}
	n := rep.Results["processed"] + rep.Results["would_apply"]
	fmt.Fprintf(w, "%d handled events created since %s listed in %d page(s): %d %s", rep.Listed,
		rep.Since.Format(time.RFC3339), rep.Pages, n, verb)
	for _, r := range replayResultOrder[2:] {
		if c := rep.Results[r]; c > 0 {
			fmt.Fprintf(w, ", %d %s", c, r)
		}
	}
	fmt.Fprintln(w)
	if len(rep.Events) == 0 {
		return
	}
	fmt.Fprintln(w)
	tw := tabwriter.NewWriter(w, 0, 0, 2, ' ', 0)
	fmt.Fprintln(tw, "CREATED\tEVENT\tTYPE\tCUSTOMER\tRESULT\tERROR")
	for _, e := range rep.Events {
		fmt.Fprintf(tw, "%s\t%s\t%s\t%s\t%s\t%s\n", e.Created.Format(time.RFC3339), e.Event, e.Type, dash(e.Customer),
			e.Result, oneLine(e.Error, 100))
	}
	tw.Flush()
	if rep.Results["busy"] > 0 {
		fmt.Fprintln(w, "\nbusy: a webhook delivery was processing the event at that moment; it takes effect through that delivery.")
	}
}

// printReplayJSON prints the report as one object; a run cut short
// carries its error.
func printReplayJSON(w io.Writer, rep webhook.ReplayReport, runErr error) {
	out := struct {
		webhook.ReplayReport
		Complete bool   `json:"complete"`
		Error    string `json:"error,omitempty"`
	}{ReplayReport: rep, Complete: runErr == nil}
	if out.Events == nil {
		out.Events = []webhook.ReplayedEvent{}
	}
	if runErr != nil {
		out.Error = runErr.Error()
	}
	b, _ := json.MarshalIndent(out, "", "  ")
	fmt.Fprintln(w, string(b))
}
