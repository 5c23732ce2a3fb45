package dcstest_test

import (
	"testing"

	"github.com/pgha/pgha/dcs/dcstest"
)

// A Store implementation proves itself by passing the suite; the factory
// returns a Harness on a fresh cluster for each subtest (see the memdcs and
// etcddcs tests for complete harnesses).
func Example() {
	_ = func(t *testing.T, newHarness func(*testing.T) dcstest.Harness) {
		dcstest.Run(t, func(t *testing.T) dcstest.Harness { return newHarness(t) })
	}
}
