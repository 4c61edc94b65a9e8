package fleet

import (
	"testing"

	"go.uber.org/goleak"
)

// Every View a test starts is closed by it: goleak proves that Close waits
// for the goroutine that reads the beats.
func TestMain(m *testing.M) {
	goleak.VerifyTestMain(m)
}
