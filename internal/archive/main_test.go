package archive_test

import (
	"testing"

	"go.uber.org/goleak"
)

// Every component a test starts is stopped by it: goleak proves that its
// Close (or Stop) waits for every goroutine it started.
func TestMain(m *testing.M) {
	goleak.VerifyTestMain(m)
}
