package billing

import (
	"testing"

	"go.uber.org/goleak"
)

// The billing API starts no worker; its price cache's loads and the
// gate it uses must not leave goroutines behind either.
func TestMain(m *testing.M) {
	goleak.VerifyTestMain(m)
}
