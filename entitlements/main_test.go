package entitlements

import (
	"testing"

	"go.uber.org/goleak"
)

// The gate's change feed, its refresh and the reconciler are background
// workers: each must stop with its context, leaving no goroutine behind.
func TestMain(m *testing.M) {
	goleak.VerifyTestMain(m)
}
