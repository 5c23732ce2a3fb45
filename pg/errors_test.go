package pg_test

import (
	"context"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/pgha/pgha/internal/freeport"
	"github.com/pgha/pgha/internal/pgtest"
	"github.com/pgha/pgha/pg"
)

// requireCommandError asserts err is a *pg.CommandError with the given
// cause whose message names every fragment.
func requireCommandError(t *testing.T, err error, cause error, fragments ...string) *pg.CommandError {
	t.Helper()
	require.Error(t, err)
	t.Logf("error: %v", err)
	var ce *pg.CommandError
	require.ErrorAs(t, err, &ce, "%v", err)
	if cause != nil {
		require.ErrorIs(t, err, cause)
	}
	for _, f := range fragments {
		require.Contains(t, err.Error(), f)
	}
	return ce
}

// requireDirError asserts err is a *pg.DirError with the given cause whose
// message names every fragment.
func requireDirError(t *testing.T, err error, cause error, fragments ...string) {
	t.Helper()
	require.Error(t, err)
	t.Logf("error: %v", err)
	var de *pg.DirError
	require.ErrorAs(t, err, &de, "%v", err)
	require.ErrorIs(t, err, cause)
	for _, f := range fragments {
		require.Contains(t, err.Error(), f)
	}
}

// TestFailures checks that every failure path ends in an error a user can
// act on: the right type, the right cause, and a message that names it.
// One cluster is created with initdb and copied for each subtest that
// needs one.
func TestFailures(t *testing.T) {
	ctx := context.Background()
	template := pgtest.New(t, pgtest.Config(t, "template"))
	require.NoError(t, template.Initdb(ctx, pg.InitdbOptions{NoSync: true}))
	templateDir := template.Config().DataDir

	// initialized returns a fresh instance holding a copy of the template.
	initialized := func(t *testing.T, cfg pg.Config) *pg.Instance {
		t.Helper()
		out, err := exec.Command("cp", "-a", templateDir, cfg.DataDir).CombinedOutput()
		require.NoError(t, err, string(out))
		return pgtest.New(t, cfg)
	}

	t.Run("missing postgres binary", func(t *testing.T) {
		t.Parallel()
		cfg := pgtest.Config(t, "m")
		cfg.BinDir = pgtest.Dir(t)
		_, err := pg.New(ctx, cfg)
		var mb *pg.MissingBinaryError
		require.ErrorAs(t, err, &mb)
		require.Equal(t, "postgres", mb.Program)
		require.Contains(t, err.Error(), cfg.BinDir)
		require.Contains(t, err.Error(), `"postgres"`)
	})

	t.Run("missing initdb binary", func(t *testing.T) {
		t.Parallel()
		cfg := pgtest.Config(t, "m")
		bin := pgtest.Dir(t)
		require.NoError(t, os.Symlink(filepath.Join(cfg.BinDir, "postgres"), filepath.Join(bin, "postgres")))
		cfg.BinDir = bin
		inst := pgtest.New(t, cfg)
		err := inst.Initdb(ctx, pg.InitdbOptions{})
		var mb *pg.MissingBinaryError
		require.ErrorAs(t, err, &mb)
		require.Equal(t, "initdb", mb.Program)
		require.Contains(t, err.Error(), bin)
	})

	t.Run("port in use", func(t *testing.T) {
		t.Parallel()
		l, err := net.Listen("tcp", "127.0.0.1:0")
		require.NoError(t, err)
		defer l.Close()
		cfg := pgtest.Config(t, "p")
		cfg.Port = l.Addr().(*net.TCPAddr).Port
		inst := initialized(t, cfg)
		err = inst.Start(ctx)
		ce := requireCommandError(t, err, pg.ErrPortInUse, strconv.Itoa(cfg.Port))
		require.NotEmpty(t, ce.LogTail)
		require.True(t, pg.Retryable(err))
		_, running := inst.Running()
		require.False(t, running)
	})

	t.Run("bad parameter", func(t *testing.T) {
		t.Parallel()
		cfg := pgtest.Config(t, "b")
		cfg.Parameters["shared_buffers"] = "banana"
		inst := initialized(t, cfg)
		err := inst.Start(ctx)
		ce := requireCommandError(t, err, pg.ErrInvalidParameter, "shared_buffers", "banana")
		require.Contains(t, ce.LogTail, "shared_buffers")
		require.False(t, pg.Retryable(err))
	})

	t.Run("unknown parameter", func(t *testing.T) {
		t.Parallel()
		cfg := pgtest.Config(t, "u")
		cfg.Parameters["no_such_setting"] = "1"
		inst := initialized(t, cfg)
		err := inst.Start(ctx)
		requireCommandError(t, err, pg.ErrInvalidParameter, "no_such_setting")
	})

	t.Run("damaged pg_control", func(t *testing.T) {
		t.Parallel()
		cfg := pgtest.Config(t, "c")
		inst := initialized(t, cfg)
		require.NoError(t, os.WriteFile(filepath.Join(cfg.DataDir, "global", "pg_control"), make([]byte, 8192), 0o600))
		err := inst.Start(ctx)
		requireCommandError(t, err, pg.ErrCorruptDataDir, "pg_control")
		_, err = inst.ControlData(ctx)
		requireCommandError(t, err, pg.ErrCorruptDataDir, "checksum")
	})

	t.Run("missing pg_control", func(t *testing.T) {
		t.Parallel()
		cfg := pgtest.Config(t, "c")
		inst := initialized(t, cfg)
		require.NoError(t, os.Remove(filepath.Join(cfg.DataDir, "global", "pg_control")))
		err := inst.Start(ctx)
		requireCommandError(t, err, pg.ErrCorruptDataDir, "pg_control")
	})

	t.Run("not a data directory", func(t *testing.T) {
		t.Parallel()
		cfg := pgtest.Config(t, "n")
		inst := pgtest.New(t, cfg)
		err := inst.Start(ctx)
		requireDirError(t, err, pg.ErrNotInitialized, cfg.DataDir, "Initdb or Clone")
		require.NoError(t, os.MkdirAll(filepath.Join(cfg.DataDir, "base"), 0o700))
		err = inst.Start(ctx)
		requireDirError(t, err, pg.ErrCorruptDataDir, "PG_VERSION")
		st, err := inst.Status(ctx)
		require.NoError(t, err)
		require.False(t, st.Running)
		require.Nil(t, st.Control)
	})

	t.Run("data directory of another major version", func(t *testing.T) {
		t.Parallel()
		cfg := pgtest.Config(t, "v")
		inst := initialized(t, cfg)
		require.NoError(t, os.WriteFile(filepath.Join(cfg.DataDir, "PG_VERSION"), []byte("12\n"), 0o600))
		err := inst.Start(ctx)
		requireDirError(t, err, pg.ErrVersionMismatch, "PostgreSQL 12", "PostgreSQL "+strconv.Itoa(inst.Version()))
	})

	t.Run("data directory owned by someone else", func(t *testing.T) {
		t.Parallel()
		if os.Geteuid() != 0 {
			t.Skip("needs root to give the directory away")
		}
		cfg := pgtest.Config(t, "o")
		inst := initialized(t, cfg)
		require.NoError(t, os.Chown(cfg.DataDir, 0, 0))
		err := inst.Start(ctx)
		requireDirError(t, err, pg.ErrPermission, "chown")
	})

	t.Run("initdb into a non-empty directory", func(t *testing.T) {
		t.Parallel()
		cfg := pgtest.Config(t, "i")
		inst := initialized(t, cfg)
		err := inst.Initdb(ctx, pg.InitdbOptions{})
		requireDirError(t, err, pg.ErrDataDirNotEmpty, "already holds a cluster")
	})

	t.Run("data directory the OS user cannot reach", func(t *testing.T) {
		t.Parallel()
		if os.Geteuid() != 0 {
			t.Skip("only root runs postgres as another user")
		}
		cfg := pgtest.Config(t, "r")
		closed := filepath.Join(pgtest.Dir(t), "closed")
		require.NoError(t, os.Mkdir(closed, 0o700))
		cfg.DataDir = filepath.Join(closed, "data")
		inst := pgtest.New(t, cfg)
		err := inst.Initdb(ctx, pg.InitdbOptions{})
		requireDirError(t, err, pg.ErrPermission, closed, "cannot traverse")
	})

	t.Run("clone from a server that does not run", func(t *testing.T) {
		t.Parallel()
		cfg := pgtest.Config(t, "x")
		inst := pgtest.New(t, cfg)
		err := inst.Clone(ctx, pg.Upstream{Host: "127.0.0.1", Port: freeport.MustGet(t)}, nil)
		ce := requireCommandError(t, err, nil, "pg_basebackup")
		require.Positive(t, ce.ExitCode)
		require.Contains(t, ce.Stderr, "Connection refused")
		require.False(t, inst.Initialized())
		entries, err := os.ReadDir(cfg.DataDir)
		require.NoError(t, err)
		require.Empty(t, entries, "a failed clone leaves the data directory empty")
	})

	t.Run("rewind without wal_log_hints or checksums", func(t *testing.T) {
		t.Parallel()
		// The template was made without checksums and never started, so
		// pg_control still has initdb's wal_log_hints = off.
		cfg := pgtest.Config(t, "w")
		inst := initialized(t, cfg)
		_, err := inst.Rewind(ctx, pg.Upstream{Host: "127.0.0.1", Port: freeport.MustGet(t)})
		requireCommandError(t, err, pg.ErrRewindNotPossible, "wal_log_hints", "Clone")
		require.False(t, pg.Retryable(err))
		require.NotErrorIs(t, err, pg.ErrRewindNotStarted, "a rewind that can never work is not retried")
	})

	t.Run("clone into a non-empty directory", func(t *testing.T) {
		t.Parallel()
		cfg := pgtest.Config(t, "n")
		inst := initialized(t, cfg)
		err := inst.Clone(ctx, pg.Upstream{Host: "127.0.0.1"}, nil)
		requireDirError(t, err, pg.ErrDataDirNotEmpty, cfg.DataDir)
		require.True(t, inst.Initialized(), "the existing cluster is left alone")
	})

	t.Run("state errors", func(t *testing.T) {
		t.Parallel()
		cfg := pgtest.Config(t, "s")
		inst := initialized(t, cfg)
		require.ErrorIs(t, inst.Promote(ctx), pg.ErrNotRunning)
		require.ErrorIs(t, inst.Reload(ctx), pg.ErrNotRunning)
		require.ErrorIs(t, inst.Checkpoint(ctx), pg.ErrNotRunning)
		require.NoError(t, inst.Stop(ctx, pg.StopFast))

		expired, cancel := context.WithDeadline(ctx, time.Now().Add(-time.Second))
		defer cancel()
		err := inst.Start(expired)
		requireCommandError(t, err, pg.ErrTimeout)
		require.ErrorIs(t, err, context.DeadlineExceeded)
		require.True(t, pg.Retryable(err))

		require.NoError(t, inst.Start(ctx))
		err = inst.Start(ctx)
		require.ErrorIs(t, err, pg.ErrAlreadyRunning)
		require.ErrorIs(t, inst.Initdb(ctx, pg.InitdbOptions{}), pg.ErrAlreadyRunning)
		_, err = inst.Rewind(ctx, pg.Upstream{Host: "127.0.0.1"})
		require.ErrorIs(t, err, pg.ErrAlreadyRunning)
		require.ErrorIs(t, err, pg.ErrRewindNotStarted, "nothing was changed: it may be tried again")
		require.ErrorIs(t, inst.CrashRecovery(ctx), pg.ErrAlreadyRunning)
		require.NoError(t, inst.Close())
		require.ErrorIs(t, inst.Start(ctx), pg.ErrClosed)
		require.NoError(t, inst.Stop(ctx, pg.StopFast), "Stop works after Close")
	})

	t.Run("no such OS user", func(t *testing.T) {
		t.Parallel()
		if os.Geteuid() != 0 {
			t.Skip("OSUser matters only as root")
		}
		cfg := pgtest.Config(t, "u")
		cfg.OSUser = "pgha-no-such-user"
		_, err := pg.New(ctx, cfg)
		var ce *pg.ConfigError
		require.ErrorAs(t, err, &ce)
		require.Equal(t, "OSUser", ce.Field)
		require.Contains(t, err.Error(), "pgha-no-such-user")
	})

	t.Run("binaries from PGHA_PG_BIN", func(t *testing.T) {
		// Not parallel: it sets an environment variable.
		dir := pgtest.Dir(t)
		t.Setenv(pg.BinDirEnv, dir)
		_, err := pg.FindBinDir(ctx)
		var mb *pg.MissingBinaryError
		require.ErrorAs(t, err, &mb)
		require.Contains(t, err.Error(), pg.BinDirEnv+"="+dir)

		t.Setenv(pg.BinDirEnv, template.Config().BinDir)
		got, err := pg.FindBinDir(ctx)
		require.NoError(t, err)
		require.Equal(t, template.Config().BinDir, got)
	})
}
