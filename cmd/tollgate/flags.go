package main

import (
	"errors"
	"fmt"
	"strconv"
	"strings"
	"time"
)

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
