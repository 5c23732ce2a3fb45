package pg_test

import (
	"context"
	"fmt"
	"os"
	"os/user"
	"path/filepath"
	"strconv"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/pgha/pgha/internal/pgtest"
	"github.com/pgha/pgha/pg"
)

const waitLong = 60 * time.Second

// execSQL runs statements on inst as the superuser.
func execSQL(t *testing.T, inst *pg.Instance, sqls ...string) {
	t.Helper()
	ctx := context.Background()
	conn, err := inst.Connect(ctx)
	require.NoError(t, err)
	defer conn.Close(ctx)
	for _, q := range sqls {
		_, err := conn.Exec(ctx, q)
		require.NoError(t, err, q)
	}
}

// queryString returns the single text value of q, or an error.
func queryString(inst *pg.Instance, q string) (string, error) {
	ctx := context.Background()
	conn, err := inst.Connect(ctx)
	if err != nil {
		return "", err
	}
	defer conn.Close(ctx)
	var s string
	err = conn.QueryRow(ctx, q).Scan(&s)
	return s, err
}

// rows returns the ids in table t, sorted.
func rows(inst *pg.Instance) (string, error) {
	return queryString(inst, "SELECT coalesce(string_agg(id::text || ':' || src, ',' ORDER BY id), '') FROM t")
}

// waitRows waits until inst's table t holds exactly want.
func waitRows(t *testing.T, inst *pg.Instance, want string) {
	t.Helper()
	pgtest.Eventually(t, waitLong, func() error {
		got, err := rows(inst)
		if err != nil {
			return err
		}
		if got != want {
			return fmt.Errorf("rows %q, want %q", got, want)
		}
		return nil
	})
}

// waitStreaming waits until inst is a replica whose WAL receiver streams
// on the given timeline.
func waitStreaming(t *testing.T, inst *pg.Instance, timeline int) pg.Status {
	t.Helper()
	var st pg.Status
	pgtest.Eventually(t, waitLong, func() error {
		var err error
		st, err = inst.Status(context.Background())
		if err != nil {
			return err
		}
		if st.Role != pg.RoleReplica || st.WALReceiver == nil || st.WALReceiver.Status != "streaming" || st.Timeline != timeline {
			return fmt.Errorf("not streaming on timeline %d yet: role=%q timeline=%d receiver=%+v", timeline, st.Role, st.Timeline, st.WALReceiver)
		}
		return nil
	})
	return st
}

// requireOwned checks path's owner is the postgres OS user (when running
// as root) and its mode.
func requireOwned(t *testing.T, path string, mode os.FileMode) {
	t.Helper()
	fi, err := os.Stat(path)
	require.NoError(t, err)
	require.Equal(t, mode, fi.Mode().Perm(), "mode of %s", path)
	if os.Geteuid() == 0 {
		u, err := user.Lookup(pg.DefaultOSUser)
		require.NoError(t, err)
		uid, _ := strconv.Atoi(u.Uid)
		require.EqualValues(t, uid, fi.Sys().(*syscall.Stat_t).Uid, "owner of %s", path)
	}
}

// receiveExit waits for an exit event.
func receiveExit(t *testing.T, inst *pg.Instance) pg.ExitEvent {
	t.Helper()
	select {
	case ev := <-inst.Exits():
		return ev
	case <-time.After(waitLong):
		t.Fatal("no exit event")
	}
	return pg.ExitEvent{}
}

// TestLifecycle drives two real instances through Patroni's states: initdb
// and start a primary, clone a replica that streams from it, promote the
// replica, write on both timelines, rewind the old primary and have it
// stream from the new one, and detect crashes. The steps share the two
// instances, so each needs the previous ones.
func TestLifecycle(t *testing.T) {
	ctx := context.Background()
	acfg := pgtest.Config(t, "node-a")
	bcfg := pgtest.Config(t, "node-b")
	a := pgtest.New(t, acfg)
	b := pgtest.New(t, bcfg)
	acfg, bcfg = a.Config(), b.Config() // with defaults filled in

	step := func(name string, f func(t *testing.T)) {
		t.Helper()
		if !t.Run(name, f) {
			t.FailNow()
		}
	}

	step("initdb and start", func(t *testing.T) {
		require.False(t, a.Initialized())
		require.NoError(t, a.Initdb(ctx, pg.InitdbOptions{DataChecksums: true, NoSync: true}))
		require.True(t, a.Initialized())
		require.NoError(t, a.Start(ctx))
		require.NoError(t, a.EnsureRoles(ctx))

		requireOwned(t, acfg.DataDir, 0o700)
		requireOwned(t, acfg.SocketDir, 0o700)
		conf, err := os.ReadFile(filepath.Join(acfg.DataDir, "postgresql.conf"))
		require.NoError(t, err)
		require.Contains(t, string(conf), "include_if_exists = 'pgha.conf'")

		st, err := a.Status(ctx)
		require.NoError(t, err)
		require.True(t, st.Running)
		require.Equal(t, pg.RolePrimary, st.Role)
		require.Equal(t, 1, st.Timeline)
		require.NotZero(t, st.SystemID)
		require.Positive(t, int64(st.CurrentLSN))
		require.GreaterOrEqual(t, st.CurrentLSN, st.FlushLSN)
		require.Equal(t, pg.PMReady, st.PostmasterStatus)
		pid, ok := a.Running()
		require.True(t, ok)
		require.Equal(t, st.PID, pid)
		require.Equal(t, "postgres://127.0.0.1:"+strconv.Itoa(acfg.Port)+"/postgres", a.ConnURL())
		require.GreaterOrEqual(t, a.Version(), pg.MinVersion)

		for name, want := range map[string]string{
			"wal_log_hints": "on", "hot_standby": "on", "cluster_name": "pgtest", "data_checksums": "on",
			"max_wal_senders": "10", "wal_level": "replica", "port": strconv.Itoa(acfg.Port), "shared_buffers": "16MB",
		} {
			got, err := queryString(a, "SHOW "+name)
			require.NoError(t, err)
			require.Equal(t, want, got, name)
		}
		execSQL(t, a,
			"CREATE TABLE t (id int PRIMARY KEY, src text)",
			"INSERT INTO t VALUES (1, 'a')",
			"SELECT pg_create_physical_replication_slot('"+pg.SlotName("node-b")+"')")
	})

	step("clone streams from the primary", func(t *testing.T) {
		var mu sync.Mutex
		var progress []pg.CloneProgress
		err := b.Clone(ctx, pgtest.Upstream(a, pg.SlotName("node-b")), func(p pg.CloneProgress) {
			mu.Lock()
			defer mu.Unlock()
			progress = append(progress, p)
		})
		require.NoError(t, err)
		mu.Lock()
		require.NotEmpty(t, progress)
		last := progress[len(progress)-1]
		mu.Unlock()
		require.Equal(t, 100, last.Percent)
		require.Positive(t, last.TotalBytes)
		requireOwned(t, bcfg.DataDir, 0o700)
		requireOwned(t, bcfg.PgpassFile, 0o600)
		_, err = os.Stat(filepath.Join(bcfg.DataDir, "standby.signal"))
		require.NoError(t, err)

		require.NoError(t, b.Start(ctx))
		st := waitStreaming(t, b, 1)
		ast, err := a.Status(ctx)
		require.NoError(t, err)
		require.Equal(t, ast.SystemID, st.SystemID)
		require.Equal(t, "node_b", st.WALReceiver.SlotName)
		require.Equal(t, "127.0.0.1", st.WALReceiver.SenderHost)
		require.Equal(t, acfg.Port, st.WALReceiver.SenderPort)

		execSQL(t, a, "INSERT INTO t VALUES (2, 'a')")
		waitRows(t, b, "1:a,2:a")
		st, err = b.Status(ctx)
		require.NoError(t, err)
		require.Positive(t, int64(st.ReceiveLSN))
		require.Positive(t, int64(st.ReplayLSN))
		require.Zero(t, st.CurrentLSN)

		// The primary sees the replica under its member name, through its slot.
		pgtest.Eventually(t, waitLong, func() error {
			s, err := queryString(a, "SELECT application_name || '/' || state FROM pg_stat_replication")
			if err != nil || s != "node-b/streaming" {
				return fmt.Errorf("pg_stat_replication: %q %v", s, err)
			}
			s, err = queryString(a, "SELECT active::text FROM pg_replication_slots WHERE slot_name = 'node_b'")
			if err != nil || s != "true" {
				return fmt.Errorf("slot active: %q %v", s, err)
			}
			return nil
		})
	})

	step("reload and restart apply parameters", func(t *testing.T) {
		params := acfg.Parameters
		params["work_mem"] = "7MB"
		params["shared_buffers"] = "24MB"
		adj, err := a.SetParameters(params)
		require.NoError(t, err)
		require.Empty(t, adj)
		require.NoError(t, a.Reload(ctx))
		pgtest.Eventually(t, waitLong, func() error {
			v, err := queryString(a, "SHOW work_mem")
			if err != nil || v != "7MB" {
				return fmt.Errorf("work_mem %q %v", v, err)
			}
			st, err := a.Status(ctx)
			if err != nil || !st.PendingRestart {
				return fmt.Errorf("pending restart not reported: %v", err)
			}
			return nil
		})
		oldPID, _ := a.Running()
		require.NoError(t, a.Restart(ctx, pg.StopFast))
		newPID, ok := a.Running()
		require.True(t, ok)
		require.NotEqual(t, oldPID, newPID)
		v, err := queryString(a, "SHOW shared_buffers")
		require.NoError(t, err)
		require.Equal(t, "24MB", v)
		st, err := a.Status(ctx)
		require.NoError(t, err)
		require.False(t, st.PendingRestart)
		waitStreaming(t, b, 1)
	})

	step("promote", func(t *testing.T) {
		require.NoError(t, b.Promote(ctx))
		st, err := b.Status(ctx)
		require.NoError(t, err)
		require.Equal(t, pg.RolePrimary, st.Role)
		require.Equal(t, 2, st.Timeline)
		require.Nil(t, st.WALReceiver)
		_, err = os.Stat(filepath.Join(bcfg.DataDir, "standby.signal"))
		require.ErrorIs(t, err, os.ErrNotExist)
		require.NoError(t, b.Checkpoint(ctx))
		require.NoError(t, b.Promote(ctx), "promoting a primary is a no-op")
	})

	step("writes on both timelines", func(t *testing.T) {
		execSQL(t, a, "INSERT INTO t VALUES (3, 'a-lost')")
		execSQL(t, b, "INSERT INTO t VALUES (4, 'b')")
		waitRows(t, a, "1:a,2:a,3:a-lost")
		waitRows(t, b, "1:a,2:a,4:b")
	})

	step("rewind the old primary and follow the new one", func(t *testing.T) {
		require.NoError(t, a.Stop(ctx, pg.StopFast))
		st, err := a.Status(ctx)
		require.NoError(t, err)
		require.False(t, st.Running)
		require.Equal(t, pg.StateShutDown, st.Control.State)
		require.Equal(t, 1, st.Control.Timeline)
		require.True(t, st.Control.RewindPossible())

		execSQL(t, b, "SELECT pg_create_physical_replication_slot('"+pg.SlotName("node-a")+"')")
		rewound, err := a.Rewind(ctx, pgtest.Upstream(b, ""))
		require.NoError(t, err)
		require.True(t, rewound)
		require.NoError(t, a.ConfigureStandby(ctx, pgtest.Upstream(b, pg.SlotName("node-a"))))
		require.NoError(t, a.Start(ctx))
		st = waitStreaming(t, a, 2)
		require.Equal(t, bcfg.Port, st.WALReceiver.SenderPort)
		waitRows(t, a, "1:a,2:a,4:b")
		execSQL(t, b, "INSERT INTO t VALUES (5, 'b')")
		waitRows(t, a, "1:a,2:a,4:b,5:b")
	})

	step("crash of a postmaster found running is detected", func(t *testing.T) {
		// A second Instance on the same data directory adopts the running
		// postmaster (as after a restart of the agent) and watches it
		// through a pidfd.
		adopter, err := pg.New(ctx, a.Config())
		require.NoError(t, err)
		defer adopter.Close()
		pid, ok := adopter.Running()
		require.True(t, ok)
		apid, _ := a.Running()
		require.Equal(t, apid, pid)

		require.NoError(t, syscall.Kill(pid, syscall.SIGKILL))
		ev := receiveExit(t, a)
		require.Equal(t, pid, ev.PID)
		require.True(t, ev.StatusKnown)
		require.Equal(t, syscall.SIGKILL, ev.Signal)
		aev := receiveExit(t, adopter)
		require.Equal(t, pid, aev.PID)
		require.False(t, aev.StatusKnown)
		_, ok = a.Running()
		require.False(t, ok)

		// A replica restarts by itself after a crash (postgres runs crash
		// recovery and resumes streaming); single-user recovery is refused
		// for it.
		cd, err := a.ControlData(ctx)
		require.NoError(t, err)
		require.Equal(t, pg.StateInArchiveRecovery, cd.State)
		err = a.CrashRecovery(ctx)
		var de *pg.DirError
		require.ErrorAs(t, err, &de)
		require.Contains(t, err.Error(), "start it again as a standby")
		require.NoError(t, a.Start(ctx))
		waitStreaming(t, a, 2)
	})

	step("crash of the primary, single-user recovery, restart", func(t *testing.T) {
		pid, ok := b.Running()
		require.True(t, ok)
		require.NoError(t, syscall.Kill(pid, syscall.SIGKILL))
		ev := receiveExit(t, b)
		require.Equal(t, pid, ev.PID)
		require.Equal(t, syscall.SIGKILL, ev.Signal)
		require.Contains(t, ev.String(), "killed")

		st, err := b.Status(ctx)
		require.NoError(t, err)
		require.False(t, st.Running)
		require.Equal(t, pg.StateInProduction, st.Control.State)
		require.False(t, st.Control.CleanShutdown())

		require.NoError(t, b.CrashRecovery(ctx))
		cd, err := b.ControlData(ctx)
		require.NoError(t, err)
		require.Equal(t, pg.StateShutDown, cd.State)
		require.Equal(t, 2, cd.Timeline)
		require.NoError(t, b.CrashRecovery(ctx), "a clean cluster needs no recovery")

		require.NoError(t, b.Start(ctx))
		waitRows(t, b, "1:a,2:a,4:b,5:b")
		execSQL(t, b, "INSERT INTO t VALUES (6, 'b')")
		waitStreaming(t, a, 2)
		waitRows(t, a, "1:a,2:a,4:b,5:b,6:b")
	})

	step("stop modes", func(t *testing.T) {
		require.NoError(t, a.Stop(ctx, pg.StopSmart))
		require.NoError(t, b.Stop(ctx, pg.StopImmediate))
		require.NoError(t, b.Stop(ctx, pg.StopFast), "stopping a stopped instance is a no-op")
		cd, err := b.ControlData(ctx)
		require.NoError(t, err)
		require.Equal(t, pg.StateInProduction, cd.State, "immediate stop leaves no shutdown checkpoint")
		cd, err = a.ControlData(ctx)
		require.NoError(t, err)
		require.Equal(t, pg.StateShutDownInRecovery, cd.State)
		select {
		case ev := <-a.Exits():
			t.Fatalf("requested stop reported as an exit event: %v", ev)
		case ev := <-b.Exits():
			t.Fatalf("requested stop reported as an exit event: %v", ev)
		default:
		}
	})
}
