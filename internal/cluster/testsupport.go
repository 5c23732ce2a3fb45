package cluster

import (
	"context"
	"os"
	"sync"
	"testing"
	"time"

	"github.com/pgha/pgha/internal/pgtest"
)

var (
	testNodeProcOnce sync.Once
	testNodeProcDir  string
	testNodeProcPath string
	testNodeProcErr  error
)

// NodeProcForTest returns the nodeproc program for a test, built with
// [BuildNodeProc] once per process into a temporary directory
// ([RemoveNodeProcForTest] removes it; call it from TestMain after the tests
// ran). When the build fails the test is skipped, or fails when the CI
// environment variable is set: a CI run that silently skips the process
// tests proves nothing.
func NodeProcForTest(t testing.TB) string {
	t.Helper()
	testNodeProcOnce.Do(func() {
		testNodeProcDir, testNodeProcErr = os.MkdirTemp("", "pgha-nodeproc-")
		if testNodeProcErr != nil {
			return
		}
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Minute)
		defer cancel()
		testNodeProcPath, testNodeProcErr = BuildNodeProc(ctx, testNodeProcDir)
	})
	if testNodeProcErr != nil {
		if os.Getenv("CI") == "" {
			t.Skipf("cannot build nodeproc: %v", testNodeProcErr)
		}
		t.Fatalf("cannot build nodeproc: %v", testNodeProcErr)
	}
	return testNodeProcPath
}

// RemoveNodeProcForTest removes the directory [NodeProcForTest] built nodeproc
// into, if it did. TestMain calls it once every test has run.
func RemoveNodeProcForTest() {
	if testNodeProcDir != "" {
		_ = os.RemoveAll(testNodeProcDir)
	}
}

// NewForTest starts a cluster for a test and closes it when the test ends
// (a failing Close fails the test). An empty opts.BinDir becomes
// pgtest.BinDir (so the test is skipped under -short, or without
// PostgreSQL outside CI), and a nil opts.Logger logs to the test's log
// (pgtest.Logger, named "harness"). When New fails the test fails.
func NewForTest(ctx context.Context, t testing.TB, opts Options) *Cluster {
	t.Helper()
	if opts.BinDir == "" {
		opts.BinDir = pgtest.BinDir(t)
	}
	if opts.Logger == nil {
		opts.Logger = pgtest.Logger(t, "harness")
	}
	c, err := New(ctx, opts)
	if err != nil {
		t.Fatalf("cluster: %v", err)
	}
	t.Cleanup(func() {
		if err := c.Close(); err != nil {
			t.Errorf("closing the cluster: %v", err)
		}
	})
	return c
}
