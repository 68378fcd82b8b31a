package client_test

import (
	"testing"

	"go.uber.org/goleak"
)

// TestMain checks that no test leaves a goroutine behind: a closed client
// (and broker) must have ended all of its own.
func TestMain(m *testing.M) {
	goleak.VerifyTestMain(m)
}
