package main

import (
	"bufio"
	"errors"
	"fmt"
	"io"
	"os"
	"slices"
	"strconv"
	"strings"
)

// runReport turns the script's measurement lines (key=value pairs, one
// measurement a line) into the markdown tables of docs/performance.md.
// Ratios are paired: each round's value over the base target's value in
// the same round, so that drift between rounds cancels out.
func runReport(args []string, stdout io.Writer) error {
	fs := newFlags("report")
	rounds := fs.String("rounds", "", "closed-loop (wrk) measurements: a run's file, or several runs' comma-separated")
	cg := fs.String("callgrind", "", "callgrind measurements (likewise)")
	ol := fs.String("openloop", "", "open-loop measurements (likewise)")
	base := fs.String("base", "bare", "the target ratios are taken against")
	if err := fs.Parse(args); err != nil {
		return err
	}
	var rs, cs, ols []record
	for _, f := range []struct {
		paths string
		to    *[]record
	}{{*rounds, &rs}, {*cg, &cs}, {*ol, &ols}} {
		recs, err := readRuns(f.paths)
		if err != nil {
			return err
		}
		*f.to = recs
	}
	if len(rs) > 0 || len(cs) > 0 {
		closedTable(stdout, rs, cs, *base)
	}
	if len(ols) > 0 {
		fmt.Fprintln(stdout)
		openTable(stdout, ols, *base)
	}
	return nil
}

// record is one measurement line.
type record map[string]string

func (r record) num(k string) float64 {
	v, err := strconv.ParseFloat(r[k], 64)
	if err != nil {
		return 0
	}
	return v
}

func readRecords(path string) ([]record, error) {
	f, err := os.Open(path)
	if errors.Is(err, os.ErrNotExist) {
		return nil, nil
	}
	if err != nil {
		return nil, err
	}
	defer f.Close()
	var out []record
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		r := record{}
		for _, kv := range strings.Fields(sc.Text()) {
			if k, v, ok := strings.Cut(kv, "="); ok {
				r[k] = v
			}
		}
		if r["target"] != "" {
			out = append(out, r)
		}
	}
	return out, sc.Err()
}

// readRuns reads the records of comma-separated files, one run's each,
// numbering each run's rounds on from the last run's, so that rounds pair
// within their own run.
func readRuns(paths string) ([]record, error) {
	var out []record
	after := 0
	for _, path := range strings.Split(paths, ",") {
		if path == "" {
			continue
		}
		recs, err := readRecords(path)
		if err != nil {
			return nil, err
		}
		last := after
		for _, r := range recs {
			if n, err := strconv.Atoi(r["round"]); err == nil {
				r["round"] = strconv.Itoa(after + n)
				last = max(last, after+n)
			}
		}
		out, after = append(out, recs...), last
	}
	return out, nil
}

// targets lists the targets in order of first appearance.
func targets(recs ...[]record) []string {
	var out []string
	for _, rs := range recs {
		for _, r := range rs {
			if !slices.Contains(out, r["target"]) {
				out = append(out, r["target"])
			}
		}
	}
	return out
}

func median(v []float64) float64 {
	if len(v) == 0 {
		return 0
	}
	s := slices.Clone(v)
	slices.Sort(s)
	if n := len(s); n%2 == 0 {
		return (s[n/2-1] + s[n/2]) / 2
	}
	return s[len(s)/2]
}

// paired returns, per round in which both ran, target's key over base's.
func paired(rs []record, target, base, key string) []float64 {
	baseBy := map[string]float64{}
	for _, r := range rs {
		if r["target"] == base {
			baseBy[r["round"]] = r.num(key)
		}
	}
	var out []float64
	for _, r := range rs {
		if b := baseBy[r["round"]]; r["target"] == target && b > 0 {
			out = append(out, r.num(key)/b)
		}
	}
	return out
}

// differences returns, per round, target's key minus base's.
func differences(rs []record, target, base, key string) []float64 {
	baseBy := map[string]float64{}
	has := map[string]bool{}
	for _, r := range rs {
		if r["target"] == base {
			baseBy[r["round"]], has[r["round"]] = r.num(key), true
		}
	}
	var out []float64
	for _, r := range rs {
		if r["target"] == target && has[r["round"]] {
			out = append(out, r.num(key)-baseBy[r["round"]])
		}
	}
	return out
}

func values(rs []record, target, key string) []float64 {
	var out []float64
	for _, r := range rs {
		if r["target"] == target {
			out = append(out, r.num(key))
		}
	}
	return out
}

func closedTable(w io.Writer, rs, cs []record, base string) {
	fmt.Fprintln(w, "| target | paired rps × "+base+" (median) | min–max | rps (median) | p50 ms | p99 ms | CPU µs/request | RSS MiB | instructions/request (callgrind) | × "+base+" | run spread |")
	fmt.Fprintln(w, "|---|---|---|---|---|---|---|---|---|---|---|")
	baseIr := meanIr(cs, base)
	for _, t := range targets(rs, cs) {
		row := []string{t, "—", "—", "—", "—", "—", "—", "—", "—", "—", "—"}
		if ratios := paired(rs, t, base, "rps"); len(ratios) > 0 {
			row[1] = fmt.Sprintf("%.2f", median(ratios))
			row[2] = fmt.Sprintf("%.2f–%.2f", slices.Min(ratios), slices.Max(ratios))
		}
		if v := values(rs, t, "rps"); len(v) > 0 {
			row[3] = fmt.Sprintf("%.0f", median(v))
			row[4] = fmt.Sprintf("%.2f", median(values(rs, t, "p50_ms")))
			row[5] = fmt.Sprintf("%.2f", median(values(rs, t, "p99_ms")))
			row[6] = fmt.Sprintf("%.1f", median(values(rs, t, "cpu_us_per_req")))
			row[7] = fmt.Sprintf("%.0f", slices.Max(values(rs, t, "rss_mb")))
		}
		if ir := irPerRequest(cs, t); len(ir) > 0 {
			m := meanIr(cs, t)
			row[8] = fmt.Sprintf("%.1f k", m/1000)
			if baseIr > 0 {
				row[9] = fmt.Sprintf("%.2f", m/baseIr)
			}
			row[10] = fmt.Sprintf("%.2f%% (%d runs)", 100*(slices.Max(ir)-slices.Min(ir))/m, len(ir))
		}
		fmt.Fprintln(w, "| "+strings.Join(row, " | ")+" |")
	}
}

// meanIr is the target's instructions over all its measured requests.
// Not a median of the runs: what varies between runs is mostly how many
// garbage collections fell into each, and the runs together hold every
// collection of the whole measurement but at most one at its ends.
func meanIr(cs []record, target string) float64 {
	var ir, n float64
	for _, r := range cs {
		if r["target"] == target {
			ir, n = ir+r.num("ir"), n+r.num("n")
		}
	}
	if n == 0 {
		return 0
	}
	return ir / n
}

func irPerRequest(cs []record, target string) []float64 {
	var out []float64
	for _, r := range cs {
		if r["target"] == target && r.num("n") > 0 {
			out = append(out, r.num("ir")/r.num("n"))
		}
	}
	return out
}

func openTable(w io.Writer, ols []record, base string) {
	rate := ""
	if len(ols) > 0 {
		rate = ols[0]["rate"]
	}
	fmt.Fprintf(w, "Open loop at %s requests/s (latency from each request's scheduled send time; medians over rounds):\n\n", rate)
	fmt.Fprintln(w, "| target | p50 µs | p90 µs | p99 µs | p99.9 µs | added p50 over "+base+" µs | added p99 over "+base+" µs |")
	fmt.Fprintln(w, "|---|---|---|---|---|---|---|")
	for _, t := range targets(ols) {
		row := []string{t,
			fmt.Sprintf("%.0f", median(values(ols, t, "p50_us"))),
			fmt.Sprintf("%.0f", median(values(ols, t, "p90_us"))),
			fmt.Sprintf("%.0f", median(values(ols, t, "p99_us"))),
			fmt.Sprintf("%.0f", median(values(ols, t, "p999_us"))),
			"—", "—"}
		if t != base {
			if d := differences(ols, t, base, "p50_us"); len(d) > 0 {
				row[5] = fmt.Sprintf("%+.0f", median(d))
				row[6] = fmt.Sprintf("%+.0f", median(differences(ols, t, base, "p99_us")))
			}
		}
		fmt.Fprintln(w, "| "+strings.Join(row, " | ")+" |")
	}
}
