package worker_test

import (
	"testing"

	"go.uber.org/goleak"
)

// TestMain checks that no test leaves a goroutine behind: Run must end
// every goroutine it started, and Exec every one os/exec started.
func TestMain(m *testing.M) {
	goleak.VerifyTestMain(m)
}
