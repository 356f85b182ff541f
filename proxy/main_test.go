package proxy

import (
	"testing"

	"go.uber.org/goleak"
)

// No test may leave a goroutine behind (servers, connections, workers).
func TestMain(m *testing.M) {
	goleak.VerifyTestMain(m)
}
