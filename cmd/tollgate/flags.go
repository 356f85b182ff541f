package main

import (
	"errors"
	"flag"
	"fmt"
	"io"
	"strconv"
	"strings"
	"time"
)

// parseFlags parses an operator command's flags. -h prints help (what
// the command does, its flags and examples) to stdout: ok is false and
// code 0. A bad flag prints the problem and the usage line to stderr:
// code 2.
func parseFlags(fs *flag.FlagSet, args []string, help string, stdout, stderr io.Writer) (code int, ok bool) {
	fs.SetOutput(io.Discard)
	fs.Usage = func() {}
	err := fs.Parse(args)
	switch {
	case errors.Is(err, flag.ErrHelp):
		fs.SetOutput(stdout)
		fmt.Fprint(stdout, help)
		fmt.Fprintln(stdout, "\nFlags:")
		fs.PrintDefaults()
		return 0, false
	case err != nil:
		return usageError(stderr, fs.Name(), help, err.Error()), false
	case fs.NArg() > 0:
		return usageError(stderr, fs.Name(), help, fmt.Sprintf("unexpected argument %q", fs.Arg(0))), false
	}
	return 0, true
}

// usageError prints a flag problem and the command's usage line (the
// first line of its help); it returns exit code 2.
func usageError(stderr io.Writer, name, help, problem string) int {
	line, _, _ := strings.Cut(help, "\n")
	fmt.Fprintf(stderr, "tollgate %s: %s\n%s\n(tollgate %s -h for help)\n", name, problem, line, name)
	return 2
}

// parseSince reads a -since value: a duration back from now ("90m",
// "24h", "7d"), a date ("2024-05-01", midnight UTC) or an RFC 3339 time.
func parseSince(s string, now time.Time) (time.Time, error) {
	if s == "" {
		return time.Time{}, errors.New("required")
	}
	if days, ok := strings.CutSuffix(s, "d"); ok {
		if n, err := strconv.Atoi(days); err == nil && n >= 0 && n <= 3650 {
			return now.Add(-time.Duration(n) * 24 * time.Hour), nil
		}
	}
	if d, err := time.ParseDuration(s); err == nil {
		if d < 0 {
			return time.Time{}, fmt.Errorf("%q is negative: give how far back from now", s)
		}
		return now.Add(-d), nil
	}
	for _, layout := range []string{time.DateOnly, time.RFC3339} {
		if t, err := time.Parse(layout, s); err == nil {
			if t.After(now) {
				return time.Time{}, fmt.Errorf("%q is in the future", s)
			}
			return t, nil
		}
	}
	return time.Time{}, fmt.Errorf("%q is neither a duration back from now (30m, 24h, 7d) nor a time (2024-05-01, 2024-05-01T12:00:00Z)", s)
}
