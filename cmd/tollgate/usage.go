package main

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"log/slog"
	"text/tabwriter"
	"time"

	"github.com/tollgate-dev/tollgate/meter"
)

// usageTimeout bounds the whole read: `tollgate usage` is an operator's
// command and must not hang on an unreachable Redis.
const usageTimeout = 30 * time.Second

const usageHelp = `usage: tollgate usage -config FILE [-json] | -reconcile [-period current|previous] [-json]

Without -reconcile: prints, per customer and meter, the units counted
(written to Redis), reported (accepted by Stripe), pending (waiting to be
reported) and parked (refused by Stripe for good), then every parked report.

With -reconcile: compares, per customer and meter, the units tollgate counted
and reported in a calendar month (UTC) with Stripe's own meter event
summaries for the same range, and prints the drift:
stripe - (counted - pending). -period current (the default) is this month
up to the last whole hour at least 5 minutes ago (Stripe's summaries trail by
a few minutes); previous is the whole month before. Exit status 1 on any
drift or on a row that could not be compared; progress goes to stderr.

Examples:
  tollgate usage -config tollgate.yaml
  tollgate usage -config tollgate.yaml -json | jq '.rows[] | select(.parked > 0)'
  tollgate usage -config tollgate.yaml -reconcile
  tollgate usage -config tollgate.yaml -reconcile -period previous -json
`

// usageCmd prints counted, pending, reported and parked units per customer
// and meter, read from Redis, then every parked report with its reason;
// with -reconcile it compares them with Stripe (reconcileCmd).
func usageCmd(ctx context.Context, args []string, stdout, stderr io.Writer) int {
	fs := newFlags("usage")
	path := fs.String("config", "", "path to the YAML configuration file")
	asJSON := fs.Bool("json", false, "print one JSON object instead of tables")
	reconcile := fs.Bool("reconcile", false, "compare with Stripe's meter event summaries; exit 1 on any drift")
	period := fs.String("period", "", "with -reconcile: current (this month, the default) or previous (last month)")
	if code, ok := parse(fs, args, stdout, stderr); !ok {
		return code
	}
	if fs.NArg() > 0 {
		return usageError(stderr, fs, "unexpected argument %q", fs.Arg(0))
	}
	switch {
	case *path == "":
		return usageError(stderr, fs, "-config FILE is required")
	case *period != "" && !*reconcile:
		return usageError(stderr, fs, "%s", fmt.Sprintf("-period %q needs -reconcile", *period))
	case *period != "" && *period != meter.PeriodCurrent && *period != meter.PeriodPrevious:
		return usageError(stderr, fs, "%s", fmt.Sprintf("-period %q: must be current or previous", *period))
	}
	cfg, err := loadConfig(*path)
	if err != nil {
		printProblems(stderr, *path, err)
		return 1
	}
	if *reconcile {
		if *period == "" {
			*period = meter.PeriodCurrent
		}
		return reconcileCmd(ctx, cfg, *path, *period, *asJSON, stdout, stderr)
	}
	ctx, cancel := context.WithTimeout(ctx, usageTimeout)
	defer cancel()
	st, ok := openRedis(ctx, "usage", cfg.Redis, slog.New(slog.NewTextHandler(io.Discard, nil)), stderr)
	if !ok {
		return 1
	}
	defer st.Close()
	u, err := meter.ReadUsage(ctx, st.Client, st.Keys)
	if err != nil {
		fmt.Fprintf(stderr, "tollgate usage: %v\n", err)
		return 1
	}
	if *asJSON {
		printUsageJSON(stdout, u)
		return 0
	}
	printUsage(stdout, u)
	return 0
}

// printUsageJSON prints {"rows": [...], "parked": [...]}.
func printUsageJSON(w io.Writer, u meter.Usage) {
	type row struct {
		Customer string `json:"customer"`
		Meter    string `json:"meter"`
		Counted  int64  `json:"counted"`
		Reported int64  `json:"reported"`
		Pending  int64  `json:"pending"`
		Parked   int64  `json:"parked"`
	}
	out := struct {
		Rows   []row                `json:"rows"`
		Parked []meter.ParkedReport `json:"parked"`
	}{Rows: []row{}, Parked: u.Parked}
	for _, r := range u.Rows {
		out.Rows = append(out.Rows, row{r.Customer, r.Meter, r.Counted, r.Reported, r.Pending, r.Parked})
	}
	if out.Parked == nil {
		out.Parked = []meter.ParkedReport{}
	}
	b, _ := json.MarshalIndent(out, "", "  ")
	fmt.Fprintln(w, string(b))
}

func printUsage(w io.Writer, u meter.Usage) {
	if len(u.Rows) == 0 {
		fmt.Fprintln(w, "no usage counted yet")
		return
	}
	cw, mw := len("CUSTOMER"), len("METER")
	var total meter.Row
	for _, r := range u.Rows {
		cw, mw = max(cw, len(r.Customer)), max(mw, len(r.Meter))
		total.Counted += r.Counted
		total.Reported += r.Reported
		total.Pending += r.Pending
		total.Parked += r.Parked
	}
	fmt.Fprintf(w, "%-*s  %-*s  %12s  %12s  %12s  %12s\n", cw, "CUSTOMER", mw, "METER", "COUNTED", "REPORTED", "PENDING", "PARKED")
	for _, r := range append(u.Rows, total) {
		if r.Customer == "" {
			r.Customer = "TOTAL"
		}
		fmt.Fprintf(w, "%-*s  %-*s  %12d  %12d  %12d  %12d\n", cw, r.Customer, mw, r.Meter, r.Counted, r.Reported, r.Pending, r.Parked)
	}
	fmt.Fprintln(w, "\ncounted: in Redis (each replica's last flush interval of counts may still be on its way);")
	fmt.Fprintln(w, "pending: waiting to be reported; reported: accepted by Stripe; parked: refused by Stripe for good, not retried.")
	if len(u.Parked) == 0 {
		return
	}
	fmt.Fprintln(w, "\nParked reports:")
	tw := tabwriter.NewWriter(w, 0, 0, 2, ' ', 0)
	fmt.Fprintln(tw, "CUSTOMER\tMETER\tWINDOW\tUNITS\tREASON\tIDENTIFIER\tMESSAGE")
	for _, p := range u.Parked {
		fmt.Fprintf(tw, "%s\t%s\t%s\t%d\t%s\t%s\t%s\n", p.Customer, p.Meter,
			time.UnixMilli(p.Window).UTC().Format(time.RFC3339), p.Units, p.Reason, p.Identifier, oneLine(p.Message, 120))
	}
	tw.Flush()
}

// oneLine shortens a message for a table cell.
func oneLine(s string, n int) string {
	out := []rune{}
	for _, r := range s {
		if r == '\n' || r == '\t' {
			r = ' '
		}
		out = append(out, r)
		if len(out) == n {
			return string(out) + "…"
		}
	}
	return string(out)
}
