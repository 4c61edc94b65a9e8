package gateway

import (
	"testing"

	"go.uber.org/goleak"
)

// Every gateway started by a test is closed by it; goleak proves that Close
// waits for all reader, drain, flush and room goroutines.
func TestMain(m *testing.M) {
	goleak.VerifyTestMain(m)
}
