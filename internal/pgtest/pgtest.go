// Package pgtest runs real PostgreSQL instances for tests: it finds the
// binaries (skipping under -short, failing when CI is set and they are
// missing), makes per-test directories the postgres OS user can reach when
// tests run as root, picks free ports, routes logs to t.Log, and stops every
// instance by pid when the test ends.
//
// Test support; not covered by compatibility promises.
package pgtest

import (
	"bytes"
	"context"
	"errors"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/hashicorp/go-hclog"

	"github.com/pgha/pgha/internal/freeport"
	"github.com/pgha/pgha/pg"
)

// Passwords the test configurations use.
const (
	SuperuserPassword   = "su-secret"
	ReplicationPassword = "repl:secret" // a ':' exercises pgpass escaping
	RewindPassword      = "rewind'secret"
	RewindUser          = "rewinder"
)

var (
	binOnce sync.Once
	binDir  string
	binErr  error
)

// BinDir returns the PostgreSQL binary directory ([pg.FindBinDir]). Under
// -short the test is skipped. When the binaries are missing the test is
// skipped, or fails when the CI environment variable is set: a CI run that
// silently skips the integration tests proves nothing.
func BinDir(t testing.TB) string {
	t.Helper()
	if testing.Short() {
		t.Skip("pgtest: integration test needs PostgreSQL; skipped under -short")
	}
	binOnce.Do(func() { binDir, binErr = pg.FindBinDir(context.Background()) })
	if binErr != nil {
		if os.Getenv("CI") != "" {
			t.Fatalf("pgtest: PostgreSQL binaries are required in CI: %v", binErr)
		}
		t.Skipf("pgtest: PostgreSQL binaries not found, skipping: %v", binErr)
	}
	return binDir
}

// Dir returns a fresh directory for the test, removed when it ends. When
// the test runs as root, Dir opens the per-test directories t.TempDir
// creates (mode 0700, owned by root) to traversal by others (mode 0711), so
// the postgres OS user can reach a data directory inside; nothing else is
// readable to it. Only directories created for this test are changed.
func Dir(t testing.TB) string {
	t.Helper()
	d := t.TempDir()
	if os.Geteuid() == 0 {
		for _, p := range []string{filepath.Dir(d), d} {
			if err := os.Chmod(p, 0o711); err != nil {
				t.Fatalf("pgtest: %v", err)
			}
		}
	}
	return d
}

// Logger returns an hclog.Logger that writes to t.Log, so instance logs
// appear only for failing (or -v) tests.
func Logger(t testing.TB, name string) hclog.Logger {
	return hclog.New(&hclog.LoggerOptions{
		Name:   name,
		Level:  hclog.Debug,
		Output: &tWriter{t: t},
	})
}

type tWriter struct {
	t  testing.TB
	mu sync.Mutex
}

func (w *tWriter) Write(p []byte) (int, error) {
	w.mu.Lock()
	defer w.mu.Unlock()
	w.t.Log(strings.TrimRight(string(p), "\n"))
	return len(p), nil
}

// shortDir returns a new directory with a short path (unix socket paths
// are limited to 107 bytes, and t.TempDir paths grow with test names),
// reachable like Dir and removed when the test ends.
func shortDir(t testing.TB) string {
	t.Helper()
	d, err := os.MkdirTemp("", "pgha")
	if err != nil {
		t.Fatalf("pgtest: %v", err)
	}
	t.Cleanup(func() { _ = os.RemoveAll(d) })
	if os.Geteuid() == 0 {
		if err := os.Chmod(d, 0o711); err != nil {
			t.Fatalf("pgtest: %v", err)
		}
	}
	return d
}

// Config returns a configuration for member name: data directory
// Dir/data, log Dir/data.log, socket directory (and pgpass) in a short
// temporary directory; a free port on 127.0.0.1; the Superuser,
// Replication and Rewind passwords above; and an HBA that asks for
// passwords over TCP (so pgpass handling is exercised) and trusts the local
// socket.
func Config(t testing.TB, name string) pg.Config {
	t.Helper()
	bin := BinDir(t)
	dir := Dir(t)
	return pg.Config{
		Name:        name,
		ClusterName: "pgtest",
		DataDir:     filepath.Join(dir, "data"),
		BinDir:      bin,
		Port:        freeport.MustGet(t),
		SocketDir:   filepath.Join(shortDir(t), "run"),
		Superuser:   pg.Credentials{Username: "postgres", Password: SuperuserPassword},
		Replication: pg.Credentials{Username: "replicator", Password: ReplicationPassword},
		Rewind:      pg.Credentials{Username: RewindUser, Password: RewindPassword},
		Parameters: map[string]string{
			"shared_buffers": "16MB",
			"fsync":          "off", // tests never survive an OS crash anyway
			"max_wal_size":   "64MB",
			// A replica whose upstream restarts reconnects after this
			// (default 5s), which would dominate the tests' run time.
			"wal_retrieve_retry_interval": "100ms",
		},
		HBA: []string{
			"local all all trust",
			"local replication all trust",
			"host all all 127.0.0.1/32 scram-sha-256",
			"host replication all 127.0.0.1/32 scram-sha-256",
		},
		Timeout: 60 * time.Second,
		Logger:  Logger(t, name),
	}
}

// New creates an Instance from cfg and registers a cleanup that stops it
// (immediate), kills its postmaster and process group by pid if it is
// still there, and closes it.
func New(t testing.TB, cfg pg.Config) *pg.Instance {
	t.Helper()
	inst, err := pg.New(context.Background(), cfg)
	if err != nil {
		t.Fatalf("pgtest: pg.New: %v", err)
	}
	t.Cleanup(func() { Kill(t, inst) })
	return inst
}

// Kill stops inst at once: Stop(immediate), then SIGKILL to the postmaster
// and its process group by pid if it still runs, then Close.
func Kill(t testing.TB, inst *pg.Instance) {
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	if err := inst.Stop(ctx, pg.StopImmediate); err != nil {
		t.Logf("pgtest: stop: %v", err)
	}
	if pid, ok := inst.Running(); ok {
		t.Logf("pgtest: killing postmaster %d", pid)
		_ = syscall.Kill(pid, syscall.SIGKILL)
		_ = syscall.Kill(-pid, syscall.SIGKILL)
		for deadline := time.Now().Add(10 * time.Second); time.Now().Before(deadline); {
			if _, ok := inst.Running(); !ok {
				break
			}
			time.Sleep(10 * time.Millisecond)
		}
	}
	_ = inst.Close()
}

// Init creates and starts a primary from cfg (initdb with checksums, start,
// EnsureRoles) and returns it.
func Init(t testing.TB, cfg pg.Config) *pg.Instance {
	t.Helper()
	inst := New(t, cfg)
	ctx := context.Background()
	if err := inst.Initdb(ctx, pg.InitdbOptions{DataChecksums: true, NoSync: true}); err != nil {
		t.Fatalf("pgtest: initdb: %v", err)
	}
	if err := inst.Start(ctx); err != nil {
		t.Fatalf("pgtest: start: %v", err)
	}
	if err := inst.EnsureRoles(ctx); err != nil {
		t.Fatalf("pgtest: ensure roles: %v", err)
	}
	return inst
}

// Upstream returns the pg.Upstream that reaches inst over TCP, with the
// given slot name.
func Upstream(inst *pg.Instance, slot string) pg.Upstream {
	c := inst.Config()
	return pg.Upstream{Host: "127.0.0.1", Port: c.Port, SlotName: slot, SSLMode: "disable"}
}

// Eventually polls cond every 10ms until it returns nil or the timeout
// passes, then fails the test with the last error.
func Eventually(t testing.TB, timeout time.Duration, cond func() error) {
	t.Helper()
	deadline := time.Now().Add(timeout)
	var err error
	for {
		if err = cond(); err == nil {
			return
		}
		if time.Now().After(deadline) {
			break
		}
		time.Sleep(10 * time.Millisecond)
	}
	if err == nil {
		err = errors.New("condition not met")
	}
	t.Fatalf("pgtest: not satisfied within %s: %v", timeout, err)
}

// SyncBuffer is a bytes.Buffer safe for concurrent use: a program or a
// logger writes to it while the test reads what was written so far. The
// zero value is empty and ready to use.
type SyncBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

// Write appends p to the buffer.
func (s *SyncBuffer) Write(p []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.Write(p)
}

// String returns everything written so far.
func (s *SyncBuffer) String() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.String()
}
