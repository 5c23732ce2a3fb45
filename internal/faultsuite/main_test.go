package faultsuite

import (
	"flag"
	"os"
	"testing"

	"go.uber.org/goleak"
)

// slow turns on the slow DCS-side scenarios (see doc.go).
var slow = flag.Bool("faultsuite.slow", false, "also run the slow DCS-side fault scenarios (sync and strict variants, D3, E2, D9, E1) and every slow workload scenario")

type mainRunner struct{ m *testing.M }

// Run runs the tests, then removes the programs the suite built (see
// helpers_test.go).
func (r mainRunner) Run() int {
	defer cleanupBuilds()
	return r.m.Run()
}

// TestMain checks that no test leaves a goroutine behind and removes the
// suite's builds.
func TestMain(m *testing.M) {
	if os.Getenv("PGHA_FAULTSUITE_NOLEAK") != "" {
		os.Exit(mainRunner{m}.Run())
	}
	goleak.VerifyTestMain(mainRunner{m})
}
