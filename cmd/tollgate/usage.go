package main

import (
	"context"
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

// usageCmd prints counted, pending, reported and parked units per customer
// and meter, read from Redis, then every parked report with its reason.
func usageCmd(ctx context.Context, args []string, stdout, stderr io.Writer) int {
	cfg, _, code := configArg("usage", args, stdout, stderr)
	if cfg == nil {
		return code
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
	printUsage(stdout, u)
	return 0
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
