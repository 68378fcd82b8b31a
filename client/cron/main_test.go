package cron_test

import (
	"testing"

	"go.uber.org/goleak"
)

// TestMain checks that no test leaves a goroutine behind: Run must have
// ended its lanes, and closed clients and brokers theirs.
func TestMain(m *testing.M) {
	goleak.VerifyTestMain(m)
}
