package testrig

import (
	"errors"
	"testing"
	"time"
)

// pollInterval is how often WaitFor and the start-up probes re-check a
// condition.
const pollInterval = 10 * time.Millisecond

// WaitFor polls cond until it returns nil and fails the test with cond's last
// error if that has not happened within timeout.
func WaitFor(tb testing.TB, timeout time.Duration, cond func() error) {
	tb.Helper()
	if err := poll(timeout, cond); err != nil {
		tb.Fatalf("testrig: condition not met within %v: %v", timeout, err)
	}
}

// WaitEvery is WaitFor polling every interval instead of every 10 ms, for a
// condition whose check costs the system under test (a rate-limited API, a
// page that calls one).
func WaitEvery(tb testing.TB, timeout, interval time.Duration, cond func() error) {
	tb.Helper()
	if err := pollEvery(timeout, interval, cond); err != nil {
		tb.Fatalf("testrig: condition not met within %v: %v", timeout, err)
	}
}

// poll calls cond every pollInterval until it returns nil, returns an error
// marked permanent, or timeout has passed; it returns cond's last error.
func poll(timeout time.Duration, cond func() error) error {
	return pollEvery(timeout, pollInterval, cond)
}

func pollEvery(timeout, interval time.Duration, cond func() error) error {
	deadline := time.Now().Add(timeout)
	ticker := time.NewTicker(interval)
	defer ticker.Stop()
	for {
		err := cond()
		if err == nil {
			return nil
		}
		if isPermanent(err) || time.Now().After(deadline) {
			return err
		}
		<-ticker.C
	}
}

// permanentError stops poll early: the condition can no longer become true.
type permanentError struct{ err error }

func (e permanentError) Error() string { return e.err.Error() }
func (e permanentError) Unwrap() error { return e.err }

func permanent(err error) error { return permanentError{err} }

func isPermanent(err error) bool {
	var p permanentError
	return errors.As(err, &p)
}

// Eventually polls cond until it holds, failing the test if it has not
// within 20 s: the way to wait for a background goroutine or a process,
// instead of sleeping.
func Eventually(tb testing.TB, what string, cond func() bool) {
	tb.Helper()
	err := poll(20*time.Second, func() error {
		if cond() {
			return nil
		}
		return errors.New("not yet")
	})
	if err != nil {
		tb.Fatalf("testrig: timed out waiting for %s", what)
	}
}

// MonthNoon is noon (UTC) on the 1st of a month that has at least an hour
// behind it: this month's, or the last one's early on the 1st. Usage
// counted at 10:30 that day is inside the range `tollgate usage
// -reconcile` checks at that noon (up to 11:00), and it lies at most about
// a month back, so Stripe (and the double) accept meter events
// timestamped then (35 days).
func MonthNoon() time.Time {
	now := time.Now().UTC()
	noon := time.Date(now.Year(), now.Month(), 1, 12, 0, 0, 0, time.UTC)
	if noon.After(now.Add(-time.Hour)) {
		noon = noon.AddDate(0, -1, 0)
	}
	return noon
}
