package main

import (
	"encoding/json"
	"fmt"
	"io"
	"slices"
	"strconv"
	"strings"
	"text/tabwriter"
	"time"

	"github.com/tollgate-dev/tollgate/entitlements"
)

// grantJSON is a grant as -json prints it: the stored grant and whether
// it applies now.
type grantJSON struct {
	entitlements.Grant
	Active bool `json:"active"`
}

func grantView(g entitlements.Grant, now time.Time) grantJSON {
	return grantJSON{Grant: g, Active: g.Active(now)}
}

func writeGrantJSON(stdout, stderr io.Writer, v any) int {
	enc := json.NewEncoder(stdout)
	enc.SetIndent("", "  ")
	if err := enc.Encode(v); err != nil {
		fmt.Fprintf(stderr, "tollgate grant: %v\n", err)
		return 1
	}
	return 0
}

// describeGrant says what a grant adds, in one line.
func describeGrant(g entitlements.Grant) string {
	var parts []string
	if g.Plan != "" {
		parts = append(parts, "plan "+g.Plan)
	}
	if len(g.Features) > 0 {
		parts = append(parts, "features "+strings.Join(g.Features, ","))
	}
	if l := limitsText(g.Limits); l != "" {
		parts = append(parts, "limits "+l)
	}
	if g.Until.IsZero() {
		parts = append(parts, "until revoked")
	} else {
		parts = append(parts, "until "+g.Until.UTC().Format(time.RFC3339))
	}
	return strings.Join(parts, "; ")
}

func limitsText(l map[string]int64) string {
	meters := make([]string, 0, len(l))
	for m := range l {
		meters = append(meters, m)
	}
	slices.Sort(meters)
	for i, m := range meters {
		meters[i] = m + "=" + strconv.FormatInt(l[m], 10)
	}
	return strings.Join(meters, ",")
}

func printGrants(w io.Writer, gs []entitlements.Grant, now time.Time) {
	if len(gs) == 0 {
		fmt.Fprintln(w, "no grants")
		return
	}
	tw := tabwriter.NewWriter(w, 0, 0, 2, ' ', 0)
	fmt.Fprintln(tw, "ID\tCUSTOMER\tPLAN\tFEATURES\tLIMITS\tUNTIL\tSTATE\tBY\tCREATED\tREASON")
	active := 0
	for _, g := range gs {
		until, state := "revoked only", "active"
		if !g.Until.IsZero() {
			until = g.Until.UTC().Format(time.RFC3339)
		}
		if !g.Active(now) {
			state = "expired"
		} else {
			active++
		}
		fmt.Fprintf(tw, "%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\n", g.ID, g.Customer, dash(g.Plan),
			dash(strings.Join(g.Features, ",")), dash(limitsText(g.Limits)), until, state, dash(g.By),
			g.Created.UTC().Format(time.RFC3339), g.Reason)
	}
	tw.Flush()
	fmt.Fprintf(w, "\n%d grants, %d active; expired grants are dropped 30 days after they end (the audit keeps them).\n", len(gs), active)
}

func printAudit(w io.Writer, evs []entitlements.GrantEvent) {
	if len(evs) == 0 {
		fmt.Fprintln(w, "no grants or revokes recorded")
		return
	}
	tw := tabwriter.NewWriter(w, 0, 0, 2, ' ', 0)
	fmt.Fprintln(tw, "TIME\tTYPE\tGRANT\tCUSTOMER\tBY\tHOST\tWHAT\tREASON")
	for _, e := range evs {
		fmt.Fprintf(tw, "%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\n", e.At.UTC().Format(time.RFC3339), e.Type, e.Grant.ID,
			e.Grant.Customer, dash(e.By), dash(e.Host), describeGrant(e.Grant), dash(e.Reason))
	}
	tw.Flush()
	fmt.Fprintf(w, "\n%d entries, newest first; the audit keeps the last %d.\n", len(evs), entitlements.AuditSize)
}
