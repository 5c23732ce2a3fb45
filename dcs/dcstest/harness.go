package dcstest

import (
	"testing"
	"time"

	"github.com/pgha/pgha/dcs"
)

// Harness gives the suite stores on one fresh cluster and the means to act on
// the store behind them as an outside party would.
type Harness interface {
	// Path is the cluster's path.
	Path() dcs.Path
	// NewStore returns a Store acting for node name on this cluster. name ""
	// is a read-only client. The harness closes it at the end of the test.
	NewStore(t *testing.T, name string) dcs.Store
	// WriteRaw writes value at the relative key with no lease, as another tool
	// (etcdctl, an older Patroni) would.
	WriteRaw(t *testing.T, key string, value []byte)
	// ReadRaw returns the raw key as stored (ok false when absent).
	ReadRaw(t *testing.T, key string) (kv dcs.KeyValue, ok bool)
	// ExpireLease makes the store expire the lease of the named node now, as
	// if its TTL had run out.
	ExpireLease(t *testing.T, name string)
	// Interrupt cuts the named node's connections to the store and lets it
	// reconnect: in-flight calls may fail with dcs.ErrUnavailable, and its watch
	// must resume without losing or repeating a change.
	Interrupt(t *testing.T, name string)
	// Advance lets d of store time pass (a fake clock moves; a real store
	// waits).
	Advance(t *testing.T, d time.Duration)
	// MinTTL is the smallest lease TTL the store honours.
	MinTTL() time.Duration
}
