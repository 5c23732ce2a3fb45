// Package dcstest is the conformance suite every dcs.Store implementation
// passes. Run it from a test of the implementation:
//
//	func TestConformance(t *testing.T) {
//		dcstest.Run(t, func(t *testing.T) dcstest.Harness { return newHarness(t) })
//	}
//
// Each subtest asks the factory for a fresh Harness: a new, empty cluster
// (its own scope) on which it creates stores for as many nodes as it needs.
//
// # What it checks
//
// CAS semantics of /config, /failover and /sync; that exactly one of several
// concurrent AcquireLeader calls wins; that a lease expiring (by TTL or by
// Harness.ExpireLease) removes the member and leader keys attached to it; that
// a stale leader's writes fail with dcs.ErrNotLeader and change nothing; that
// a TTL change keeps leadership; that the watch delivers every change in
// order, with transaction boundaries, and survives Harness.Interrupt; that
// values written by someone else decode to the documented defaults with
// errors in Cluster.DecodeErrors, never a panic; read-only clients, canceled
// contexts and Close.
//
// Test support; not covered by compatibility promises.
package dcstest
