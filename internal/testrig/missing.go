package testrig

import (
	"os"
	"testing"
)

// Environment variables that turn a missing external binary from a fallback
// or skip into a test failure (CI sets them so a broken install is noticed).
const (
	EnvRequireRedis      = "TOLLGATE_TEST_REQUIRE_REDIS"
	EnvRequireStripeMock = "TOLLGATE_TEST_REQUIRE_STRIPE_MOCK"
	EnvRequirePrometheus = "TOLLGATE_TEST_REQUIRE_PROMETHEUS"
)

// Install hints printed when a binary is missing.
const (
	redisInstallHint      = "install it with: apt-get install redis-server"
	stripeMockInstallHint = "install it with: go install github.com/stripe/stripe-mock@v0.203.0"
	prometheusInstallHint = "install it with: apt-get install prometheus"
)

// required reports whether env var name is set to "1".
func required(name string) bool {
	return os.Getenv(name) == "1"
}

// missingStripeMock handles an absent stripe-mock: a failure when
// EnvRequireStripeMock is set, a skip otherwise.
func missingStripeMock(tb testing.TB, why error) {
	tb.Helper()
	if required(EnvRequireStripeMock) {
		tb.Fatalf("testrig: stripe-mock not found (%v) and %s=1; %s", why, EnvRequireStripeMock, stripeMockInstallHint)
	}
	tb.Skipf("testrig: stripe-mock not found (%v); %s", why, stripeMockInstallHint)
}
