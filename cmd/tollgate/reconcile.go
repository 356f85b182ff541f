package main

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"maps"
	"slices"
	"strings"
	"time"

	"github.com/tollgate-dev/tollgate/config"
	"github.com/tollgate-dev/tollgate/internal/metrics"
	"github.com/tollgate-dev/tollgate/internal/stripeapi"
	"github.com/tollgate-dev/tollgate/meter"
)

// reconcileNow is the clock that places the period (tests move it).
var reconcileNow = time.Now

// reconcileCmd compares counted and reported usage with Stripe's meter
// event summaries: `tollgate usage -reconcile`.
func reconcileCmd(ctx context.Context, cfg *config.Config, path, period string, asJSON bool, stdout, stderr io.Writer) int {
	switch {
	case cfg.Stripe.SecretKey == "":
		fmt.Fprintf(stderr, "tollgate usage: %s: stripe.secret_key is required to read Stripe's meter event summaries\n", path)
		return 1
	case len(cfg.Metering.Meters) == 0:
		fmt.Fprintf(stderr, "tollgate usage: %s: metering.meters is empty: nothing to reconcile\n", path)
		return 1
	}
	log := newLogger(config.Log{Level: "warn", Format: "text"}, stderr)
	st, ok := openRedis(ctx, "usage", cfg.Redis, log, stderr)
	if !ok {
		return 1
	}
	defer st.Close()
	lastPrint := time.Now()
	rec := &meter.Reconciler{Redis: st.Client, Keys: st.Keys, Config: cfg.Metering,
		Summaries: meter.NewStripeSummaries(stripeapi.New(cfg.Stripe, metrics.New(), log)), Log: log, Now: reconcileNow,
		Progress: func(done, total int) {
			if done == total || time.Since(lastPrint) >= 2*time.Second {
				lastPrint = time.Now()
				fmt.Fprintf(stderr, "reconcile: %d/%d customer-meter pairs compared\n", done, total)
			}
		},
	}
	from, to, _ := meter.Period(period, reconcileNow())
	fmt.Fprintf(stderr, "reconcile: reading usage from %s to %s...\n", from.Format(time.RFC3339), to.Format(time.RFC3339))
	rep, err := rec.Run(ctx, period)
	if err != nil {
		fmt.Fprintf(stderr, "tollgate usage -reconcile: %v\n", err)
		return 1
	}
	if asJSON {
		out := struct {
			meter.ReconcileReport
			OK bool `json:"ok"`
		}{rep, rep.OK()}
		b, _ := json.MarshalIndent(out, "", "  ")
		fmt.Fprintln(stdout, string(b))
	} else {
		printReconcile(stdout, rep)
	}
	if !rep.OK() {
		fmt.Fprintf(stderr, "tollgate usage -reconcile: %d customer-meter pair(s) drift from Stripe, %d could not be compared\n",
			rep.Drifting, rep.Problems)
		return 1
	}
	return 0
}

func printReconcile(w io.Writer, rep meter.ReconcileReport) {
	fmt.Fprintf(w, "usage reconciliation, %s month: windows from %s to %s (UTC)\n", rep.Period,
		rep.From.Format(time.RFC3339), rep.To.Format(time.RFC3339))
	if len(rep.Rows) == 0 {
		fmt.Fprintln(w, "no usage counted yet")
		return
	}
	cw, mw := len("CUSTOMER"), len("METER")
	for _, r := range rep.Rows {
		cw, mw = max(cw, len(r.Customer)), max(mw, len(r.Meter))
	}
	fmt.Fprintf(w, "%-*s  %-*s  %10s  %10s  %10s  %10s  %10s  %10s\n", cw, "CUSTOMER", mw, "METER",
		"COUNTED", "PENDING", "PARKED", "REPORTED", "STRIPE", "DRIFT")
	for _, r := range rep.Rows {
		stripe, drift := "-", "-"
		if r.Stripe != nil {
			stripe, drift = fmt.Sprint(*r.Stripe), fmt.Sprint(r.Drift)
			if r.Drift > 0 {
				drift = "+" + drift
			}
		}
		fmt.Fprintf(w, "%-*s  %-*s  %10d  %10d  %10d  %10d  %10s  %10s\n", cw, r.Customer, mw, r.Meter,
			r.Counted, r.Pending, r.Parked, r.Reported, stripe, drift)
	}
	for _, r := range rep.Rows {
		if r.Note != "" {
			fmt.Fprintf(w, "  %s %s: %s\n", r.Customer, r.Meter, r.Note)
		}
	}
	var units []string
	for _, m := range slices.Sorted(maps.Keys(rep.DriftUnits)) {
		if n := rep.DriftUnits[m]; n > 0 {
			units = append(units, fmt.Sprintf("%s %d", m, n))
		}
	}
	summary := "no drift"
	if len(units) > 0 {
		summary = fmt.Sprintf("%d drifting (%s units)", rep.Drifting, strings.Join(units, ", "))
	}
	fmt.Fprintf(w, "\n%d customer-meter pairs, %d compared with Stripe: %s, %d could not be compared.\n",
		len(rep.Rows), rep.Compared, summary, rep.Problems)
	fmt.Fprintln(w, "drift = stripe - (counted - pending): positive, Stripe holds units tollgate did not report (billed twice?);")
	fmt.Fprintln(w, "negative, units tollgate counted are missing in Stripe (parked: see tollgate usage; or lost).")
}
